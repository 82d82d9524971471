"""Objects between OCPI 2.2.1 and 2.3.0 (hub/ocpi/translation.py).

types "Price class" (2.2.1: excl_vat, incl_vat; 2.3.0: before_taxes, taxes), mod_tariffs
"Tariff Object" (min_price/max_price PriceLimit, tax_included), mod_locations, mod_tokens
"TokenType", mod_cdrs; transport_and_format "Timestamps and Objects send via Hubs":
last_updated is never touched.
"""

from __future__ import annotations

from typing import Any

import pytest

from hub.ocpi.translation import Untranslatable, translate

STAMP = "2026-01-01T00:00:00Z"


def up(module: str, data: Any, level: int = 1) -> tuple[Any, list[str]]:
    return translate(module, level, data, "2.2.1", "2.3.0")


def down(module: str, data: Any, level: int = 1) -> tuple[Any, list[str]]:
    return translate(module, level, data, "2.3.0", "2.2.1")


def test_a_session_price_goes_up_with_vat_as_one_tax() -> None:
    session = {
        "id": "S1",
        "total_cost": {"excl_vat": 10.0, "incl_vat": 12.1},
        "last_updated": STAMP,
    }
    out, lost = up("sessions", session)
    assert out == {
        "id": "S1",
        "total_cost": {"before_taxes": 10.0, "taxes": [{"name": "VAT", "amount": 2.1}]},
        "last_updated": STAMP,
    }
    assert lost == []
    assert up("sessions", {"total_cost": {"excl_vat": 3}})[0] == {"total_cost": {"before_taxes": 3}}


def test_a_session_price_goes_down_with_taxes_summed() -> None:
    one_vat = {"total_cost": {"before_taxes": 10.0, "taxes": [{"name": "VAT", "amount": 2.1}]}}
    assert down("sessions", one_vat) == ({"total_cost": {"excl_vat": 10.0, "incl_vat": 12.1}}, [])
    two = {
        "total_cost": {
            "before_taxes": 10.0,
            "taxes": [{"name": "GST", "amount": 0.5}, {"name": "QST", "amount": 1.0}],
        }
    }
    out, lost = down("sessions", two)
    assert out == {"total_cost": {"excl_vat": 10.0, "incl_vat": 11.5}}
    assert lost == ["total_cost.taxes (names, percentages and accounts; summed in incl_vat)"]
    assert down("sessions", {"total_cost": {"before_taxes": 4}})[0] == {
        "total_cost": {"excl_vat": 4}
    }


def test_a_patch_translates_only_the_fields_it_has() -> None:
    assert up("sessions", {"kwh": 5, "last_updated": STAMP}) == (
        {"kwh": 5, "last_updated": STAMP},
        [],
    )


def test_a_tariff_goes_up_with_tax_included_no_and_price_limits() -> None:
    tariff = {
        "id": "T1",
        "currency": "EUR",
        "min_price": {"excl_vat": 1, "incl_vat": 1.21},
        "elements": [{"price_components": [{"type": "ENERGY", "price": 0.3, "step_size": 1}]}],
        "last_updated": STAMP,
    }
    out, _ = up("tariffs", tariff)
    assert out["tax_included"] == "NO"
    assert out["min_price"] == {"before_taxes": 1, "after_taxes": 1.21}
    assert out["last_updated"] == STAMP and out["elements"] == tariff["elements"]


def test_a_tariff_with_taxes_included_goes_down_excluding_vat() -> None:
    tariff = {
        "id": "T1",
        "currency": "EUR",
        "tax_included": "YES",
        "max_price": {"before_taxes": 10, "after_taxes": 12.1},
        "elements": [
            {"price_components": [{"type": "ENERGY", "price": 0.363, "vat": 21, "step_size": 1}]},
            {"price_components": [], "restrictions": {"reservation": "RESERVATION_OVERTIME"}},
        ],
    }
    out, lost = down("tariffs", tariff)
    assert "tax_included" not in out
    assert out["max_price"] == {"excl_vat": 10, "incl_vat": 12.1}
    assert out["elements"] == [
        {"price_components": [{"type": "ENERGY", "price": 0.3, "vat": 21, "step_size": 1}]}
    ]
    assert lost == ["elements[] (a 2.3.0-only reservation type)"]
    no_vat = {**tariff, "elements": [{"price_components": [{"type": "TIME", "price": 2}]}]}
    with pytest.raises(Untranslatable, match="no vat"):
        down("tariffs", no_vat)


def test_a_230_location_goes_down_without_its_230_fields() -> None:
    location = {
        "id": "L1",
        "help_phone": "+31123",
        "facilities": ["CAFE", "SOMETHING_NEW"],
        "evses": [
            {
                "uid": "E1",
                "parking": [{"parking_id": "P1"}],
                "connectors": [
                    {"id": "1", "standard": "IEC_62196_T2", "capabilities": ["ISO_15118_2"]},
                    {"id": "2", "standard": "MCS"},
                ],
            },
            {"uid": "E2", "connectors": [{"id": "1", "standard": "SAE_J3400"}]},
        ],
        "last_updated": STAMP,
    }
    out, lost = down("locations", location)
    assert out == {
        "id": "L1",
        "facilities": ["CAFE"],
        "evses": [{"uid": "E1", "connectors": [{"id": "1", "standard": "IEC_62196_T2"}]}],
        "last_updated": STAMP,
    }
    assert "help_phone" in lost and "evses[].parking" in lost
    assert "evses[].connectors[].capabilities" in lost
    assert "evses[] (one that cannot exist in OCPI 2.2.1)" in lost
    assert up("locations", location) == (location, []), "2.3.0 keeps every 2.2.1 field"


def test_a_connector_of_a_230_only_standard_cannot_go_down_alone() -> None:
    with pytest.raises(Untranslatable, match="MCS"):
        down("locations", {"id": "2", "standard": "MCS"}, level=3)


def test_tokens_of_230_only_types_cannot_go_down() -> None:
    assert down("tokens", {"uid": "U1", "type": "RFID"}) == ({"uid": "U1", "type": "RFID"}, [])
    with pytest.raises(Untranslatable, match="EMAID"):
        down("tokens", {"uid": "U1", "type": "EMAID"})
    kept, lost = down("tokens", [{"uid": "U1", "type": "RFID"}, {"uid": "U2", "type": "EMAID"}])
    assert kept == [{"uid": "U1", "type": "RFID"}] and len(lost) == 1


def test_a_cdr_goes_down_without_booking_id_and_new_dimensions() -> None:
    cdr = {
        "id": "C1",
        "booking_id": "B1",
        "cdr_token": {"uid": "U1", "type": "RFID"},
        "total_cost": {"before_taxes": 5, "taxes": [{"name": "VAT", "amount": 1}]},
        "charging_periods": [
            {"dimensions": [{"type": "ENERGY", "volume": 3}, {"type": "RESERVATION_EXPIRES"}]}
        ],
        "last_updated": STAMP,
    }
    out, lost = down("cdrs", cdr)
    assert "booking_id" not in out and out["total_cost"] == {"excl_vat": 5, "incl_vat": 6}
    assert out["charging_periods"] == [{"dimensions": [{"type": "ENERGY", "volume": 3}]}]
    assert lost == ["booking_id", "charging_periods[].dimensions[] (2.3.0-only types)"]
    assert out["last_updated"] == STAMP


def test_same_version_and_other_modules_are_untouched() -> None:
    body = {"total_cost": {"excl_vat": 1}}
    assert translate("sessions", 1, body, "2.2.1", "2.2.1") == (body, [])
    assert translate("commands", 1, body, "2.2.1", "2.3.0") == (body, [])


@pytest.mark.parametrize(
    ("module", "level", "data"),
    [
        (
            "tariffs",
            1,
            {
                "tax_included": "YES",
                "elements": [{"price_components": [{"price": 1, "vat": -100}]}],
            },
        ),
        ("tariffs", 1, {"elements": ["x"]}),
        ("tariffs", 1, {"elements": [{"restrictions": "x"}]}),
        ("locations", 1, {"facilities": [{}]}),
        ("locations", 2, {"capabilities": [[1]]}),
        ("locations", 3, {"standard": {}}),
        ("cdrs", 1, {"charging_periods": 5}),
    ],
)
def test_a_shape_the_spec_does_not_allow_is_refused_not_a_crash(
    module: str, level: int, data: Any
) -> None:
    with pytest.raises(Untranslatable):
        down(module, data, level)


def test_230_only_values_nested_in_sessions_cdrs_and_authorizations_do_not_go_down() -> None:
    session = {"charging_periods": [{"dimensions": [{"type": "RESERVATION_OVERTIME"}]}]}
    out, lost = down("sessions", session)
    assert out == {"charging_periods": [{"dimensions": []}]} and lost
    with pytest.raises(Untranslatable, match="connector standard"):
        down("cdrs", {"cdr_location": {"connector_standard": "MCS"}})
    with pytest.raises(Untranslatable, match="EMAID"):
        down("tokens", {"allowed": "ALLOWED", "token": {"uid": "U1", "type": "EMAID"}})


def test_loss_names_carry_no_values_a_sender_chose() -> None:
    """Counted per field (GET /admin/platforms/{id}/losses): a sender's odd values must not
    make new names."""
    _, lost = down("locations", {"facilities": ["NEW_1", "NEW_2"]})
    assert lost == ["facilities (values 2.2.1 lacks)"]
