"""Folding the pushes waiting for one receiver into the fewest deliveries that give it the
same end state, in the same order.

A *lane* is one top-level object (``/{country_code}/{party_id}/{id}``) of one module: a
Location with its EVSEs and Connectors is one lane, so a PATCH of an EVSE never overtakes the
PUT of the Location that created it. Within a lane a push merges into the last step for the
same URL when no step for a URL above or below it (the Location of an EVSE, the EVSEs of a
Location) came in between; steps of unrelated URLs (two EVSEs) do not hold it back:

- PUT or DELETE after anything: the later one alone (it replaces the object);
- PATCH after PUT: one PUT with the patch applied; PATCH after PATCH: one PATCH. Later
  top-level fields win (transport_and_format, "PATCH": the body holds the fields to update);
  ``last_updated`` is the newer of the two, never invented;
- PATCH after DELETE, or a body that is not a JSON object: a step of its own.

A step that merged nothing keeps its body byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import msgspec

_decode = msgspec.json.Decoder(dict[str, Any])
_encode = msgspec.json.Encoder().encode


class Push(Protocol):
    """What the fold needs of one accepted push."""

    @property
    def method(self) -> str: ...
    @property
    def suffix(self) -> str: ...
    @property
    def query(self) -> str: ...
    @property
    def body(self) -> bytes: ...


P = TypeVar("P", bound=Push)


@dataclass
class Step(Generic[P]):
    """One delivery: the pushes it stands for (oldest first) and what it sends."""

    method: str
    suffix: str
    query: str
    body: bytes
    pushes: list[P] = field(default_factory=list)

    @property
    def merged(self) -> bool:
        return len(self.pushes) > 1

    @property
    def newest(self) -> P:
        return self.pushes[-1]


def segments(suffix: str) -> tuple[str, ...]:
    return tuple(s for s in suffix.split("/") if s)


def lane_of(suffix: str) -> str:
    """The top-level object a push belongs to: its first three path segments."""
    return "/".join(segments(suffix)[:3])


def fold(pushes: Iterable[P]) -> list[Step[P]]:
    """The steps that deliver ``pushes`` (one lane, in acceptance order)."""
    steps: list[Step[P]] = []
    for push in pushes:
        target = _mergeable_step(steps, push)
        if target is None:
            steps.append(Step(push.method, push.suffix, push.query, push.body, [push]))
            continue
        merged = _merge(target, push)
        if merged is None:
            steps.append(Step(push.method, push.suffix, push.query, push.body, [push]))
        else:
            steps[steps.index(target)] = merged
    return steps


def _mergeable_step(steps: Sequence[Step[P]], push: P) -> Step[P] | None:
    """The latest step for the same URL, unless a step for a URL above or below it came
    after it (merging would move one across the other)."""
    path = segments(push.suffix)
    for step in reversed(steps):
        other = segments(step.suffix)
        if other == path:
            return step if step.query == push.query else None
        if path[: len(other)] == other or other[: len(path)] == path:
            return None
    return None


def _merge(step: Step[P], push: P) -> Step[P] | None:
    """``step`` followed by ``push`` as one step; None when they cannot be one."""
    if push.method in ("PUT", "DELETE"):
        return Step(push.method, push.suffix, push.query, push.body, [*step.pushes, push])
    if push.method != "PATCH" or step.method not in ("PUT", "PATCH"):
        return None
    earlier, later = _object(step.body), _object(push.body)
    if earlier is None or later is None:
        return None
    merged = {**earlier, **later}
    newest = _newest(earlier.get("last_updated"), later.get("last_updated"))
    if newest is not None:
        merged["last_updated"] = newest
    return Step(step.method, step.suffix, step.query, _encode(merged), [*step.pushes, push])


def _object(body: bytes) -> dict[str, Any] | None:
    try:
        return _decode.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _newest(a: Any, b: Any) -> Any:
    """The later of two ``last_updated`` values as they were sent; a value that does not
    parse loses to one that does."""
    if a is None or b is None:
        return b if a is None else a
    parsed_a, parsed_b = _moment(a), _moment(b)
    if parsed_a is None or parsed_b is None:
        return b if parsed_b is not None or parsed_a is None else a
    return a if parsed_a > parsed_b else b


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    # transport_and_format "DateTime": all in UTC; no designator implies UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
