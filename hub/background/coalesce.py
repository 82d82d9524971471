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


class Step(Generic[P]):
    """One delivery: the pushes it stands for (oldest first) and what it sends."""

    __slots__ = ("_body", "_fields", "method", "path", "pushes", "query", "suffix")

    def __init__(self, push: P) -> None:
        self.method = push.method
        self.suffix = push.suffix
        self.query = push.query
        self.path = segments(push.suffix)
        self.pushes = [push]
        self._body: bytes | None = push.body
        self._fields: dict[str, Any] | None = None  # a merged body, encoded when sent

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = _encode(self._fields)
        return self._body

    @property
    def merged(self) -> bool:
        return len(self.pushes) > 1

    @property
    def newest(self) -> P:
        return self.pushes[-1]

    def absorb(self, push: P) -> bool:
        """Take ``push`` into this step; False when the two cannot be one request."""
        if push.method in ("PUT", "DELETE"):
            self.method, self._body, self._fields = push.method, push.body, None
        elif push.method == "PATCH" and self.method in ("PUT", "PATCH"):
            earlier = self._fields if self._fields is not None else _object(self.body)
            later = _object(push.body)
            if earlier is None or later is None:
                return False
            newest = _newest(earlier.get("last_updated"), later.get("last_updated"))
            earlier.update(later)
            if newest is not None:
                earlier["last_updated"] = newest
            self._fields, self._body = earlier, None
        else:
            return False
        self.pushes.append(push)
        return True


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
        if target is None or not target.absorb(push):
            steps.append(Step(push))
    return steps


def _mergeable_step(steps: Sequence[Step[P]], push: P) -> Step[P] | None:
    """The latest step for the same URL, unless a step for a URL above or below it came
    after it (merging would move one across the other)."""
    if steps and steps[-1].suffix == push.suffix:  # the common case, without splitting
        return steps[-1] if steps[-1].query == push.query else None
    path = segments(push.suffix)
    for step in reversed(steps):
        other = step.path
        if other == path:
            return step if step.query == push.query else None
        if path[: len(other)] == other or other[: len(path)] == path:
            return None
    return None


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
