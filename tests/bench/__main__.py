"""``python -m tests.bench``: run the scenarios, print the table, write the JSON file.

Bounded everywhere: each run stops at a request count or after ``--seconds``, whichever
comes first, and every wait has a timeout. The default settings finish in about five
minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from hub.logs import configure_logging
from tests.bench.report import code_version, machine, table
from tests.bench.scenarios import Bench, Options

SCENARIOS = {
    "get": "routed_get",
    "redis": "redis_calls",
    "bodies": "bodies",
    "scale": "registry_scale",
    "workers": "workers",
    "broadcast": "broadcast",
    "getall": "get_all",
    "agreements": "agreements",
    "storm": "status_storm",
    "versions": "ocpi_versions",
    "wrk": "hot_path",
    "instructions": "instructions",
}

LEGEND = (
    "median and min-max over the repetitions; 'vs baseline' is the median of the per-"
    "repetition ratios\n(or differences) to the baseline named, measured in the same "
    "repetition; 'range' is their min-max."
)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.4, help="warm-up seconds per run")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (at least 3)")
    parser.add_argument("--parties", type=int, default=10_000, help="large registry size")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated: {','.join(SCENARIOS)}"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/latest.json"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    if args.reps < 3:
        parser.error("--reps: at least 3, to report a median and a spread")
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"--only: unknown scenario(s) {', '.join(sorted(unknown))}")
    return args


async def run(args: argparse.Namespace, workdir: Path) -> Bench:
    options = Options(
        seconds=args.seconds, warmup=args.warmup, reps=args.reps, registry_size=args.parties
    )
    selected = args.only.split(",")
    async with Bench(options, workdir) as bench:
        await bench.scenario_setup()
        for key, method in SCENARIOS.items():
            if key in selected:
                print(f"== {key}", flush=True)
                await getattr(bench, method)()
    return bench


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    began = time.monotonic()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    configure_logging("WARNING", "console")  # the embedded Redis launcher's info lines
    info = machine()
    load_at_start = os.getloadavg()  # other work on the machine shows here
    print(
        f"hub bench: {info['nproc']} cores, {info['cpu_model']}, Python {info['python']}; "
        f"{args.reps} reps x {args.seconds:g} s (+{args.warmup:g} s warm-up); work dir {workdir}",
        flush=True,
    )
    ok = False
    try:
        try:
            import uvloop
        except ImportError:
            bench = asyncio.run(run(args, workdir))
        else:
            bench = uvloop.run(run(args, workdir))
        ok = True
    finally:
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not ok:
            print(f"bench failed; logs kept in {workdir}", file=sys.stderr)
    wall = time.monotonic() - began
    print()
    print(LEGEND)
    print(table(bench.rows))
    print(f"\nwall time {wall:.0f} s; load average at start {load_at_start[0]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "started": started,
        "load_average_at_start_and_end": [load_at_start, os.getloadavg()],
        "wall_seconds": round(wall, 1),
        "machine": info,
        "code": code_version(),
        "command": "make bench",
        "options": vars(args) | {"out": str(args.out)},
        "rows": [row.as_json() for row in bench.rows],
        "raw": bench.raw,
    }
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
