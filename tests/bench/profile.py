"""`make profile`: the routed GET hot path (c=16, bounded) with the hub under pyinstrument.

Writes bench-results/profile.html (pyinstrument's interactive view), profile.txt (its call
tree) and profile-summary.txt (the hub's own functions by share of time). The hub, the fake
platforms and this load client run in separate processes, as in `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from hub.logs import configure_logging
from tests.bench.load import closed_loop
from tests.bench.procs import PYTHON
from tests.bench.scenarios import Bench, Options


def _wait_for(path: Path, seconds: float) -> bool:
    """Blocking on purpose: nothing else runs while the profiled hub writes its files."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.2)
    return False


async def profile(out: Path, seconds: float, concurrency: int, workdir: Path) -> None:
    """``out`` is absolute: the profiled hub runs from the repository root."""
    done = out / "profile.done"
    done.unlink(missing_ok=True)
    async with Bench(Options(), workdir) as bench:
        command = [PYTHON, "-m", "tests.bench.profiled_hub", str(out)]
        setup = await bench.hub_with_parties("hub-profiled", 10, command=command)
        call = setup.get_one()
        await closed_loop(call, concurrency, 1.0, 10_000, warmup=0)  # pools and caches warm
        setup.service.process.send_signal(signal.SIGUSR1)
        run = await closed_loop(call, concurrency, seconds, 200_000, warmup=0)
        setup.service.process.send_signal(signal.SIGUSR2)
        _wait_for(done, 120)
        done.unlink(missing_ok=True)
        print(
            f"profiled {run.requests} routed GETs at c={concurrency} in {run.elapsed:.1f} s "
            f"({run.rps:.0f} req/s under the profiler, {run.errors} errors)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.profile", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    configure_logging("WARNING", "console")  # the embedded Redis launcher's info lines
    workdir = Path(tempfile.mkdtemp(prefix="hub-profile-"))
    try:
        asyncio.run(profile(args.out.resolve(), args.seconds, args.concurrency, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = args.out / "profile-summary.txt"
    if not summary.exists():
        print("no profile written", file=sys.stderr)
        return 1
    print(summary.read_text())
    print(f"written: {args.out}/profile.html, profile.txt, profile-summary.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
