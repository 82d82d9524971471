"""The `hub` command's admin subcommands against a running hub."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp

from tests.fakes import FakePlatform
from tests.support import RunningHub
from tests.test_credentials_lifecycle import accepting_updates


async def hub_cli(hub: RunningHub, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "hub",
        *args,
        "--url",
        hub.url,
        "--token",
        hub.settings.admin_token,
    ]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60
    )


async def test_platform_lifecycle_through_cli(hub: RunningHub, http: aiohttp.ClientSession):
    added = await hub_cli(hub, "platforms", "add", "MSP Co", "--json")
    assert added.returncode == 0, added.stderr
    platform = json.loads(added.stdout)
    assert platform["name"] == "MSP Co" and platform["token_a"]

    table = await hub_cli(hub, "platforms", "list")
    assert table.returncode == 0
    header, row = table.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "STATE", "VERSION", "VERSIONS_URL"]
    assert row.split()[:4] == [platform["id"], "MSP", "Co", "PENDING"]
    assert platform["token_a"] not in table.stdout

    async with FakePlatform("MSP Co", [("DE", "MSA", "EMSP")]) as emsp:
        token_a = emsp.issue_token_a()
        connected = await hub_cli(
            hub, "platforms", "connect", platform["id"], emsp.versions_url, token_a, "--json"
        )
        assert connected.returncode == 0, connected.stderr
        assert json.loads(connected.stdout)["state"] == "REGISTERED"
        before = emsp.hub_token
        accepting_updates(emsp)
        rotated = await hub_cli(hub, "platforms", "rotate", platform["id"], "--json")
        assert rotated.returncode == 0, rotated.stderr
        assert json.loads(rotated.stdout)["state"] == "REGISTERED"
        assert emsp.hub_token != before

    parties = await hub_cli(hub, "parties", "list", "--json")
    assert [(p["party_id"], p["status"]) for p in json.loads(parties.stdout)] == [
        ("MSA", "CONNECTED")
    ]
    parties_table = await hub_cli(hub, "parties", "list")
    assert "MSA" in parties_table.stdout and "CONNECTED" in parties_table.stdout

    suspended = await hub_cli(hub, "platforms", "suspend", platform["id"])
    assert suspended.returncode == 0 and "SUSPENDED" in suspended.stdout
    parties = await hub_cli(hub, "parties", "list", "--json")
    assert json.loads(parties.stdout)[0]["status"] == "SUSPENDED"


async def test_a_221_only_versions_url_through_cli(hub: RunningHub) -> None:
    added = await hub_cli(hub, "platforms", "add", "Strict", "--version", "2.2.1", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["versions_url"].endswith("/ocpi/versions/2.2.1")


async def test_cli_reports_admin_errors(hub: RunningHub):
    result = await hub_cli(hub, "platforms", "suspend", "unknown-id")
    assert result.returncode != 0
    assert "404" in result.stderr and "unknown platform" in result.stderr
