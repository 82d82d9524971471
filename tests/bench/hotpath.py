"""9. The routed GET hot path, loaded by wrk: the hub against the bare forwarder, c=16.

wrk (Debian's package: ``apt-get install wrk``) is a C load generator, so the client does
not eat the CPU the servers need, as a Python client on two cores does. Each repetition runs
every target for the same time, in one-second runs taken in turn; each server's CPU is its
process's utime+stime over its runs. Also counted: the Redis commands one routed request costs
(INFO commandstats around a run, the hub's background polling included, so an upper bound),
the figure the README's capacity model starts from. The hub as it was before the operator
console (``BASE``, a git worktree run with the same interpreter) runs in the same rotation,
to show what the traffic log and metrics cost. So does a second bare forwarder process, the
control: the same program against itself shows how far this machine's noise moves a ratio
in the same run (on a shared 2-core machine, by more than 0.1x per repetition).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from tests.bench.procs import cpu_seconds, start_bare
from tests.bench.report import Row
from tests.bench.versions import _git

if TYPE_CHECKING:
    from tests.bench.scenarios import Bench

S = "9 hot path (wrk)"
BASE = "ae1e280"  # main before the operator console (traffic log, metrics)
CPO, EMSP = ("NL", "CPA"), ("DE", "MSA")
CONNECTIONS = 16


class Wrk:
    """One wrk run: requests answered, their rate, non-2xx answers."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.requests = int(_find(r"(\d+) requests in", output))
        self.rps = float(_find(r"Requests/sec:\s+([\d.]+)", output))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        socket = re.search(r"Socket errors: (.*)", output)
        self.errors = int(errors.group(1)) if errors else 0
        self.socket_errors = socket.group(1) if socket else ""


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"wrk said something else:\n{text}")
    return match.group(1)


async def wrk(url: str, headers: dict[str, str], seconds: float) -> Wrk:
    """wrk, one thread, CONNECTIONS connections, bounded by ``seconds`` (and a timeout)."""
    args = ["-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    process = await asyncio.create_subprocess_exec(
        "wrk", *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(seconds + 30):
            out, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return Wrk(out.decode())


async def run(bench: Bench) -> None:
    if shutil.which("wrk") is None:
        missing = "wrk not installed: apt-get install wrk"
        bench.add(Row.measured(S, "routed GET", "req/s", [], note=missing))
        return
    hub = bench.small.service
    path = "/ocpi/2.3.0/locations/sender/LOC1"
    worktree = Path(tempfile.mkdtemp(prefix="hub-base-")) / "tree"
    _git("worktree", "add", "--detach", str(worktree), BASE)
    try:
        # PYTHONSAFEPATH: `python -m hub` in the checkout would import its own hub first.
        env = {"PYTHONPATH": str(worktree), "PYTHONSAFEPATH": "1"}
        base = await bench.hub_with_parties("hub-base-wrk", 10, env=env)
        async with bench.http.get(base.service.url + "/metrics") as response:
            assert response.status == 404, "the older hub is not the one running"
        control = bench.keep(start_bare(bench.workdir, bench.platforms.url))
        direct = bench.small.cpo.direct_headers(EMSP, CPO)
        targets = {
            "bare": (bench.bare.url + "/p/cpo" + path, direct),
            "hub": (hub.url + path, bench.small.emsp.hub_headers(EMSP, CPO)),
            "before": (base.service.url + path, base.emsp.hub_headers(EMSP, CPO)),
            "control": (control.url + "/p/cpo" + path, direct),
        }
        servers = {"bare": bench.bare, "hub": hub, "before": base.service, "control": control}
        pids = {name: server.pid for name, server in servers.items()}
        rps, cpu, errors = await _rotation(bench, targets, pids)
        bench.stop(base.service)
        bench.stop(control)
    finally:
        _git("worktree", "remove", "--force", str(worktree), check=False)
    note = f"{errors} non-2xx answers" if errors else ""
    bench.raw["hotpath"] = {"rps": rps, "cpu_us_per_request": cpu}
    bench.add(Row.measured(S, "c=16 bare req/s", "req/s", rps["bare"], note=note))
    bench.add(
        Row.measured(
            S, "c=16 hub req/s vs bare", "req/s", rps["hub"], "bare", rps["bare"],
            goal=">= 0.9x bare", check=lambda x: x >= 0.9,
        )
    )  # fmt: skip
    bench.add(Row.measured(S, "bare CPU per request", "us", cpu["bare"]))
    bench.add(
        Row.measured(
            S, "hub CPU per request vs bare", "us", cpu["hub"], "bare", cpu["bare"],
            goal="<= 1.15x bare", check=lambda x: x <= 1.15,
            note="utime+stime of the process over the run / requests",
        )
    )  # fmt: skip
    bench.add(
        Row.measured(
            S, "hub CPU per request vs before the console", "us", cpu["hub"], "before",
            cpu["before"], note=f"the hub at {BASE}, same run",
        )
    )  # fmt: skip
    noise = "the bare forwarder again, in a second process: this run's noise"
    bench.add(
        Row.measured(
            S, "control req/s vs bare", "req/s", rps["control"], "bare", rps["bare"], note=noise
        )
    )
    bench.add(
        Row.measured(
            S, "control CPU per request vs bare", "us", cpu["control"], "bare", cpu["bare"],
            note=noise,
        )
    )  # fmt: skip
    await _redis_per_request(bench, *targets["hub"])


async def _rotation(
    bench: Bench, targets: dict[str, tuple[str, dict[str, str]]], pids: dict[str, int]
) -> tuple[dict[str, list[float]], dict[str, list[float]], int]:
    """Each target for ``seconds`` per repetition, in one-second wrk runs taken in turn
    (rotating order): req/s, CPU us per request. On a shared machine the speed of every
    process drifts by tens of per cent over seconds; slices this short put the targets
    compared under the same drift."""
    for url, headers in targets.values():  # warm every target (connections, caches)
        await wrk(url, headers, 1)
    await bench.settle()
    rps: dict[str, list[float]] = {n: [] for n in targets}
    cpu: dict[str, list[float]] = {n: [] for n in targets}
    errors = 0
    names = list(targets)
    slices = max(1, round(bench.o.seconds))
    for rep in range(bench.o.reps):
        used = dict.fromkeys(names, 0.0)
        requests = dict.fromkeys(names, 0)
        rates = dict.fromkeys(names, 0.0)
        for second in range(slices):
            shift = (rep + second) % len(names)
            for name in names[shift:] + names[:shift]:
                before = cpu_seconds(pids[name])
                result = await wrk(*targets[name], 1)
                used[name] += cpu_seconds(pids[name]) - before
                requests[name] += result.requests
                rates[name] += result.rps
                errors += result.errors
        for name in names:
            rps[name].append(rates[name] / slices)
            cpu[name].append(used[name] / max(1, requests[name]) * 1e6)  # microseconds
    return rps, cpu, errors


async def _redis_per_request(bench: Bench, url: str, headers: dict[str, str]) -> None:
    """Redis commands per routed GET: INFO commandstats around one wrk run of the hub."""
    client = redis.Redis.from_url(bench.small.redis_url)
    try:
        per: list[float] = []
        for _ in range(3):
            before = _calls(client.info("commandstats"))
            result = await wrk(url, headers, bench.o.seconds)
            after = _calls(client.info("commandstats"))
            spent = {k: after[k] - before.get(k, 0) for k in after if after[k] > before.get(k, 0)}
            per.append(sum(spent.values()) / max(1, result.requests))
        bench.raw["redis_per_routed_get"] = {"last_run": spent, "requests": result.requests}
        bench.add(
            Row.measured(
                S, "Redis commands per routed GET", "commands", per,
                note="INFO commandstats around a wrk run / requests; background polling included",
            )
        )  # fmt: skip
    finally:
        client.close()


def _calls(stats: dict[str, dict[str, int]]) -> dict[str, int]:
    return {name: int(figures["calls"]) for name, figures in stats.items()}


def redis_commands(client: redis.Redis) -> int:
    """Every command the server has run, by INFO commandstats."""
    return sum(_calls(client.info("commandstats")).values())
