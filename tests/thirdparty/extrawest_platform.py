"""A 2.2.1 platform built on extrawest-ocpi (py_ocpi, FastAPI + pydantic 1): a CPO (party
XWC) whose Locations and Sessions are in memory, and an eMSP (party XWE) that keeps what it
is sent. Run with that library's own interpreter: ``python extrawest_platform.py PORT
TOKEN_A``; ``GET /received`` lists what its eMSP was sent.

Everything OCPI here (routes, models, validation, the credentials handshake as Receiver) is
the library's; this file only stores objects.
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import Any

PORT, TOKEN_A = int(sys.argv[1]), sys.argv[2]
os.environ["OCPI_HOST"] = f"127.0.0.1:{PORT}"
os.environ["PROTOCOL"] = "http"

import uvicorn  # noqa: E402
from py_ocpi.core.authentication.authenticator import Authenticator  # noqa: E402
from py_ocpi.core.enums import ModuleID, RoleEnum  # noqa: E402
from py_ocpi.main import get_application  # noqa: E402
from py_ocpi.modules.versions.enums import VersionNumber  # noqa: E402

URL = f"http://127.0.0.1:{PORT}/ocpi/versions"
LOCATION = {
    "country_code": "NL", "party_id": "XWC", "id": "XL1", "publish": True,
    "address": "Main street 1", "city": "Amsterdam", "country": "NLD",
    "coordinates": {"latitude": "52.370216", "longitude": "4.895168"},
    "time_zone": "Europe/Amsterdam", "last_updated": "2026-01-01T00:00:00Z",
    "evses": [{
        "uid": "XE1", "status": "AVAILABLE", "last_updated": "2026-01-01T00:00:00Z",
        "connectors": [{
            "id": "1", "standard": "IEC_62196_T2", "format": "SOCKET", "power_type": "AC_3_PHASE",
            "max_voltage": 230, "max_amperage": 16, "last_updated": "2026-01-01T00:00:00Z",
        }],
    }],
}  # fmt: skip
SESSION = {
    "country_code": "NL", "party_id": "XWC", "id": "XS1",
    "start_date_time": "2026-01-01T00:00:00Z", "kwh": 5.0,
    "cdr_token": {"country_code": "DE", "party_id": "MSA", "uid": "U1", "type": "RFID",
                  "contract_id": "DE-MSA-C1"},
    "auth_method": "WHITELIST", "location_id": "XL1", "evse_uid": "XE1", "connector_id": "1",
    "currency": "EUR", "total_cost": {"excl_vat": 2.0, "incl_vat": 2.42},
    "status": "ACTIVE", "last_updated": "2026-01-01T00:00:00Z",
}  # fmt: skip

tokens_c: list[str] = []
held: dict[tuple[str, str], dict[str, Any]] = {
    ("locations", "XL1"): LOCATION,
    ("sessions", "XS1"): SESSION,
}
received: list[dict[str, Any]] = []


class Auth(Authenticator):
    @classmethod
    async def get_valid_token_c(cls) -> list[str]:
        return tokens_c

    @classmethod
    async def get_valid_token_a(cls) -> list[str]:
        return [TOKEN_A]


def _key(module: Any, id: Any) -> tuple[str, str]:
    """Ids are CiString: the library may hand them over in another case."""
    return (getattr(module, "value", str(module)), str(id).upper())


class Crud:
    @classmethod
    async def get(cls, module: Any, role: Any, id: Any, *args: Any, **kwargs: Any) -> Any:
        return held.get(_key(module, id))

    @classmethod
    async def list(cls, module: Any, role: Any, filters: dict, *args: Any, **kwargs: Any) -> Any:
        found = [v for (m, _), v in held.items() if m == getattr(module, "value", module)]
        return found, len(found), True

    @classmethod
    async def create(cls, module: Any, role: Any, data: dict, *args: Any, **kwargs: Any) -> Any:
        if module == ModuleID.credentials_and_registration:
            token = "xw-c-" + secrets.token_hex(8)
            tokens_c.append(token)
            return {
                "token": token,
                "url": URL,
                "roles": [
                    {"role": "CPO", "party_id": "XWC", "country_code": "NL",
                     "business_details": {"name": "XW CPO"}},
                    {"role": "EMSP", "party_id": "XWE", "country_code": "NL",
                     "business_details": {"name": "XW eMSP"}},
                ],
            }  # fmt: skip
        received.append({"module": module.value, "data": data})
        return data

    @classmethod
    async def update(
        cls, module: Any, role: Any, data: dict, id: Any, *args: Any, **kwargs: Any
    ) -> Any:
        received.append({"module": module.value, "data": data})
        return data

    @classmethod
    async def delete(cls, module: Any, role: Any, id: Any, *args: Any, **kwargs: Any) -> None:
        return None

    @classmethod
    async def do(cls, module: Any, role: Any, action: Any, *args: Any, **kwargs: Any) -> Any:
        return None


app = get_application(
    version_numbers=[VersionNumber.v_2_2_1],
    roles=[RoleEnum.cpo, RoleEnum.emsp],
    crud=Crud,
    modules=[ModuleID.locations, ModuleID.sessions, ModuleID.credentials_and_registration],
    authenticator=Auth,
)


@app.get("/received")
async def what_was_received() -> list[dict[str, Any]]:
    return received


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
