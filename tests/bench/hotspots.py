"""The hub's own functions in a pyinstrument session, by share of the sampled time.

pyinstrument's tree shows where time goes; this answers "which function of hub/ costs what":
inclusive time (the function and everything it calls), self time (its own bytecode only),
and time "owned" by it (its own code plus the library calls it makes directly, stopping at
the next hub/ function: for the middleware that includes starlette's routing layers).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

HUB_DIR = str(Path(__file__).resolve().parents[2] / "hub") + "/"


def _name(frame: Any) -> str:
    path = frame.file_path or ""
    return f"hub/{path[len(HUB_DIR) :]}:{frame.function}"


def summarize(session: Any, top: int = 30) -> str:
    root = session.root_frame()
    if root is None:
        return "no samples\n"
    total = root.time
    inclusive: dict[str, float] = defaultdict(float)
    owned: dict[str, float] = defaultdict(float)
    own_code: dict[str, float] = defaultdict(float)

    def walk(frame: Any, on_stack: frozenset[str], owner: str | None) -> None:
        if frame.is_synthetic_leaf:
            return  # "[self]": counted with its parent below
        alone = frame.time - sum(c.time for c in frame.children if not c.is_synthetic_leaf)
        if (frame.file_path or "").startswith(HUB_DIR):
            owner = _name(frame)
            own_code[owner] += alone
            if owner not in on_stack:  # recursion counts once
                inclusive[owner] += frame.time
                on_stack = on_stack | {owner}
        if owner is not None:
            owned[owner] += alone
        for child in frame.children:
            walk(child, on_stack, owner)

    walk(root, frozenset(), None)
    busy = getattr(session, "cpu_time", 0.0) / (getattr(session, "duration", 0.0) or total)
    lines = [
        f"sampled {total:.2f} s of the hub's main thread, CPU-busy {busy:.0%} of that time",
        "shares are of the sampled time; inclusive = with everything called, self = own",
        "bytecode only, owned = own code + library calls made directly (until the next hub/",
        "function: for the middleware this includes starlette's routing and error layers)",
        "",
        f"{'inclusive':>10} {'share':>6} {'self':>6}  {'owned':>7} {'share':>6}  function",
    ]
    for name, spent in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        own = owned.get(name, 0.0)
        alone = own_code.get(name, 0.0) / total
        lines.append(
            f"{spent:10.3f} {spent / total:6.1%} {alone:6.1%}  {own:7.3f} {own / total:6.1%}"
            f"  {name}"
        )
    lines += ["", "by owned time:"]
    for name, own in sorted(owned.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{own:8.3f} {own / total:6.1%}  {name}")
    return "\n".join(lines) + "\n"
