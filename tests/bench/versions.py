"""8. OCPI versions: a routed PUT of a Location and of a priced Session, same version vs
across versions, and the same-version PUT against the hub as it was before 2.2.1 support.

One hub, a 2.3.0 CPO pushing to a 2.3.0 eMSP (same version: bytes pass through) and to a
2.2.1 eMSP (across: decoded, translated, re-encoded). The hub's CPU per request comes from
its process's utime+stime over each run. The older hub (``BASE``, checked out in a git
worktree and run with the same interpreter) shows whether the same-version path got slower.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tests.bench import data
from tests.bench.load import Call, Run, closed_loop
from tests.bench.procs import Registered, Service, cpu_seconds, start_hub
from tests.bench.report import Row

if TYPE_CHECKING:
    from tests.bench.scenarios import Bench

BASE = "3916d95"  # main before OCPI 2.2.1 (the delivery engine)
S = "8 versions"
CPO, SAME, CROSS = ("NL", "CPA"), ("DE", "MS3"), ("DE", "MS2")
LOCATION = data.encode(
    {
        "country_code": "NL", "party_id": "CPA", "id": "LV1", "publish": True,
        "address": "Main street 1", "city": "Amsterdam", "country": "NLD",
        "coordinates": {"latitude": "52.37", "longitude": "4.89"},
        "time_zone": "Europe/Amsterdam", "help_phone": "+31201234567",
        "evses": [{"uid": "E1", "status": "AVAILABLE", "parking": [{"parking_id": "P1"}],
                   "connectors": [{"id": "1", "standard": "IEC_62196_T2", "format": "SOCKET",
                                   "power_type": "AC_3_PHASE", "max_voltage": 230,
                                   "max_amperage": 16, "last_updated": "2026-01-01T00:00:00Z"}],
                   "last_updated": "2026-01-01T00:00:00Z"}],
        "last_updated": "2026-01-01T00:00:00Z",
    }
)  # fmt: skip
SESSION = data.encode(
    {
        "country_code": "NL", "party_id": "CPA", "id": "SV1", "kwh": 5.0,
        "start_date_time": "2026-01-01T00:00:00Z", "currency": "EUR", "status": "ACTIVE",
        "cdr_token": {"country_code": "DE", "party_id": "MS2", "uid": "U1", "type": "RFID",
                      "contract_id": "DE-MS2-C1"},
        "auth_method": "WHITELIST", "location_id": "LV1", "evse_uid": "E1", "connector_id": "1",
        "total_cost": {"before_taxes": 2.0, "taxes": [{"name": "VAT", "amount": 0.42}]},
        "last_updated": "2026-01-01T00:00:00Z",
    }
)  # fmt: skip


def _put(hub: Service, cpo: Registered, path: str, to: tuple[str, str], body: bytes) -> Call:
    headers = {**cpo.hub_headers(CPO, to), "Content-Type": "application/json"}
    return Call("PUT", f"{hub.url}/ocpi/2.3.0/{path}", headers, body)


async def run(bench: Bench) -> None:
    hub = bench.keep(start_hub("hub-versions", bench.workdir, bench.new_redis()))
    base: Service | None = None
    worktree = Path(tempfile.mkdtemp(prefix="hub-base-")) / "tree"
    try:
        cpo = await bench.register(hub, "vcpo", [(*CPO, "CPO")])
        await bench.register(hub, "vmsp", [(*SAME, "EMSP")])
        await bench.register(hub, "v221msp", [(*CROSS, "EMSP")])
        calls = {
            "location same": _put(hub, cpo, "locations/receiver/NL/CPA/LV1", SAME, LOCATION),
            "location across": _put(hub, cpo, "locations/receiver/NL/CPA/LV1", CROSS, LOCATION),
            "session same": _put(hub, cpo, "sessions/receiver/NL/CPA/SV1", SAME, SESSION),
            "session across": _put(hub, cpo, "sessions/receiver/NL/CPA/SV1", CROSS, SESSION),
        }
        for call in calls.values():
            await bench.probe(call)
        _git("worktree", "add", "--detach", str(worktree), BASE)
        base = bench.keep(
            start_hub(
                "hub-base",
                bench.workdir,
                bench.new_redis(),
                # PYTHONSAFEPATH: `python -m hub` in the checkout would import its own hub.
                env={"PYTHONPATH": str(worktree), "PYTHONSAFEPATH": "1"},
            )
        )
        base_cpo = await bench.register(base, "bcpo", [(*CPO, "CPO")])
        await bench.register(base, "bmsp", [(*SAME, "EMSP")])
        calls["location same, before 2.2.1"] = _put(
            base, base_cpo, "locations/receiver/NL/CPA/LV1", SAME, LOCATION
        )
        await bench.probe(calls["location same, before 2.2.1"])
        pids = {name: (base if "before" in name else hub).pid for name in calls}
        runs, cpu = await _interleaved(bench, calls, pids)
    finally:
        if base is not None:
            bench.stop(base)
        bench.stop(hub)
        _git("worktree", "remove", "--force", str(worktree), check=False)
    rps = {n: [r.rps for r in rs] for n, rs in runs.items()}
    for kind in ("location", "session"):
        same, across = f"{kind} same", f"{kind} across"
        bench.add(Row.measured(S, f"routed PUT {kind}, same version, req/s", "req/s", rps[same]))
        bench.add(
            Row.measured(
                S, f"routed PUT {kind}, 2.3.0 to 2.2.1, req/s", "req/s", rps[across], "same",
                rps[same],
            )
        )  # fmt: skip
        bench.add(
            Row.measured(
                S, f"hub CPU per {kind} PUT across versions", "ms", cpu[across], "same",
                cpu[same], note="utime+stime of the hub over the run / requests",
            )
        )  # fmt: skip
    before = "location same, before 2.2.1"
    bench.add(
        Row.measured(
            S, "same-version PUT req/s vs the hub before 2.2.1", "req/s", rps["location same"],
            "before", rps[before], goal="within 3 %", check=lambda x: x >= 0.97,
        )
    )  # fmt: skip
    bench.add(
        Row.measured(
            S, "same-version CPU per PUT vs the hub before 2.2.1", "ms", cpu["location same"],
            "before", cpu[before], goal="within 3 %", check=lambda x: x <= 1.03,
        )
    )  # fmt: skip


def _git(*args: str, check: bool = True) -> None:
    """git in this checkout (a moment's work: the bench waits for it)."""
    subprocess.run(["git", *args], check=check, capture_output=True, timeout=60)


async def _interleaved(
    bench: Bench, calls: dict[str, Call], pids: dict[str, int]
) -> tuple[dict[str, list[Run]], dict[str, list[float]]]:
    """Each call once per repetition in rotating order, c=16; the CPU its hub spent."""
    await bench.settle()
    names = list(calls)
    runs: dict[str, list[Run]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    o = bench.o
    for rep in range(o.reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            await closed_loop(calls[name], 16, o.warmup, o.max_requests, 0)
            before = cpu_seconds(pids[name])
            run = await closed_loop(calls[name], 16, o.seconds, o.max_requests, 0)
            used = cpu_seconds(pids[name]) - before
            runs[name].append(run)
            cpu[name].append(used / max(1, run.requests) * 1000)
    bench.raw["versions"] = {n: [r.summary() for r in rs] for n, rs in runs.items()}
    return runs, cpu
