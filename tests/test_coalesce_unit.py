"""Folding a receiver's waiting pushes (hub/background/coalesce.py): one table of cases.

transport_and_format "PATCH": a PATCH holds only the fields to update, the others stay; so a
PATCH after a PUT is the PUT with those fields replaced, and two PATCHes are one with the later
fields winning. A PUT replaces the whole object ("PUT": optional fields left out revert).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from hub.background.coalesce import fold, lane_of


@dataclass(frozen=True)
class P:
    method: str
    suffix: str
    body: bytes = b""
    query: str = ""
    name: str = ""


def push(method: str, suffix: str, body: Any = None, name: str = "", query: str = "") -> P:
    raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    return P(method, suffix, raw, query, name or f"{method} {suffix}")


LOC = "/NL/CPA/LOC1"
EVSE1, EVSE2 = LOC + "/E1", LOC + "/E2"


def shape(steps: list[Any]) -> list[tuple[str, str, Any, list[str]]]:
    return [
        (s.method, s.suffix, json.loads(s.body) if s.body else None, [p.name for p in s.pushes])
        for s in steps
    ]


CASES = [
    (
        "PUT then PATCH: one PUT with the patch applied",
        [
            push(
                "PUT",
                EVSE1,
                {"uid": "E1", "status": "AVAILABLE", "last_updated": "2026-01-01T00:00:00Z"},
                "a",
            ),
            push(
                "PATCH", EVSE1, {"status": "CHARGING", "last_updated": "2026-01-01T00:00:05Z"}, "b"
            ),
        ],
        [
            (
                "PUT",
                EVSE1,
                {"uid": "E1", "status": "CHARGING", "last_updated": "2026-01-01T00:00:05Z"},
                ["a", "b"],
            )
        ],
    ),
    (
        "PATCH then PATCH: later top-level fields win, the others stay",
        [
            push(
                "PATCH",
                EVSE1,
                {"status": "CHARGING", "floor_level": "1", "last_updated": "2026-01-01T00:00:01Z"},
                "a",
            ),
            push(
                "PATCH", EVSE1, {"status": "AVAILABLE", "last_updated": "2026-01-01T00:00:02Z"}, "b"
            ),
        ],
        [
            (
                "PATCH",
                EVSE1,
                {"status": "AVAILABLE", "floor_level": "1", "last_updated": "2026-01-01T00:00:02Z"},
                ["a", "b"],
            )
        ],
    ),
    (
        "last_updated is the newer one, even when the later push carries an older one",
        [
            push(
                "PATCH", EVSE1, {"status": "CHARGING", "last_updated": "2026-01-01T00:00:09Z"}, "a"
            ),
            push(
                "PATCH", EVSE1, {"status": "AVAILABLE", "last_updated": "2026-01-01T00:00:02"}, "b"
            ),
        ],
        [
            (
                "PATCH",
                EVSE1,
                {"status": "AVAILABLE", "last_updated": "2026-01-01T00:00:09Z"},
                ["a", "b"],
            )
        ],
    ),
    (
        "PUT after anything replaces it",
        [push("PATCH", LOC, {"name": "x"}, "a"), push("PUT", LOC, {"id": "LOC1"}, "b")],
        [("PUT", LOC, {"id": "LOC1"}, ["a", "b"])],
    ),
    (
        "PATCH after DELETE stays a step of its own",
        [push("DELETE", LOC, None, "a"), push("PATCH", LOC, {"name": "x"}, "b")],
        [("DELETE", LOC, None, ["a"]), ("PATCH", LOC, {"name": "x"}, ["b"])],
    ),
    (
        "two EVSEs merge each on their own, in the order they first came",
        [
            push("PATCH", EVSE1, {"status": "CHARGING"}, "a"),
            push("PATCH", EVSE2, {"status": "CHARGING"}, "b"),
            push("PATCH", EVSE1, {"status": "AVAILABLE"}, "c"),
        ],
        [
            ("PATCH", EVSE1, {"status": "AVAILABLE"}, ["a", "c"]),
            ("PATCH", EVSE2, {"status": "CHARGING"}, ["b"]),
        ],
    ),
    (
        "an EVSE PATCH does not merge across a PUT of its Location",
        [
            push("PATCH", EVSE1, {"status": "CHARGING"}, "a"),
            push("PUT", LOC, {"id": "LOC1"}, "b"),
            push("PATCH", EVSE1, {"status": "AVAILABLE"}, "c"),
        ],
        [
            ("PATCH", EVSE1, {"status": "CHARGING"}, ["a"]),
            ("PUT", LOC, {"id": "LOC1"}, ["b"]),
            ("PATCH", EVSE1, {"status": "AVAILABLE"}, ["c"]),
        ],
    ),
    (
        "a Location PATCH does not merge across a PUT of one of its EVSEs",
        [
            push("PUT", LOC, {"id": "LOC1", "name": "a"}, "a"),
            push("PUT", EVSE1, {"uid": "E1"}, "b"),
            push("PATCH", LOC, {"name": "b"}, "c"),
        ],
        [
            ("PUT", LOC, {"id": "LOC1", "name": "a"}, ["a"]),
            ("PUT", EVSE1, {"uid": "E1"}, ["b"]),
            ("PATCH", LOC, {"name": "b"}, ["c"]),
        ],
    ),
    (
        "a POST is never merged",
        [push("POST", LOC, {"a": 1}, "a"), push("PATCH", LOC, {"b": 2}, "b")],
        [("POST", LOC, {"a": 1}, ["a"]), ("PATCH", LOC, {"b": 2}, ["b"])],
    ),
    (
        "a body that is not a JSON object is not merged",
        [push("PUT", LOC, [1], "a"), push("PATCH", LOC, {"b": 2}, "b")],
        [("PUT", LOC, [1], ["a"]), ("PATCH", LOC, {"b": 2}, ["b"])],
    ),
    (
        "different queries are different requests",
        [push("PATCH", LOC, {"a": 1}, "a"), push("PATCH", LOC, {"b": 2}, "b", query="x=1")],
        [("PATCH", LOC, {"a": 1}, ["a"]), ("PATCH", LOC, {"b": 2}, ["b"])],
    ),
]


@pytest.mark.parametrize(("pushes", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fold(pushes: list[P], expected: list[Any]) -> None:
    assert shape(fold(pushes)) == expected


def test_a_step_that_merged_nothing_keeps_its_bytes() -> None:
    """Bodies the hub passes straight through stay byte for byte."""
    raw = b'{ "id" : "LOC1",  "name":"\\u00e9", "n": 1.50 }'
    (step,) = fold([P("PUT", LOC, raw)])
    assert step.body is raw and not step.merged
    (step,) = fold([P("PATCH", LOC, raw), P("PUT", LOC, raw + b" ")])
    assert step.body == raw + b" ", "a replacing PUT is sent as it came"


@pytest.mark.parametrize(
    ("suffix", "lane"),
    [
        ("/NL/CPA/LOC1", "NL/CPA/LOC1"),
        ("/NL/CPA/LOC1/E1/1", "NL/CPA/LOC1"),
        ("/NL/CPA/booking_locations/BL1", "NL/CPA/booking_locations"),
        ("", ""),
    ],
)
def test_lane_is_the_top_level_object(suffix: str, lane: str) -> None:
    assert lane_of(suffix) == lane
