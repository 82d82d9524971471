"""``hub serve`` under pyinstrument: ``python -m tests.bench.profiled_hub OUT_DIR``.

Sampling starts on SIGUSR1 and stops on SIGUSR2 (then the profile is written), so start-up
and registration stay out of it and only the load the bench drives is profiled. The event
loop runs the hub's code in the main thread, so a sampler of that thread sees all of it.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

from pyinstrument import Profiler

from hub.cli import main as hub_main
from tests.bench.hotspots import summarize

INTERVAL = 0.0005  # seconds between samples


def run(out: Path) -> int:
    profiler = Profiler(interval=INTERVAL, async_mode="disabled")

    def start(_signum: int, _frame: FrameType | None) -> None:
        if not profiler.is_running:
            profiler.start()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        if not profiler.is_running:
            return
        session = profiler.stop()
        out.mkdir(parents=True, exist_ok=True)
        (out / "profile.html").write_text(profiler.output_html())
        (out / "profile.txt").write_text(profiler.output_text(show_all=False))
        (out / "profile-summary.txt").write_text(summarize(session))
        session.save(str(out / "profile.pyisession"))  # pyinstrument --load FILE --show-all
        (out / "profile.done").write_text("ok\n")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return hub_main(["serve"])


if __name__ == "__main__":
    raise SystemExit(run(Path(sys.argv[1])))
