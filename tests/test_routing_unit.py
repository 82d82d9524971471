"""The routing decision as a pure function (transport_and_format, "Message Routing")."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.ocpi.envelope import OcpiError
from hub.ocpi.models import BusinessDetails, CredentialsRole, Endpoint, InterfaceRole, Role
from hub.registry.records import Platform, PlatformState
from hub.registry.snapshot import Snapshot
from hub.routing.decide import (
    Addressing,
    DirectRoutes,
    Scenario,
    broadcast_receivers,
    check_sender,
    classify,
    data_owners,
    opposite_roles,
    parse_addressing,
    route_direct,
    sole_party,
)
from hub.routing.modules import MODULES, module_facts
from hub.routing.urls import join_url

NOW = datetime(2026, 1, 1, tzinfo=UTC)
S, R = InterfaceRole.SENDER, InterfaceRole.RECEIVER


def platform(
    pid: str,
    roles: list[tuple[str, str, Role]],
    modules: list[tuple[str, InterfaceRole]],
    state: PlatformState = PlatformState.REGISTERED,
) -> Platform:
    return Platform(
        id=pid,
        name=pid,
        state=state,
        created=NOW,
        updated=NOW,
        roles=[CredentialsRole(role, BusinessDetails(name=pid), p, cc) for cc, p, role in roles],
        endpoints=[Endpoint(m, r, f"http://127.0.0.1/{pid}/{m}/{r.lower()}/") for m, r in modules],
    )


def snapshot(*platforms: Platform) -> Snapshot:
    return Snapshot(1, {p.id: p for p in platforms})


def routing(**values: str) -> dict[str, str]:
    return {f"ocpi-{k.replace('_', '-')}": v for k, v in values.items()}


def test_from_headers_are_required() -> None:
    with pytest.raises(OcpiError) as error:
        parse_addressing(routing(to_country_code="NL", to_party_id="CPA"))
    assert error.value.status_code == 2001 and "OCPI-from" in error.value.message


@pytest.mark.parametrize(
    "values",
    [
        {"from_country_code": "NLD", "from_party_id": "ABC"},
        {"from_country_code": "NL", "from_party_id": "AB"},
        {"from_country_code": "N1", "from_party_id": "ABC"},
        {"from_country_code": "NL", "from_party_id": "ÄBC"},
        {"from_country_code": "NL", "from_party_id": "ABC", "to_country_code": "D"},
    ],
)
def test_malformed_routing_headers_are_2001(values: dict[str, str]) -> None:
    with pytest.raises(OcpiError) as error:
        parse_addressing(routing(**values))
    assert error.value.status_code == 2001


def test_to_headers_go_together() -> None:
    with pytest.raises(OcpiError, match="go together"):
        parse_addressing(routing(from_country_code="NL", from_party_id="ABC", to_party_id="XYZ"))


def test_headers_are_case_insensitive_cistrings() -> None:
    addressing = parse_addressing(
        routing(
            from_country_code="nl", from_party_id="cpa", to_country_code="de", to_party_id="msa"
        )
    )
    assert addressing.sender == ("NL", "CPA") and addressing.receiver == ("DE", "MSA")


def test_sender_must_be_a_party_of_the_platform() -> None:
    cpo = platform("p1", [("nl", "cpa", Role.CPO), ("NL", "CPB", Role.EMSP)], [])
    own = snapshot(cpo).own_parties(cpo)
    assert own == {("NL", "CPA"), ("NL", "CPB")}
    check_sender(parse_addressing(routing(from_country_code="NL", from_party_id="CPA")), own)
    with pytest.raises(OcpiError, match="not a party of the platform"):
        check_sender(parse_addressing(routing(from_country_code="DE", from_party_id="MSA")), own)


def test_a_platforms_own_parties_follow_its_record() -> None:
    """Kept per record: a snapshot asked about a newer record of the platform (its token
    was looked up a moment before the registry changed) answers from that record."""
    cpo = platform("p1", [("NL", "CPA", Role.CPO)], [])
    held = snapshot(cpo)
    assert held.own_parties(cpo) == {("NL", "CPA")}
    moved = platform("p1", [("BE", "CPA", Role.CPO)], [])
    assert held.own_parties(moved) == {("BE", "CPA")}
    assert sole_party(held.own_parties(moved)) == ("BE", "CPA")
    both = platform("p1", [("BE", "CPA", Role.CPO), ("BE", "MSP", Role.EMSP)], [])
    assert sole_party(held.own_parties(both)) is None


def test_direct_route_picks_the_endpoint_of_the_same_module_and_interface() -> None:
    emsp = platform("p2", [("DE", "MSA", Role.EMSP)], [("locations", R), ("tokens", S)])
    snap = snapshot(emsp)
    direct = route_direct(snap, MODULES["locations"], R, ("DE", "MSA"))
    assert direct.platform.id == "p2" and direct.receiver.role == Role.EMSP
    assert direct.url("/NL/CPA/LOC1", "") == "http://127.0.0.1/p2/locations/receiver/NL/CPA/LOC1"
    assert route_direct(snap, MODULES["tokens"], S, ("de", "msa")).endpoint_url.endswith("/sender/")


def test_unknown_receiver_is_4001() -> None:
    with pytest.raises(OcpiError) as error:
        route_direct(snapshot(), MODULES["locations"], R, ("XX", "YYY"))
    assert error.value.status_code == 4001 and "XX/YYY" in error.value.message


def test_suspended_receiver_is_4003() -> None:
    gone = platform("p3", [("DE", "MSA", Role.EMSP)], [("locations", R)], PlatformState.SUSPENDED)
    with pytest.raises(OcpiError) as error:
        route_direct(snapshot(gone), MODULES["locations"], R, ("DE", "MSA"))
    assert error.value.status_code == 4003 and "SUSPENDED" in error.value.message


def test_receiver_without_the_interface_is_4000() -> None:
    emsp = platform("p2", [("DE", "MSA", Role.EMSP)], [("locations", S)])
    with pytest.raises(OcpiError) as error:
        route_direct(snapshot(emsp), MODULES["locations"], R, ("DE", "MSA"))
    assert error.value.status_code == 4000 and "locations RECEIVER" in error.value.message


def test_kept_routes_follow_the_snapshot() -> None:
    """A route is kept while its snapshot is current; the next snapshot (a registry change)
    answers afresh, a refusal included."""
    routes = DirectRoutes()
    before = snapshot(platform("p2", [("DE", "MSA", Role.EMSP)], [("locations", R)]))
    first = routes(before, MODULES["locations"], R, ("DE", "MSA"))
    assert routes(before, MODULES["locations"], R, ("DE", "MSA")) is first
    moved = platform("p3", [("DE", "MSA", Role.EMSP)], [("locations", R)])
    assert routes(snapshot(moved), MODULES["locations"], R, ("DE", "MSA")).platform.id == "p3"
    with pytest.raises(OcpiError):
        routes(snapshot(), MODULES["locations"], R, ("DE", "MSA"))


def test_pair_with_two_roles_routes_to_the_role_that_offers_the_interface() -> None:
    cpo = platform("cpo", [("NL", "TWO", Role.CPO)], [("locations", S)])
    emsp = platform("emsp", [("NL", "TWO", Role.EMSP)], [("locations", R)])
    snap = snapshot(cpo, emsp)
    assert route_direct(snap, MODULES["locations"], S, ("NL", "TWO")).platform.id == "cpo"
    assert route_direct(snap, MODULES["locations"], R, ("NL", "TWO")).platform.id == "emsp"


@pytest.mark.parametrize(
    ("base", "suffix", "query", "expected"),
    [
        ("http://h/loc", "", "", "http://h/loc"),
        ("http://h/loc/", "", "", "http://h/loc/"),
        ("http://h/loc/", "/LOC1", "", "http://h/loc/LOC1"),
        ("http://h/loc", "/LOC1", "", "http://h/loc/LOC1"),
        ("http://h/loc", "/", "offset=5", "http://h/loc?offset=5"),
        ("http://h/commands/", "/START_SESSION", "", "http://h/commands/START_SESSION"),
        ("http://h/tokens", "/U1/authorize", "type=RFID", "http://h/tokens/U1/authorize?type=RFID"),
    ],
)
def test_join_url(base: str, suffix: str, query: str, expected: str) -> None:
    assert join_url(base, suffix, query) == expected


def test_module_table() -> None:
    """Interfaces per module chapter; Booking is the bookings module; custom ids pass."""
    assert module_facts("Booking") is MODULES["bookings"]
    assert MODULES["commands"].response_url_carrier(R, "POST") == "body"
    assert MODULES["chargingprofiles"].response_url_carrier(R, "GET") == "query"
    assert MODULES["chargingprofiles"].response_url_carrier(R, "PUT") == "body"
    assert not MODULES["locations"].allows(S, "PUT")
    assert MODULES["tokens"].allows(S, "POST")  # real-time authorization
    assert MODULES["sessions"].allows(S, "PUT")  # charging preferences
    assert MODULES["payments"].allows(S, "PATCH")
    custom = module_facts("nltnm-tokens")
    assert custom.custom and custom.allows(S, "DELETE")


HUB = ("NL", "HUB")


def addressed(to: tuple[str, str] | None) -> Addressing:
    return Addressing(("DE", "MSA"), to)


@pytest.mark.parametrize(
    ("to", "method", "interface", "expected"),
    [
        (("NL", "CPA"), "GET", S, Scenario.DIRECT),
        (("NL", "CPA"), "PUT", R, Scenario.DIRECT),
        (HUB, "PUT", R, Scenario.BROADCAST),
        (HUB, "PATCH", R, Scenario.BROADCAST),
        (HUB, "POST", R, Scenario.BROADCAST),
        (HUB, "DELETE", R, Scenario.BROADCAST),
        (HUB, "GET", S, Scenario.GET_ALL),
        (None, "GET", S, Scenario.OPEN),
        (None, "PUT", R, Scenario.OPEN),
    ],
)
def test_classify(to, method, interface, expected) -> None:
    """transport_and_format, "Overview of required/optional routing headers"."""
    assert classify(addressed(to), method, interface, HUB) is expected


@pytest.mark.parametrize(("method", "interface"), [("GET", R), ("POST", S), ("PUT", S)])
def test_other_requests_to_the_hub_are_refused(method: str, interface: InterfaceRole) -> None:
    """GET is never broadcast; a write on a SENDER interface is no broadcast either."""
    with pytest.raises(OcpiError) as error:
        classify(addressed(HUB), method, interface, HUB)
    assert error.value.status_code == 2001 and "omit the OCPI-to headers" in error.value.message


def test_broadcast_receivers_by_opposite_role() -> None:
    cpo = platform("cpo", [("NL", "CPA", Role.CPO)], [("locations", R), ("tokens", R)])
    cpo2 = platform("cpo2", [("NL", "CPB", Role.CPO)], [("locations", R), ("tokens", R)])
    emsp = platform(
        "emsp", [("DE", "MSA", Role.EMSP), ("DE", "MSX", Role.EMSP)], [("locations", R)]
    )
    other = platform("other", [("BE", "OTH", Role.OTHER)], [("locations", R)])
    bare = platform("bare", [("BE", "NOP", Role.NSP)], [("tariffs", R)])
    snap = snapshot(cpo, cpo2, emsp, other, bare)
    from_cpo = broadcast_receivers(snap, MODULES["locations"], "cpo", Role.CPO)
    assert [(p.party_id, url.split("/")[3]) for p, _, url in from_cpo] == [
        ("OTH", "other"),
        ("MSA", "emsp"),
        ("MSX", "emsp"),
    ]
    from_emsp = broadcast_receivers(snap, MODULES["tokens"], "emsp", Role.EMSP)
    assert [p.party_id for p, _, _ in from_emsp] == ["CPA", "CPB"]
    assert opposite_roles(Role.OTHER) == {Role.CPO}


def test_get_all_sources_are_connected_data_owners() -> None:
    cpo = platform("cpo", [("NL", "CPA", Role.CPO)], [("locations", S)])
    gone = platform("gone", [("NL", "CPG", Role.CPO)], [("locations", S)], PlatformState.SUSPENDED)
    emsp = platform("emsp", [("DE", "MSA", Role.EMSP)], [("locations", S)])
    owners = data_owners(snapshot(cpo, gone, emsp), MODULES["locations"], "emsp")
    assert [p.party_id for p, _, _ in owners] == ["CPA"]
