"""Objects between OCPI 2.2.1 and 2.3.0, each way, with what could not be said.

The fields that differ (spec audit 3.6; types "Price", mod_tariffs, mod_locations,
mod_tokens, mod_cdrs, mod_sessions of both tags):

- Price: 2.2.1 ``excl_vat``/``incl_vat``, 2.3.0 ``before_taxes``/``taxes`` (TaxAmount list).
  Up: ``taxes`` is one "VAT" of ``incl_vat - excl_vat``. Down: ``incl_vat`` is
  ``before_taxes`` plus every tax; a tax's name, percentage and account number are lost
  unless it is the one VAT.
- Tariff ``min_price``/``max_price``: Price in 2.2.1, PriceLimit (``before_taxes``,
  ``after_taxes``) in 2.3.0. ``tax_included`` is 2.3.0 only: up it is "NO" (2.2.1 prices are
  "excl. VAT"); down a "YES" tariff's prices are made excl. VAT with each component's ``vat``,
  and one without ``vat`` cannot be said in 2.2.1.
- 2.3.0-only fields and enum values going down are dropped (Location ``help_phone``,
  ``parking_places``, EVSE ``parking``, ``accepted_service_providers``, Connector
  ``capabilities``, CDR ``booking_id``, values outside 2.2.1's closed enums); a Connector of
  a 2.3.0-only standard, a Token of a 2.3.0-only type cannot exist in 2.2.1.
- Going up, 2.2.1 objects are 2.3.0 objects apart from prices.

``last_updated`` is never touched. Partial objects (PATCH) translate only the fields they
have. Each function returns the object for the target version and the names of the fields
it lost; an object that cannot exist there raises ``Untranslatable``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

V2_2_1, V2_3_0 = "2.2.1", "2.3.0"
TRANSLATED = frozenset({"locations", "tokens", "tariffs", "sessions", "cdrs"})

# 2.2.1's closed enums (mod_locations, mod_tokens, mod_cdrs, mod_tariffs at tag 2.2.1).
CONNECTOR_TYPES = frozenset(
    [
        "CHADEMO",
        "CHAOJI",
        "DOMESTIC_A",
        "DOMESTIC_B",
        "DOMESTIC_C",
        "DOMESTIC_D",
        "DOMESTIC_E",
        "DOMESTIC_F",
        "DOMESTIC_G",
        "DOMESTIC_H",
        "DOMESTIC_I",
        "DOMESTIC_J",
        "DOMESTIC_K",
        "DOMESTIC_L",
        "DOMESTIC_M",
        "DOMESTIC_N",
        "DOMESTIC_O",
        "GBT_AC",
        "GBT_DC",
        "IEC_62196_T1",
        "IEC_62196_T1_COMBO",
        "IEC_62196_T2",
        "IEC_62196_T2_COMBO",
        "IEC_62196_T3A",
        "IEC_62196_T3C",
        "NEMA_5_20",
        "NEMA_6_30",
        "NEMA_6_50",
        "NEMA_10_30",
        "NEMA_10_50",
        "NEMA_14_30",
        "NEMA_14_50",
        "PANTOGRAPH_BOTTOM_UP",
        "PANTOGRAPH_TOP_DOWN",
        "TESLA_R",
        "TESLA_S",
    ]
)
PARKING_RESTRICTIONS = frozenset(["EV_ONLY", "PLUGGED", "DISABLED", "CUSTOMERS", "MOTORCYCLES"])
CAPABILITIES = frozenset(
    [
        "CHARGING_PROFILE_CAPABLE",
        "CHARGING_PREFERENCES_CAPABLE",
        "CHIP_CARD_SUPPORT",
        "CONTACTLESS_CARD_SUPPORT",
        "CREDIT_CARD_PAYABLE",
        "DEBIT_CARD_PAYABLE",
        "PED_TERMINAL",
        "REMOTE_START_STOP_CAPABLE",
        "RESERVABLE",
        "RFID_READER",
        "START_SESSION_CONNECTOR_REQUIRED",
        "TOKEN_GROUP_CAPABLE",
        "UNLOCK_CAPABLE",
    ]
)
FACILITIES = frozenset(
    [
        "HOTEL",
        "RESTAURANT",
        "CAFE",
        "MALL",
        "SUPERMARKET",
        "SPORT",
        "RECREATION_AREA",
        "NATURE",
        "MUSEUM",
        "BIKE_SHARING",
        "BUS_STOP",
        "TAXI_STAND",
        "TRAM_STOP",
        "METRO_STATION",
        "TRAIN_STATION",
        "AIRPORT",
        "PARKING_LOT",
        "CARPOOL_PARKING",
        "FUEL_STATION",
        "WIFI",
    ]
)
TOKEN_TYPES = frozenset({"AD_HOC_USER", "APP_USER", "OTHER", "RFID"})
CDR_DIMENSIONS = frozenset(
    [
        "CURRENT",
        "ENERGY",
        "ENERGY_EXPORT",
        "ENERGY_IMPORT",
        "MAX_CURRENT",
        "MIN_CURRENT",
        "MAX_POWER",
        "MIN_POWER",
        "PARKING_TIME",
        "POWER",
        "RESERVATION_TIME",
        "STATE_OF_CHARGE",
        "TIME",
    ]
)
RESERVATIONS = frozenset({"RESERVATION", "RESERVATION_EXPIRES"})
_CDR_PRICES = (
    "total_cost",
    "total_fixed_cost",
    "total_energy_cost",
    "total_time_cost",
    "total_parking_cost",
    "total_reservation_cost",
)


class Untranslatable(Exception):
    """The object cannot exist in the target version; the message says why."""


class Lost(list[str]):
    """Names of the fields (or list items) dropped on the way, each once."""

    def add(self, name: str) -> None:
        if name not in self:
            self.append(name)


def translate(
    module: str, level: int, data: Any, source: str, target: str
) -> tuple[Any, list[str]]:
    """``data`` (an object of ``module`` at ``level``: 1 a top-level object, 2 an EVSE, 3 a
    Connector; or a list of top-level objects) from ``source`` to ``target``. Objects of a
    list that cannot exist in ``target`` are left out, and named as lost."""
    lost = Lost()
    if source == target or module not in TRANSLATED or data is None:
        return data, lost
    down = target == V2_2_1
    if isinstance(data, list):
        kept = []
        for item in data:
            try:
                kept.append(_one(module, 1, item, down, lost))
            except Untranslatable:
                lost.add(f"an object that cannot exist in OCPI {target}")
        return kept, lost
    return _one(module, level, data, down, lost), lost


def _one(module: str, level: int, obj: Any, down: bool, lost: Lost) -> Any:
    """One object; a shape the spec does not allow (a list where an object belongs, a
    vat of -100) cannot be translated either."""
    try:
        return _translated(module, level, obj, down, lost)
    except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise Untranslatable(f"a {module} object of an unexpected shape ({exc})") from None


def _translated(module: str, level: int, obj: Any, down: bool, lost: Lost) -> Any:
    if not isinstance(obj, dict):
        return obj
    obj = dict(obj)
    if module == "locations":
        if down:
            [_location, _evse, _connector][min(max(level, 1), 3) - 1](obj, lost, "")
    elif module == "tokens":
        if down:
            _token_type(obj, "type")
            _token_type(obj.get("token"), "token.type")  # AuthorizationInfo
    elif module == "tariffs":
        _tariff(obj, down, lost, "")
    elif module == "sessions":
        _price_field(obj, "total_cost", down, lost, "")
        if down:
            _token_type(obj.get("cdr_token"), "cdr_token.type")
            _dimensions(obj, lost)
    elif module == "cdrs":
        _cdr(obj, down, lost)
    return obj


# -- Locations (down only) -------------------------------------------------------------------


def _location(obj: dict[str, Any], lost: Lost, at: str) -> None:
    _drop(obj, ("help_phone", "parking_places"), lost, at)
    _keep_values(obj, "facilities", FACILITIES, lost, at)
    _each(obj, "evses", _evse, lost, at)


def _evse(obj: dict[str, Any], lost: Lost, at: str) -> None:
    _drop(obj, ("parking", "accepted_service_providers"), lost, at)
    _keep_values(obj, "parking_restrictions", PARKING_RESTRICTIONS, lost, at)
    _keep_values(obj, "capabilities", CAPABILITIES, lost, at)
    if _each(obj, "connectors", _connector, lost, at) == []:
        # mod_locations (2.2.1) EVSE: connectors is "+"
        raise Untranslatable("no connector of a 2.2.1 standard")


def _connector(obj: dict[str, Any], lost: Lost, at: str) -> None:
    _drop(obj, ("capabilities",), lost, at)
    standard = obj.get("standard")
    if standard is not None and standard not in CONNECTOR_TYPES:
        raise Untranslatable(f"connector standard {standard} does not exist in OCPI 2.2.1")


# -- Tokens, Tariffs, Sessions, CDRs ---------------------------------------------------------


def _token_type(obj: Any, name: str) -> None:
    if isinstance(obj, dict) and obj.get("type") not in (None, *TOKEN_TYPES):
        raise Untranslatable(f"{name} {obj['type']} does not exist in OCPI 2.2.1")


def _tariff(obj: dict[str, Any], down: bool, lost: Lost, at: str) -> None:
    for name in ("min_price", "max_price"):
        if isinstance(obj.get(name), dict):
            obj[name] = _price_limit(obj[name], down)
    if not down:
        if "elements" in obj or "currency" in obj:  # a whole Tariff, not a part of one
            obj.setdefault("tax_included", "NO")
        return
    included = obj.pop("tax_included", None)
    if isinstance(obj.get("elements"), list):
        elements = []
        for element in obj["elements"]:
            element = dict(element) if isinstance(element, dict) else element
            reservation = (element.get("restrictions") or {}).get("reservation")
            if reservation is not None and reservation not in RESERVATIONS:
                lost.add(f"{at}elements[] (a 2.3.0-only reservation type)")
                continue
            if included == "YES":
                element["price_components"] = [
                    _excluding_vat(c) for c in element.get("price_components") or []
                ]
            elements.append(element)
        obj["elements"] = elements


def _excluding_vat(component: Any) -> Any:
    """tax_included YES to 2.2.1's "Price per unit (excl. VAT)"."""
    if not isinstance(component, dict) or not isinstance(component.get("price"), int | float):
        return component
    vat = component.get("vat")
    if not isinstance(vat, int | float):
        raise Untranslatable("a tariff with taxes included and no vat has no 2.2.1 form")
    return {**component, "price": round(component["price"] / (1 + vat / 100), 4)}


def _price_limit(price: dict[str, Any], down: bool) -> dict[str, Any]:
    """Tariff min/max: 2.2.1 Price <-> 2.3.0 PriceLimit."""
    if down:
        out = {"excl_vat": price.get("before_taxes")}
        if price.get("after_taxes") is not None:
            out["incl_vat"] = price["after_taxes"]
        return out
    out = {"before_taxes": price.get("excl_vat")}
    if price.get("incl_vat") is not None:
        out["after_taxes"] = price["incl_vat"]
    return out


def _price_field(obj: dict[str, Any], name: str, down: bool, lost: Lost, at: str) -> None:
    price = obj.get(name)
    if not isinstance(price, dict):
        return
    if not down:
        out: dict[str, Any] = {"before_taxes": price.get("excl_vat")}
        incl, excl = price.get("incl_vat"), price.get("excl_vat")
        if isinstance(incl, int | float) and isinstance(excl, int | float):
            out["taxes"] = [{"name": "VAT", "amount": round(incl - excl, 4)}]
        obj[name] = out
        return
    out = {"excl_vat": price.get("before_taxes")}
    taxes = price.get("taxes")
    if isinstance(taxes, list) and taxes:
        amounts = [t.get("amount") for t in taxes if isinstance(t, dict)]
        numbers = [a for a in amounts if isinstance(a, int | float)]
        before = price.get("before_taxes")
        if isinstance(before, int | float) and len(numbers) == len(taxes):
            out["incl_vat"] = round(before + sum(numbers), 4)
        plain_vat = (
            len(taxes) == 1
            and isinstance(taxes[0], dict)
            and str(taxes[0].get("name", "")).upper() == "VAT"
            and set(taxes[0]) <= {"name", "amount"}
        )
        if not plain_vat:
            lost.add(f"{at}{name}.taxes (names, percentages and accounts; summed in incl_vat)")
    obj[name] = out


def _cdr(obj: dict[str, Any], down: bool, lost: Lost) -> None:
    for name in _CDR_PRICES:
        _price_field(obj, name, down, lost, "")
    if isinstance(obj.get("tariffs"), list):
        tariffs = []
        for tariff in obj["tariffs"]:
            tariff = dict(tariff) if isinstance(tariff, dict) else tariff
            try:
                if isinstance(tariff, dict):
                    _tariff(tariff, down, lost, "tariffs[].")
                tariffs.append(tariff)
            except Untranslatable:
                lost.add("tariffs[] (a tariff that cannot exist in OCPI 2.2.1)")
        obj["tariffs"] = tariffs
    if not down:
        return
    _drop(obj, ("booking_id",), lost, "")
    _token_type(obj.get("cdr_token"), "cdr_token.type")
    standard = (obj.get("cdr_location") or {}).get("connector_standard")
    if standard is not None and standard not in CONNECTOR_TYPES:
        raise Untranslatable("its connector standard does not exist in OCPI 2.2.1")
    _dimensions(obj, lost)


def _dimensions(obj: dict[str, Any], lost: Lost) -> None:
    """Session and CDR charging periods: CdrDimensionType is closed in 2.2.1."""
    for period in obj.get("charging_periods") or []:
        if isinstance(period, dict) and isinstance(period.get("dimensions"), list):
            kept = [
                d
                for d in period["dimensions"]
                if not isinstance(d, dict) or d.get("type") in CDR_DIMENSIONS
            ]
            if len(kept) < len(period["dimensions"]):
                lost.add("charging_periods[].dimensions[] (2.3.0-only types)")
            period["dimensions"] = kept


# -- helpers ---------------------------------------------------------------------------------

Part = Callable[[dict[str, Any], Lost, str], None]


def _each(obj: dict[str, Any], name: str, part: Part, lost: Lost, at: str) -> list[Any] | None:
    """Translate each item of the list ``name`` with ``part``; one that cannot exist in
    the target version is left out and named. Returns the new list (None: no such list)."""
    items = obj.get(name)
    if not isinstance(items, list):
        return None
    kept = []
    for item in items:
        try:
            item = dict(item)
            part(item, lost, f"{at}{name}[].")
            kept.append(item)
        except (Untranslatable, TypeError, ValueError):
            lost.add(f"{at}{name}[] (one that cannot exist in OCPI 2.2.1)")
    obj[name] = kept
    return kept


def _drop(obj: dict[str, Any], names: tuple[str, ...], lost: Lost, at: str) -> None:
    for name in names:
        if name in obj:
            del obj[name]
            lost.add(at + name)


def _keep_values(
    obj: dict[str, Any], name: str, allowed: frozenset[str], lost: Lost, at: str
) -> None:
    values = obj.get(name)
    if isinstance(values, list):
        kept = [v for v in values if v in allowed]
        if len(kept) < len(values):
            lost.add(f"{at}{name} (values 2.2.1 lacks)")
        obj[name] = kept
