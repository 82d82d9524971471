"""How a platform and its parties fare, from the exchanges the traffic log records.

Counts are kept in Redis per hour and platform (availability, OCPI status classes, latency)
and per minute and party (requests, errors, latency), so every hub process adds to the same
figures and reading a week costs 168 small hashes. Latency is a histogram over fixed
buckets; percentiles are read from it as Prometheus' ``histogram_quantile`` does.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Iterable, Mapping

import msgspec

# Upper bounds, milliseconds; the last bucket holds everything slower.
BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
HOUR = 3600
MINUTE = 60


def bucket_of(latency_ms: float) -> int:
    return bisect.bisect_left(BUCKETS_MS, latency_ms)


def percentile(histogram: Mapping[int, int], share: float) -> float | None:
    """The latency below which ``share`` of the counted exchanges fell, interpolated
    linearly inside its bucket; None when nothing was counted."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank, seen = share * total, 0
    for index in range(len(BUCKETS_MS) + 1):
        count = histogram.get(index, 0)
        if count and seen + count >= rank:
            if index == len(BUCKETS_MS):  # slower than the last bound: no more is known
                return float(BUCKETS_MS[-1])
            lower = BUCKETS_MS[index - 1] if index > 0 else 0
            upper = BUCKETS_MS[index]
            return round(lower + (upper - lower) * (rank - seen) / count, 1)
        seen += count
    return float(BUCKETS_MS[-1])


class Tally:
    """Counts of one window (an hour of a platform, a minute of a party), as Redis holds
    them: ``field -> count``, latency buckets as ``ms:<bucket>``."""

    def __init__(self, fields: Mapping[str, int] | None = None) -> None:
        self.fields: Counter[str] = Counter(fields or {})

    @classmethod
    def read(cls, raws: Iterable[Mapping[bytes, bytes]]) -> Tally:
        tally = cls()
        for raw in raws:
            for key, value in raw.items():
                tally.fields[key.decode()] += int(value)
        return tally

    def latency(self) -> dict[int, int]:
        return {
            int(name[3:]): count for name, count in self.fields.items() if name.startswith("ms:")
        }


class StatusClasses(msgspec.Struct):
    """Share of answers by OCPI status class: 1xxx success, 2xxx client errors, 3xxx server
    errors, 4xxx hub errors (the hub's own 4002/4003 when no answer came); ``not_ocpi`` for
    answers without an OCPI status the hub could read."""

    success: float
    client_error: float
    server_error: float
    hub_error: float
    not_ocpi: float


class Quality(msgspec.Struct):
    """A platform as a receiver over one window."""

    window: str
    attempts: int  # still-alive checks and requests the hub sent it
    availability: float | None  # share of them that got an HTTP answer
    answers: int
    p50_ms: float | None
    p95_ms: float | None
    error_rate: float | None  # share of answers that were not 1xxx
    by_status_class: StatusClasses | None


def quality(window: str, tally: Tally) -> Quality:
    fields = tally.fields
    attempts, reached = fields["tried"], fields["reached"]
    classes = [fields[f"ocpi:{n}"] for n in (1, 2, 3, 4)]
    answers = sum(classes) + fields["not-ocpi"]
    latency = tally.latency()
    shares = None
    if answers:
        shares = StatusClasses(
            *(round(count / answers, 4) for count in (*classes, fields["not-ocpi"]))
        )
    return Quality(
        window=window,
        attempts=attempts,
        availability=round(reached / attempts, 4) if attempts else None,
        answers=answers,
        p50_ms=percentile(latency, 0.5),
        p95_ms=percentile(latency, 0.95),
        error_rate=round(1 - classes[0] / answers, 4) if answers else None,
        by_status_class=shares,
    )


class Usage(msgspec.Struct):
    """A party's traffic through the hub: requests it sent and requests sent to it."""

    requests_5m: int = 0
    errors_5m: int = 0
    requests_1h: int = 0
    errors_1h: int = 0
    p95_ms: float | None = None  # how fast its platform answered the hub, last hour


def usage(minutes: list[Tally]) -> dict[str, Usage]:
    """Per party, from the last 60 minute tallies (newest first), read once each."""
    out: dict[str, Usage] = {}
    latency: dict[str, Counter[int]] = {}
    for age, tally in enumerate(minutes):
        for name, count in tally.fields.items():
            party, _, what = name.partition("|")
            figures = out.get(party)
            if figures is None:
                figures = out[party] = Usage()
            if what == "n":
                figures.requests_1h += count
                if age < 5:
                    figures.requests_5m += count
            elif what == "e":
                figures.errors_1h += count
                if age < 5:
                    figures.errors_5m += count
            elif what.startswith("ms:"):
                latency.setdefault(party, Counter())[int(what[3:])] += count
    for party, histogram in latency.items():
        out[party].p95_ms = percentile(histogram, 0.95)
    return out


def hour_of(moment: float | None = None) -> int:
    return int((time.time() if moment is None else moment) // HOUR)


def minute_of(moment: float | None = None) -> int:
    return int((time.time() if moment is None else moment) // MINUTE)
