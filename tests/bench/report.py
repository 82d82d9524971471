"""Rows of results, the printed table and the JSON file.

A row holds one figure per repetition and, where it has a baseline, the figure divided by
(or minus) the baseline of the SAME repetition: repetitions run interleaved, so each ratio
compares measurements taken seconds apart under the same machine load.
"""

from __future__ import annotations

import math
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Compare = Literal["ratio", "delta"]


@dataclass
class Row:
    scenario: str
    measure: str
    unit: str
    values: list[float] = field(default_factory=list)
    baseline: str = ""  # what the row is compared with, e.g. "direct"
    compare: list[float] = field(default_factory=list)  # per repetition
    kind: Compare = "ratio"
    goal: str = ""
    met: bool | None = None
    note: str = ""

    @classmethod
    def measured(
        cls,
        scenario: str,
        measure: str,
        unit: str,
        values: Sequence[float],
        baseline: str = "",
        base: Sequence[float] | None = None,
        kind: Compare = "ratio",
        goal: str = "",
        check: Callable[[float], bool] | None = None,
        check_value: Callable[[float], bool] | None = None,
        note: str = "",
    ) -> Row:
        """``check`` judges the median comparison, ``check_value`` the median value."""
        row = cls(scenario, measure, unit, list(values), baseline, kind=kind, goal=goal, note=note)
        if base is not None:
            pairs = zip(values, base, strict=True)
            if kind == "ratio":
                row.compare = [v / b if b else math.nan for v, b in pairs]
            else:
                row.compare = [v - b for v, b in pairs]
        if check is not None and row.compare:
            row.met = check(median(row.compare))
        elif check_value is not None and row.values:
            row.met = check_value(median(row.values))
        return row

    @classmethod
    def skipped(cls, scenario: str, measure: str, reason: str) -> Row:
        return cls(scenario, measure, "", note=f"SKIPPED: {reason}")

    def cells(self) -> list[str]:
        if not self.values:
            return [self.scenario, self.measure, "-", "-", "-", "-", self.goal, "", self.note]
        compare = ""
        spread = ""
        if self.compare:
            if self.kind == "ratio":
                compare = f"{median(self.compare):.2f}x {self.baseline}"
                spread = f"{min(self.compare):.2f}-{max(self.compare):.2f}"
            else:
                compare = f"{median(self.compare):+.3f} {self.unit} vs {self.baseline}"
                spread = f"{min(self.compare):+.3f}..{max(self.compare):+.3f}"
        met = "" if self.met is None else ("yes" if self.met else "NO")
        return [
            self.scenario,
            self.measure,
            f"{_fmt(median(self.values))} {self.unit}",
            f"{_fmt(min(self.values))}-{_fmt(max(self.values))}",
            compare,
            spread,
            self.goal,
            met,
            self.note,
        ]

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["median"] = median(self.values) if self.values else None
        out["min"] = min(self.values) if self.values else None
        out["max"] = max(self.values) if self.values else None
        out["compare_median"] = median(self.compare) if self.compare else None
        return out


HEADER = ["scenario", "measure", "median", "min-max", "vs baseline", "range", "goal", "met", ""]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def table(rows: Sequence[Row]) -> str:
    cells = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    lines = []
    previous = None
    for n, line in enumerate(cells):
        if n > 0 and line[0] != previous:
            lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
        previous = line[0] if n > 0 else None
        text = "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
        lines.append(text.rstrip())
    return "\n".join(lines)


def code_version() -> dict[str, Any]:
    """The commit measured, and whether hub/ had uncommitted changes at the time."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("status", "--short", "--", "hub", "config")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_hub_changes": changed.splitlines()}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip())
    except (OSError, ValueError):
        nproc = 0
    return {
        "nproc": nproc,
        "cpu_model": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
