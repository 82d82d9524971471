"""OCPI objects of realistic shape and size for the fake platforms and the load client.

Sizes matter more than values here: a Location with a few EVSEs is about 2 kB, a
1 MB body is the same Location with many EVSEs, or a page of many Locations.
"""

from __future__ import annotations

from typing import Any

import msgspec

TIMESTAMP = "2026-01-01T00:00:00Z"
_encoder = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def decode(raw: bytes) -> Any:
    """JSON or None: the load client checks answers, it does not trust them."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


def envelope(data: Any = None, status_code: int = 1000, message: str | None = None) -> bytes:
    body: dict[str, Any] = {"status_code": status_code, "timestamp": TIMESTAMP}
    if data is not None:
        body["data"] = data
    if message is not None:
        body["status_message"] = message
    return encode(body)


def _evse(location_id: str, n: int) -> dict[str, Any]:
    uid = f"{location_id}-E{n}"
    return {
        "uid": uid,
        "evse_id": f"NL*CPA*E{location_id}{n}",
        "status": "AVAILABLE",
        "capabilities": ["RFID_READER", "REMOTE_START_STOP_CAPABLE"],
        "connectors": [
            {
                "id": str(c),
                "standard": "IEC_62196_T2",
                "format": "SOCKET",
                "power_type": "AC_3_PHASE",
                "max_voltage": 230,
                "max_amperage": 32,
                "max_electric_power": 22000,
                "tariff_ids": ["TARIFF-AC"],
                "last_updated": TIMESTAMP,
            }
            for c in (1, 2)
        ],
        "coordinates": {"latitude": "52.370216", "longitude": "4.895168"},
        "last_updated": TIMESTAMP,
    }


def location(
    location_id: str, evses: int = 2, country_code: str = "NL", party_id: str = "CPA"
) -> dict[str, Any]:
    """A Location as a CPO publishes it; 2 EVSEs make about 2 kB of JSON."""
    return {
        "country_code": country_code,
        "party_id": party_id,
        "id": location_id,
        "publish": True,
        "name": f"Charging plaza {location_id}",
        "address": "Stationsplein 1",
        "city": "Amsterdam",
        "postal_code": "1012AB",
        "country": "NLD",
        "coordinates": {"latitude": "52.370216", "longitude": "4.895168"},
        "parking_type": "ON_STREET",
        "evses": [_evse(location_id, n) for n in range(evses)],
        "operator": {"name": "Charge Co", "website": "https://charge.example.com"},
        "time_zone": "Europe/Amsterdam",
        "opening_times": {"twentyfourseven": True},
        "energy_mix": {"is_green_energy": True},
        "last_updated": TIMESTAMP,
    }


def sized_location(location_id: str, size: int) -> dict[str, Any]:
    """A Location whose JSON is at least ``size`` bytes (more EVSEs make it bigger)."""
    one = len(encode(location(location_id, 1)))
    per_evse = len(encode(location(location_id, 2))) - one
    evses = max(1, 1 + -(-(size - one) // per_evse))
    return location(location_id, evses)


def location_page(prefix: str, size: int) -> list[dict[str, Any]]:
    """Enough 2 kB Locations to make a page of at least ``size`` bytes."""
    per_location = len(encode(location(f"{prefix}0"))) + 1
    return [location(f"{prefix}{n}") for n in range(-(-size // per_location))]


def token(uid: str, country_code: str = "DE", party_id: str = "MSA") -> dict[str, Any]:
    """A Token as an eMSP pushes it to a CPO (about 300 bytes of JSON)."""
    return {
        "country_code": country_code,
        "party_id": party_id,
        "uid": uid,
        "type": "RFID",
        "contract_id": f"{country_code}-{party_id}-C{uid}",
        "issuer": "Mobility Co",
        "valid": True,
        "whitelist": "ALLOWED",
        "language": "en",
        "last_updated": TIMESTAMP,
    }
