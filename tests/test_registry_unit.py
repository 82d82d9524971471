"""Who holds a party and with what status: the snapshot built from platform records and
party states, and the status moves a platform write implies (mod_hub_client_info,
"ConnectionStatus" enum)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from hub.ocpi.models import BusinessDetails, ConnectionStatus, CredentialsRole, Role
from hub.registry.records import (
    PartyKey,
    PartyState,
    Platform,
    PlatformState,
    TokenKind,
    retire_old_tokens,
)
from hub.registry.snapshot import Snapshot
from hub.registry.writer import status_moves

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONNECTED, OFFLINE = ConnectionStatus.CONNECTED, ConnectionStatus.OFFLINE
PLANNED, SUSPENDED = ConnectionStatus.PLANNED, ConnectionStatus.SUSPENDED
PENDING, REGISTERED = PlatformState.PENDING, PlatformState.REGISTERED
GONE = PlatformState.SUSPENDED
CPA: PartyKey = ("NL", "CPA", Role.CPO)
CPB: PartyKey = ("NL", "CPB", Role.CPO)
MSA: PartyKey = ("DE", "MSA", Role.EMSP)


def platform(
    pid: str, *parties: PartyKey, state: PlatformState = REGISTERED, created: int = 0
) -> Platform:
    """A platform record; ``created`` in minutes after T0 orders registrations."""
    moment = T0 + timedelta(minutes=created)
    return Platform(
        id=pid,
        name=pid,
        state=state,
        created=moment,
        updated=moment,
        roles=[
            CredentialsRole(role, BusinessDetails(name=f"{pid} {party}"), party, cc)
            for cc, party, role in parties
        ],
    )


def party_state(status: ConnectionStatus, name: str | None = None) -> PartyState:
    return PartyState(status, T0 + timedelta(days=1), name)


def snapshot(*platforms: Platform, states: dict[PartyKey, PartyState] | None = None) -> Snapshot:
    return Snapshot(1, {p.id: p for p in platforms}, states)


def holders(snap: Snapshot) -> dict[PartyKey, tuple[str | None, ConnectionStatus]]:
    return {key: (p.platform_id, p.status) for key, p in snap.parties.items()}


@pytest.mark.parametrize(
    ("platforms", "states", "expected"),
    [
        ([platform("p1", CPA, MSA)], {}, {CPA: ("p1", CONNECTED), MSA: ("p1", CONNECTED)}),
        ([platform("p1", CPA, state=PENDING)], {}, {}),  # not registered yet: not a party
        ([platform("p1", CPA, state=GONE)], {}, {CPA: ("p1", SUSPENDED)}),
        (
            [platform("p1", CPA, state=GONE)],
            {CPA: party_state(CONNECTED)},
            {CPA: ("p1", SUSPENDED)},
        ),
        ([platform("p1", CPA)], {CPA: party_state(OFFLINE)}, {CPA: ("p1", OFFLINE)}),
        ([platform("p1", ("nl", "cpa", Role.CPO))], {}, {CPA: ("p1", CONNECTED)}),
        # A party whose platform was suspended moves to the platform that registers it next,
        # whatever order the records come in.
        (
            [platform("old", CPA, state=GONE), platform("new", CPA, created=1)],
            {},
            {CPA: ("new", CONNECTED)},
        ),
        (
            [platform("new", CPA, created=1), platform("old", CPA, state=GONE)],
            {},
            {CPA: ("new", CONNECTED)},
        ),
        # A held party stays with the older registration.
        (
            [platform("first", CPA), platform("later", CPA, created=1)],
            {},
            {CPA: ("first", CONNECTED)},
        ),
        (
            [platform("first", CPA), platform("later", CPA, created=1)],
            {CPA: party_state(OFFLINE)},
            {CPA: ("first", OFFLINE)},
        ),
        (
            [platform("first", CPA), platform("later", CPA, state=GONE, created=1)],
            {},
            {CPA: ("first", CONNECTED)},
        ),
        # Parties known from their state only: announced, or dropped from a platform's roles.
        ([], {CPA: party_state(PLANNED, "Planned Co")}, {CPA: (None, PLANNED)}),
        (
            [platform("p1", MSA)],
            {CPA: party_state(SUSPENDED)},
            {MSA: ("p1", CONNECTED), CPA: (None, SUSPENDED)},
        ),
        ([], {CPA: party_state(CONNECTED), CPB: party_state(OFFLINE)}, {}),
    ],
)
def test_snapshot_parties(
    platforms: list[Platform],
    states: dict[PartyKey, PartyState],
    expected: dict[PartyKey, tuple[str | None, ConnectionStatus]],
) -> None:
    assert holders(snapshot(*platforms, states=states)) == expected


def test_name_and_last_updated_come_from_the_role_and_the_state() -> None:
    snap = snapshot(
        platform("p1", CPA, MSA),
        states={MSA: party_state(OFFLINE), CPB: party_state(PLANNED, "Planned Co")},
    )
    shown = {k: (p.name, p.last_updated) for k, p in snap.parties.items()}
    assert shown == {
        CPA: ("p1 CPA", T0),  # no state yet: the platform's record time
        MSA: ("p1 MSA", T0 + timedelta(days=1)),
        CPB: ("Planned Co", T0 + timedelta(days=1)),
    }


def test_offline_lists_platforms_with_an_offline_party() -> None:
    snap = snapshot(
        platform("p1", CPA),
        platform("p2", MSA),
        platform("p3", CPB, state=GONE),
        states={CPA: party_state(OFFLINE), CPB: party_state(OFFLINE)},
    )
    assert snap.offline == {"p1"}


@pytest.mark.parametrize(
    ("country_code", "party_id", "expected"),
    [
        ("NL", "TWO", [Role.CPO, Role.EMSP]),
        ("nl", "two", [Role.CPO, Role.EMSP]),
        ("Nl", "tWo", [Role.CPO, Role.EMSP]),
        ("NL", "CPA", [Role.CPO]),
        ("DE", "TWO", []),
        ("NL", "TW", []),
    ],
)
def test_parties_of_is_case_insensitive(
    country_code: str, party_id: str, expected: list[Role]
) -> None:
    """types "CiString": country_code and party_id compare case-insensitively."""
    snap = snapshot(
        platform("emsp", ("NL", "TWO", Role.EMSP)),
        platform("cpo", ("NL", "TWO", Role.CPO), CPA),
    )
    assert [p.role for p in snap.parties_of(country_code, party_id)] == expected


@pytest.mark.parametrize(
    ("record", "states", "expected"),
    [
        (platform("p1", CPA), {}, True),
        (platform("p1", CPA, MSA), {CPA: party_state(OFFLINE)}, True),
        (platform("p1", CPA), {CPA: party_state(OFFLINE)}, False),
        (platform("p1"), {}, False),  # registered without parties
        (platform("p1", CPA, state=PENDING), {}, False),
        (platform("p1", CPA, state=GONE), {CPA: party_state(CONNECTED)}, False),
    ],
)
def test_connected(record: Platform, states: dict[PartyKey, PartyState], expected: bool) -> None:
    """A registered platform with at least one CONNECTED party."""
    assert snapshot(record, states=states).connected(record) is expected


@pytest.mark.parametrize(
    ("current", "updated", "claims", "expected"),
    [
        (None, platform("p1", state=PENDING), {}, {}),  # created: nothing to announce
        (
            platform("p1", state=PENDING),
            platform("p1", CPA, MSA),
            {},
            {CPA: CONNECTED, MSA: CONNECTED},
        ),
        # A registration takes over parties a suspended platform still claims.
        (platform("p1", state=PENDING), platform("p1", CPA), {CPA: "old"}, {CPA: CONNECTED}),
        # Updated credentials: the platform just answered, its parties are CONNECTED.
        (platform("p1", CPA), platform("p1", CPA), {CPA: "p1"}, {CPA: CONNECTED}),
        # Suspended: only the parties it still owns (or nobody claims) are SUSPENDED.
        (
            platform("p1", CPA, CPB, MSA),
            platform("p1", CPA, CPB, MSA, state=GONE),
            {CPA: "p1", CPB: "new"},
            {CPA: SUSPENDED, MSA: SUSPENDED},
        ),
        # Roles dropped: SUSPENDED if it owned them; the roles it keeps are CONNECTED.
        (
            platform("p1", CPA, MSA),
            platform("p1", CPA),
            {CPA: "p1", MSA: "p1"},
            {CPA: CONNECTED, MSA: SUSPENDED},
        ),
        (platform("p1", CPA, MSA), platform("p1", CPA), {CPA: "p1", MSA: "p2"}, {CPA: CONNECTED}),
        # A dropped role is SUSPENDED whatever the platform's state.
        (
            platform("p1", CPA, state=PENDING),
            platform("p1", state=PENDING),
            {CPA: "p1"},
            {CPA: SUSPENDED},
        ),
    ],
)
def teststatus_moves(
    current: Platform | None,
    updated: Platform,
    claims: dict[PartyKey, str],
    expected: dict[PartyKey, ConnectionStatus],
) -> None:
    assert status_moves(current, updated, claims) == expected


def test_retiring_old_tokens_keeps_the_grace_of_a_later_update() -> None:
    """credentials "Update" with a grace (README, credentials lifecycle): the platform's
    first call with its new token retires the tokens that were retiring then. When a later
    update has made that new token retiring before this write lands, it keeps its grace."""
    until = T0 + timedelta(minutes=5)
    later = msgspec.structs.replace(
        platform("P1"),
        token_hashes={"a": TokenKind.RETIRING, "b": TokenKind.RETIRING, "c": TokenKind.CREDENTIALS},
        retiring_until=until,
    )
    kept = retire_old_tokens(later, frozenset({"a"}))
    assert kept.token_hashes == {"b": TokenKind.RETIRING, "c": TokenKind.CREDENTIALS}
    assert kept.retiring_until == until
    only = {"a": TokenKind.RETIRING, "c": TokenKind.CREDENTIALS}
    alone = msgspec.structs.replace(later, token_hashes=only)
    assert retire_old_tokens(alone, frozenset({"a"})).retiring_until is None
