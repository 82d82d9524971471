"""A 2.2.1 platform built on a third-party OCPI library exchanges Locations and Sessions
with 2.3.0 parties through the hub.

The library is extrawest-ocpi from the package registry. It pins FastAPI 0.101 and
pydantic 1, so it runs in a virtual environment of its own under .cache/, made by
`make test` or on first use. Its OCPI routes, models and credentials handshake are the
library's: what it accepts and what it answers are a reading of 2.2.1 independent of the
hub's.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes import ALL_MODULES, FakePlatform, register
from tests.support import RunningHub

pytestmark = pytest.mark.thirdparty

LIBRARY = "extrawest-ocpi==2025.7.16"
VENV = Path(__file__).resolve().parent.parent / ".cache" / "extrawest-ocpi-2025.7.16"
PLATFORM = Path(__file__).resolve().parent / "thirdparty" / "extrawest_platform.py"
TOKEN_A = "xw-token-a"


@pytest.fixture(scope="session")
def library_python() -> Path:
    """The library's interpreter: its own virtual environment, made on first use."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", LIBRARY, "uvicorn<0.30"],
            check=True,
            timeout=600,
        )
    return python


@pytest.fixture
def library_platform(library_python: Path) -> Iterator[str]:
    """The platform on a free loopback port; its versions URL. Stopped by its pid."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(library_python), str(PLATFORM), str(port), TOKEN_A],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/ocpi/versions"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the library platform did not start"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def connected(
    hub: RunningHub, http: aiohttp.ClientSession, library_platform: str
) -> AsyncIterator[tuple[FakePlatform, FakePlatform]]:
    """The hub registers with the library platform (hub as credentials Sender, admin
    connect), and a 2.3.0 CPO and eMSP register with the hub."""
    created = await hub.create_platform(http, "Library")
    async with http.post(
        f"{hub.url}/admin/platforms/{created['id']}/connect",
        json={"versions_url": library_platform, "token_a": TOKEN_A},
        headers=hub.admin,
    ) as response:
        platform = await response.json()
        assert response.status == 200, platform
    assert platform["version"] == "2.2.1"
    # CiString: the library sends its party ids in lower case; the hub matches any case.
    assert {(r["party_id"].upper(), r["role"]) for r in platform["roles"]} == {
        ("XWC", "CPO"),
        ("XWE", "EMSP"),
    }
    async with (
        FakePlatform("CPO 230", [("NL", "CPN", "CPO")], ALL_MODULES) as cpo,
        FakePlatform("MSP 230", [("DE", "MSA", "EMSP")], ALL_MODULES) as msp,
    ):
        await register(hub, http, cpo)
        await register(hub, http, msp)
        yield cpo, msp


async def call(
    http: aiohttp.ClientSession,
    hub: RunningHub,
    sender: FakePlatform,
    method: str,
    path: str,
    to: tuple[str, str],
    body: Any = None,
) -> dict[str, Any]:
    url = f"{hub.url}/ocpi/2.3.0/{path}"
    async with http.request(method, url, json=body, headers=sender.routed(to)) as response:
        return dict(await response.json())


async def test_a_230_emsp_reads_a_221_library_cpos_location_and_sessions(
    hub: RunningHub, http: aiohttp.ClientSession, connected: tuple[FakePlatform, FakePlatform]
) -> None:
    """The library's 2.2.1 Session (total_cost excl_vat 2.00, incl_vat 2.42) reaches the
    2.3.0 eMSP as a 2.3.0 one (before_taxes 2.00, one VAT of 0.42); last_updated as sent."""
    _, msp = connected
    location = await call(http, hub, msp, "GET", "locations/sender/XL1", ("NL", "XWC"))
    assert location["status_code"] == 1000, location
    (found,) = location["data"]  # this library answers one object as a list of one
    assert found["id"].upper() == "XL1"  # CiString, lower-cased by the library
    assert found["evses"][0]["connectors"][0]["standard"] == "IEC_62196_T2"
    sessions = await call(http, hub, msp, "GET", "sessions/sender", ("NL", "XWC"))
    assert sessions["status_code"] == 1000, sessions
    (session,) = sessions["data"]
    assert session["total_cost"] == {
        "before_taxes": 2.0,
        "taxes": [{"name": "VAT", "amount": 0.42}],
    }
    assert session["last_updated"] == "2026-01-01T00:00:00Z"


async def test_a_230_cpo_pushes_a_location_and_a_session_the_library_accepts(
    hub: RunningHub,
    http: aiohttp.ClientSession,
    connected: tuple[FakePlatform, FakePlatform],
    library_platform: str,
) -> None:
    """The library validates what it is sent against its own 2.2.1 models (pydantic): a
    2.3.0 Location with 2.3.0-only fields and a Session priced the 2.3.0 way pass only as
    translated."""
    cpo, _ = connected
    location = {
        "country_code": "NL", "party_id": "CPN", "id": "L9", "publish": True,
        "address": "Dam 1", "city": "Amsterdam", "country": "NLD",
        "coordinates": {"latitude": "52.373056", "longitude": "4.892222"},
        "time_zone": "Europe/Amsterdam", "help_phone": "+31201234567",
        "last_updated": "2026-02-01T00:00:00Z",
    }  # fmt: skip
    answer = await call(
        http, hub, cpo, "PUT", "locations/receiver/NL/CPN/L9", ("NL", "XWE"), location
    )
    assert answer["status_code"] == 1000, answer
    assert "help_phone" in answer["status_message"]
    session = {
        "country_code": "NL", "party_id": "CPN", "id": "S9",
        "start_date_time": "2026-02-01T00:00:00Z", "kwh": 3.0,
        "cdr_token": {"country_code": "NL", "party_id": "XWE", "uid": "U9", "type": "RFID",
                      "contract_id": "NL-XWE-C9"},
        "auth_method": "WHITELIST", "location_id": "L9", "evse_uid": "E1", "connector_id": "1",
        "currency": "EUR",
        "total_cost": {"before_taxes": 1.0, "taxes": [{"name": "VAT", "amount": 0.21}]},
        "status": "ACTIVE", "last_updated": "2026-02-01T00:00:00Z",
    }  # fmt: skip
    answer = await call(
        http, hub, cpo, "PUT", "sessions/receiver/NL/CPN/S9", ("NL", "XWE"), session
    )
    assert answer["status_code"] == 1000, answer
    received = await _received(http, library_platform)
    by_module = {r["module"]: r["data"] for r in received}
    assert by_module["locations"]["id"].upper() == "L9"
    assert "help_phone" not in by_module["locations"]
    assert by_module["sessions"]["total_cost"] == {"excl_vat": 1.0, "incl_vat": 1.21}


async def _received(http: aiohttp.ClientSession, versions_url: str) -> list[dict[str, Any]]:
    base = versions_url.removesuffix("/ocpi/versions")
    async with http.get(f"{base}/received") as response:
        return list(await response.json())


def test_the_library_venv_is_outside_the_repository_index() -> None:
    """.cache/ is ignored: the library's environment never lands in a commit."""
    ignored = (Path(__file__).resolve().parent.parent / ".gitignore").read_text().split()
    assert ".cache/" in ignored or "/.cache/" in ignored
