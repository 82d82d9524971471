"""The dashboard in a real browser: Playwright driving Debian's Chromium.

Skipped, with the reason, only where Chromium is not installed; ``.ci/run`` installs it and
sets HUB_REQUIRE_BROWSER=1, so there a missing browser fails instead.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import HubFactory
from tests.fakes import FakePlatform, ocpi, register

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("HUB_CHROMIUM", "/usr/bin/chromium")
ARTEFACTS = Path(os.environ.get("HUB_TEST_ARTEFACTS", "test-artefacts"))
# As root, in a sandbox with no network: no Chromium sandbox, none of its background calls.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CPO, EMSP = ("NL", "CPA"), ("DE", "MSA")
MODULES = [("locations", "SENDER"), ("locations", "RECEIVER")]


def _browser_or_skip() -> str:
    if shutil.which(CHROMIUM) or Path(CHROMIUM).exists():
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        return CHROMIUM
    reason = f"no Chromium at {CHROMIUM}: apt-get install chromium (or set HUB_CHROMIUM)"
    if os.environ.get("HUB_REQUIRE_BROWSER"):
        pytest.fail(reason)
    pytest.skip(reason)


async def test_operator_watches_a_platform_go_offline_and_follows_an_exchange(
    hub_factory: HubFactory, http: aiohttp.ClientSession
):
    from playwright.async_api import async_playwright, expect

    executable = _browser_or_skip()
    async with (
        hub_factory(alive_interval=1.0) as hub,
        FakePlatform("CPO Co", [(*CPO, "CPO")], MODULES) as cpo,
        FakePlatform("MSP Co", [(*EMSP, "EMSP")], MODULES) as emsp,
        async_playwright() as playwright,
    ):
        await register(hub, http, cpo)
        await register(hub, http, emsp)

        async def locations(received, request):  # type: ignore[no-untyped-def]
            return ocpi([{"id": "LOC1"}])

        cpo.handler = locations
        correlation_id = str(uuid.uuid4())
        headers = {**emsp.routed(CPO), "X-Correlation-ID": correlation_id}
        async with http.get(hub.endpoint("locations", "sender"), headers=headers) as response:
            assert response.status == 200

        browser = await playwright.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 800})
            await page.goto(f"{hub.url}/dashboard")
            await expect(page.locator("tr[data-party]")).to_have_count(0)
            await page.fill("input[name=token]", hub.admin_token)
            await page.click("button[type=submit]")
            await expect(page).to_have_url(f"{hub.url}/dashboard/parties")

            cpo_status = page.locator('tr[data-party="NL/CPA"] [data-status]')
            emsp_status = page.locator('tr[data-party="DE/MSA"] [data-status]')
            await expect(cpo_status).to_have_text("CONNECTED")
            await expect(emsp_status).to_have_text("CONNECTED")
            await page.screenshot(path=str(ARTEFACTS / "dashboard-parties.png"), full_page=True)

            # A mark in the page survives in-place refreshes, never a reload.
            await page.evaluate("window.notReloaded = true")
            await cpo.stop()
            await expect(cpo_status).to_have_text("OFFLINE", timeout=20_000)
            await expect(emsp_status).to_have_text("CONNECTED")
            assert await page.evaluate("window.notReloaded === true")
            await page.screenshot(path=str(ARTEFACTS / "dashboard-offline.png"), full_page=True)

            await page.click("header >> text=Traffic")
            await expect(page).to_have_url(f"{hub.url}/dashboard/traffic")
            link = page.locator(f'tr[data-correlation="{correlation_id}"] a.correlation').first
            await link.click()
            await expect(page).to_have_url(f"{hub.url}/dashboard/traffic/{correlation_id}")
            hops = page.locator(f'#hops tr[data-correlation="{correlation_id}"]')
            await expect(hops).to_have_count(2)
            await expect(hops.nth(0)).to_contain_text("→ hub")
            await expect(hops.nth(1)).to_contain_text("hub →")
            await page.screenshot(path=str(ARTEFACTS / "dashboard-exchange.png"), full_page=True)

            await page.click("text=Sign out")
            await expect(page.locator("input[name=token]")).to_be_visible()
        finally:
            await browser.close()
