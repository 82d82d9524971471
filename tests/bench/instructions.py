"""10. Instructions per routed GET, under callgrind: the hub against the bare forwarder.

The hot path's CPU ratio (scenario 9) drifts by tens of per cent on a shared machine. The
number of instructions a request costs does not: both servers run under valgrind's callgrind
(Debian's package: ``apt-get install valgrind``), driven by wrk at c=16 as in scenario 9,
and callgrind counts what each process executes (uvicorn and aiohttp included, the kernel
not). A server under callgrind runs some fifty times slower, so its background work (the
hub's polling, its traffic-log writer) weighs fifty times more per request than at full
speed: each repetition first counts an idle period as long as the load, and that rate is
taken out. Counting is switched on and off with ``callgrind_control``.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from tests.bench.hotpath import CPO, EMSP, wrk
from tests.bench.procs import PYTHON, Service, free_port
from tests.bench.report import Row

if TYPE_CHECKING:
    from tests.bench.scenarios import Bench

S = "10 instructions (callgrind)"
VALGRIND = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]


async def _control(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "callgrind_control", *args, stdout=asyncio.subprocess.DEVNULL
    )
    async with asyncio.timeout(120):
        if await process.wait() != 0:
            raise RuntimeError(f"callgrind_control {' '.join(args)} failed")


async def _counted(pid: int, out: Path, name: str) -> int:
    """Dump what ``pid`` counted since it was last zeroed, and zero it again."""
    await _control("-d", str(pid))
    total = _totals(out, name, pid)
    await _control("-z", str(pid))
    return total


def _totals(out: Path, name: str, pid: int) -> int:
    """The instruction count of ``pid``'s newest dump (a few kB, read at once)."""
    newest = max(out.glob(f"{name}.{pid}.*"), key=lambda p: p.stat().st_mtime)
    for line in newest.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {newest}")


async def _per_request(
    name: str, url: str, headers: dict[str, str], pid: int, out: Path, seconds: float
) -> float:
    """One repetition: an idle period, then ``seconds`` of wrk; the idle rate taken out."""
    await _control("-z", str(pid))
    await asyncio.sleep(seconds)
    idle = await _counted(pid, out, name)
    loaded = await wrk(url, headers, seconds)
    busy = await _counted(pid, out, name)
    if loaded.requests == 0:
        raise RuntimeError(f"{name} under callgrind answered nothing:\n{loaded.output}")
    return (busy - idle) / loaded.requests


async def run(bench: Bench) -> None:
    missing = [tool for tool in ("valgrind", "callgrind_control", "wrk") if not shutil.which(tool)]
    if missing:
        note = f"not installed: {', '.join(missing)} (apt-get install valgrind wrk)"
        bench.add(Row.measured(S, "routed GET", "instructions", [], note=note))
        return
    out = bench.workdir / "callgrind"
    out.mkdir(exist_ok=True)
    hub = await bench.hub_with_parties(
        "hub-callgrind",
        10,
        command=[*VALGRIND, f"--callgrind-out-file={out}/hub.%p", PYTHON, "-m", "hub", "serve"],
    )
    port = free_port()
    args = [PYTHON, "-m", "tests.bench.bare", str(port), bench.platforms.url]
    bare = Service("bare-callgrind", [*VALGRIND, f"--callgrind-out-file={out}/bare.%p", *args],
                   port, bench.workdir, {})  # fmt: skip
    bench.keep(bare)
    bare.wait_ready("/", timeout=180)
    path = "/ocpi/2.3.0/locations/sender/LOC1"
    targets = {
        "bare": (bare.url + "/p/cpo" + path, hub.cpo.direct_headers(EMSP, CPO), bare.pid),
        "hub": (hub.service.url + path, hub.emsp.hub_headers(EMSP, CPO), hub.service.pid),
    }
    counts: dict[str, list[float]] = {name: [] for name in targets}
    for url, headers, pid in targets.values():
        await wrk(url, headers, 2)  # connections open, caches warm, before anything counts
        await _control("-i", "on", str(pid))
        await wrk(url, headers, 2)  # what callgrind translates once, left out
    for _ in range(bench.o.reps):
        for name, (url, headers, pid) in targets.items():
            seconds = max(5.0, bench.o.seconds)
            counts[name].append(await _per_request(name, url, headers, pid, out, seconds))
    bench.stop(bare)
    bench.stop(hub.service)
    bench.add(Row.measured(S, "bare instructions per routed GET", "instr", counts["bare"]))
    bench.add(
        Row.measured(
            S, "hub instructions per routed GET vs bare", "instr", counts["hub"], "bare",
            counts["bare"], note="wrk c=16 against each server under callgrind; idle rate out",
        )
    )  # fmt: skip
