"""The arithmetic of GET All via the hub: ``hub.routing.get_all.collect``.

transport_and_format, "GET All via Hubs": the hub answers a GET All with the objects of every
data owner, one sequence with the parties in a fixed order. "Pagination": ``offset`` and
``limit`` count over that sequence, and X-Total-Count is its length. Here the sources are
in-memory lists, so each row pins which objects a page holds, which slices are asked of
which source, and the totals the walk knows afterwards (their sum is the X-Total-Count the
hub sends).
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from hub.routing.get_all import UNKNOWN, Source, collect

OBJECTS = {
    "AAA": ["A1", "A2", "A3"],
    "BBB": ["B1", "B2", "B3", "B4"],
    "CCC": ["C1", "C2"],
    "EEE": [],
}

Call = tuple[str, int, int]  # (party_id, start, need)


class Parties:
    """``fetch`` over OBJECTS. ``fail`` names parties that fail, and how:

    - "at once": fails before anything is known about it (its total stays unknown);
    - "after total": learns its total, then fails (a party that answered a first page
      with X-Total-Count and failed on the next request of the same fetch);
    - "second call": answers its first fetch, fails on every later one.
    """

    def __init__(self, fail: dict[str, str] | None = None) -> None:
        self.fail = fail or {}
        self.calls: list[Call] = []
        self.asked: dict[str, int] = {}  # fetches per party, over every page

    async def fetch(self, source: Source, start: int, need: int) -> list[msgspec.Raw]:
        party = source.party_id
        asked_before = self.asked.get(party, 0)
        self.asked[party] = asked_before + 1
        self.calls.append((party, start, need))
        await asyncio.sleep(0)  # a network call suspends
        objects = OBJECTS[party]
        mode = self.fail.get(party)
        if mode == "after total":
            source.total = len(objects)
        if mode in ("at once", "after total") or (mode == "second call" and asked_before):
            source.skipped, source.error = True, f"{party} failed"
            return []
        source.total = len(objects)
        return [msgspec.Raw(msgspec.json.encode(o)) for o in objects[start : start + need]]


def sources_of(*party_ids: str, totals: tuple[int, ...] | None = None) -> list[Source]:
    known = totals or (UNKNOWN,) * len(party_ids)
    return [
        Source("NL", party_id, f"platform-{party_id}", f"https://{party_id}.example/loc", total)
        for party_id, total in zip(party_ids, known, strict=True)
    ]


def decoded(objects: list[msgspec.Raw]) -> list[str]:
    assert all(isinstance(o, msgspec.Raw) for o in objects)
    return [msgspec.json.decode(o) for o in objects]


def x_total_count(sources: list[Source]) -> int:
    """What GetAll.page sends as X-Total-Count: a skipped source keeps its known share."""
    return sum(max(s.total, 0) for s in sources)


# (parties, totals known before the page, offset, limit,
#  objects on the page, fetch calls in order, totals afterwards)
ROWS = [
    pytest.param(
        ("AAA", "BBB"), None, 0, 5,
        ["A1", "A2", "A3", "B1", "B2"],
        [("AAA", 0, 5), ("BBB", 0, 2)],
        [3, 4],
        id="first-page-over-two-sources",
    ),
    pytest.param(
        ("AAA", "BBB"), None, 2, 3,
        ["A3", "B1", "B2"],
        [("AAA", 2, 3), ("BBB", 0, 2)],
        [3, 4],
        id="page-spans-the-boundary",
    ),
    pytest.param(
        ("AAA", "BBB"), None, 3, 2,
        ["B1", "B2"],
        [("AAA", 3, 2), ("BBB", 0, 2)],
        [3, 4],
        id="offset-at-the-boundary",
    ),
    pytest.param(
        ("AAA", "BBB"), None, 4, 2,
        ["B2", "B3"],
        [("AAA", 4, 2), ("BBB", 1, 2)],
        [3, 4],
        id="offset-beyond-the-first-source",
    ),
    pytest.param(
        ("AAA", "BBB"), None, 10, 5,
        [],
        [("AAA", 10, 5), ("BBB", 7, 5)],
        [3, 4],
        id="offset-beyond-everything",
    ),
    pytest.param(
        ("AAA", "BBB"), None, 0, 2,
        ["A1", "A2"],
        [("AAA", 0, 2), ("BBB", 0, 1)],
        [3, 4],
        id="limit-smaller-than-a-source",
    ),
    pytest.param(
        ("AAA", "BBB"), None, 1, 2,
        ["A2", "A3"],
        [("AAA", 1, 2), ("BBB", 0, 1)],
        [3, 4],
        id="page-ends-exactly-at-the-end-of-a-source",
    ),
    pytest.param(
        ("AAA", "EEE", "BBB"), None, 2, 3,
        ["A3", "B1", "B2"],
        [("AAA", 2, 3), ("EEE", 0, 2), ("BBB", 0, 2)],
        [3, 0, 4],
        id="empty-source-in-the-middle",
    ),
    pytest.param(
        ("EEE", "AAA"), None, 0, 2,
        ["A1", "A2"],
        [("EEE", 0, 2), ("AAA", 0, 2)],
        [0, 3],
        id="empty-source-first",
    ),
    pytest.param(
        ("EEE",), None, 0, 5,
        [],
        [("EEE", 0, 5)],
        [0],
        id="only-an-empty-source",
    ),
    pytest.param(
        ("AAA", "BBB", "CCC"), None, 0, 1,
        ["A1"],
        [("AAA", 0, 1), ("BBB", 0, 1), ("CCC", 0, 1)],
        [3, 4, 2],
        id="totals-learned-for-sources-the-page-did-not-reach",
    ),
    pytest.param(
        ("AAA", "BBB", "CCC"), None, 0, 10,
        ["A1", "A2", "A3", "B1", "B2", "B3", "B4", "C1", "C2"],
        [("AAA", 0, 10), ("BBB", 0, 7), ("CCC", 0, 3)],
        [3, 4, 2],
        id="one-page-holds-everything",
    ),
    pytest.param(
        ("AAA", "BBB", "CCC"), (3, 4, 2), 5, 3,
        ["B3", "B4", "C1"],
        [("BBB", 2, 3), ("CCC", 0, 1)],
        [3, 4, 2],
        id="later-page-known-totals-skip-sources-behind-it",
    ),
    pytest.param(
        ("AAA", "BBB", "CCC"), (3, 4, 2), 9, 3,
        [],
        [],
        [3, 4, 2],
        id="later-page-past-the-end-asks-nobody",
    ),
    pytest.param(
        ("AAA", "EEE", "CCC"), (3, 0, UNKNOWN), 3, 2,
        ["C1", "C2"],
        [("CCC", 0, 2)],
        [3, 0, 2],
        id="known-empty-source-is-not-asked-again",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("parties", "totals", "offset", "limit", "page", "calls", "totals_after"), ROWS
)
async def test_page_of_the_merged_sequence(
    parties: tuple[str, ...],
    totals: tuple[int, ...] | None,
    offset: int,
    limit: int,
    page: list[str],
    calls: list[Call],
    totals_after: list[int],
) -> None:
    sources = sources_of(*parties, totals=totals)
    lists = Parties()
    got = await collect(sources, offset, limit, lists.fetch)
    assert decoded(got) == page
    assert lists.calls == calls
    assert [s.total for s in sources] == totals_after
    assert not any(s.skipped for s in sources)
    # X-Total-Count: every object of every source, whichever page was asked.
    assert x_total_count(sources) == sum(len(OBJECTS[p]) for p in parties)


# (how BBB fails, limit, per page: (offset, objects, fetch calls), the page BBB fails on,
#  BBB's total once failed, X-Total-Count of every page)
FAILURES = [
    pytest.param(
        "at once", 4,
        [
            (0, ["A1", "A2", "A3", "C1"], [("AAA", 0, 4), ("BBB", 0, 1), ("CCC", 0, 1)]),
            (4, ["C2"], [("CCC", 1, 4)]),
        ],
        1, UNKNOWN, 5,
        id="fails-before-its-total-is-known-it-has-no-places",
    ),
    pytest.param(
        "after total", 4,
        [
            # BBB is places 3..6: place 3 is a hole on page 1, places 4..6 on page 2.
            (0, ["A1", "A2", "A3"], [("AAA", 0, 4), ("BBB", 0, 1), ("CCC", 0, 1)]),
            (4, ["C1"], [("CCC", 0, 1)]),
            (8, ["C2"], [("CCC", 1, 4)]),
        ],
        1, 4, 9,
        id="fails-once-its-total-is-known-its-places-stay-holes",
    ),
    pytest.param(
        "second call", 4,
        [
            (0, ["A1", "A2", "A3", "B1"], [("AAA", 0, 4), ("BBB", 0, 1), ("CCC", 0, 1)]),
            # BBB fails now: B2..B4 (places 4..6) become holes, C1 stays at place 7.
            (4, ["C1"], [("BBB", 1, 4), ("CCC", 0, 1)]),
            (8, ["C2"], [("CCC", 1, 4)]),
        ],
        2, 4, 9,
        id="fails-on-a-later-page-the-others-neither-move-nor-repeat",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("mode", "limit", "pages", "fails_on", "bbb_total", "total"), FAILURES)
async def test_failing_source_in_the_middle(
    mode: str,
    limit: int,
    pages: list[tuple[int, list[str], list[Call]]],
    fails_on: int,
    bbb_total: int,
    total: int,
) -> None:
    """One walk, page after page over the same Source objects (as the walk stored in Redis
    carries them): a failed source is not asked again, and the objects of the source after
    it come exactly once, at the same places as if nothing had failed (or, if the failed
    source's total was never known, as if it had no objects)."""
    sources = sources_of("AAA", "BBB", "CCC")
    lists = Parties({"BBB": mode})
    walked: list[str] = []
    for number, (offset, objects, calls) in enumerate(pages, start=1):
        lists.calls.clear()
        got = await collect(sources, offset, limit, lists.fetch)
        assert decoded(got) == objects, f"page {number}"
        assert lists.calls == calls, f"page {number}"
        assert x_total_count(sources) == total, f"page {number}"
        walked += decoded(got)
        failed = sources[1]
        if number < fails_on:
            assert (failed.skipped, failed.error, failed.total) == (False, None, bbb_total)
        else:  # the state the next page starts from: skipped, with its total (if known)
            assert (failed.skipped, failed.error, failed.total) == (True, "BBB failed", bbb_total)
        assert [s.total for s in (sources[0], sources[2])] == [3, 2]
    assert pages[-1][0] + limit >= total  # the last page reaches the end: no next link
    kept = OBJECTS["AAA"] + (["B1"] if mode == "second call" else []) + OBJECTS["CCC"]
    assert walked == kept


async def test_failing_source_learning_its_total_is_left_unknown() -> None:
    """A source the page did not reach, failing while only its total is asked: skipped,
    total unknown, not counted in X-Total-Count; the sources that answered are counted."""
    sources = sources_of("AAA", "BBB", "CCC")
    lists = Parties({"BBB": "at once"})
    got = await collect(sources, 0, 2, lists.fetch)
    assert decoded(got) == ["A1", "A2"]
    assert lists.calls == [("AAA", 0, 2), ("BBB", 0, 1), ("CCC", 0, 1)]
    assert [(s.total, s.skipped) for s in sources] == [(3, False), (UNKNOWN, True), (2, False)]
    assert x_total_count(sources) == 5
