"""Partner quality from counted hops (hub/registry/quality.py): percentiles as Prometheus'
``histogram_quantile`` reads them, availability and error rates, per-party usage; and what
the traffic log's batches add to the counts they are read from."""

from __future__ import annotations

from typing import Any

from hub.registry.quality import (
    BUCKETS_MS,
    HOUR,
    MINUTE,
    Tally,
    bucket_of,
    percentile,
    quality,
    usage,
)
from hub.registry.store import Keys
from hub.registry.traffic import Exchange, _tallies, rows_of


def test_percentile_interpolates_within_a_bucket_and_stops_at_the_last_bound() -> None:
    assert percentile({}, 0.5) is None
    assert percentile({bucket_of(7): 10}, 0.5) == 7.5  # half of (5, 10]
    assert percentile({len(BUCKETS_MS): 3}, 0.95) == float(BUCKETS_MS[-1])  # slower than all


def test_quality_shares_and_rates() -> None:
    tally = Tally({"tried": 10, "reached": 8, "ocpi:1": 6, "ocpi:2": 1, "ocpi:4": 2, "ms:1": 8})
    q = quality("24h", tally)
    assert (q.attempts, q.availability, q.answers) == (10, 0.8, 9)
    assert q.error_rate == round(1 - 6 / 9, 4)
    assert q.by_status_class is not None and q.by_status_class.hub_error == round(2 / 9, 4)
    empty = quality("7d", Tally())
    assert (empty.availability, empty.error_rate, empty.p95_ms) == (None, None, None)


def test_usage_reads_each_minute_once_for_every_party() -> None:
    now = Tally({"NL/CPA|n": 3, "NL/CPA|e": 1, "NL/CPA|ms:2": 3, "DE/MSA|n": 1})
    older = [Tally({"NL/CPA|n": 5}) for _ in range(59)]
    counted = usage([now, *older])
    cpa, msa = counted["NL/CPA"], counted["DE/MSA"]
    assert (cpa.requests_5m, cpa.errors_5m, cpa.requests_1h, cpa.errors_1h) == (23, 1, 298, 1)
    assert cpa.p95_ms is not None and 10 < cpa.p95_ms <= 25
    assert (msa.requests_5m, msa.requests_1h, msa.p95_ms) == (1, 1, None)


def test_a_batch_of_hops_adds_to_each_platform_hour_and_each_party_minute() -> None:
    """What one traffic-log batch writes: out hops count for their platform's hour (tried,
    reached, latency bucket, OCPI status class or not-OCPI); every hop counts for its
    party's minute (requests, failures, and latency for answered hops out)."""
    at = 100 * HOUR + 30 * MINUTE + 1

    def out(**fields: object) -> Exchange:
        base: dict[str, Any] = {"at": at, "direction": "out", "method": "GET", "path": "/x"}
        return Exchange(**{**base, "platform": "cpo", "receiver": "NL/CPA", **fields})

    hops = [
        out(http_status=200, ocpi_status=1000, latency_ms=7),
        out(http_status=200, ocpi_status=1000, latency_ms=8),
        out(http_status=200, ocpi_status=2001, latency_ms=30),
        out(http_status=502, latency_ms=1, error="not an OCPI response"),
        out(http_status=0, ocpi_status=4003, error="receiver cannot be reached"),
        out(platform="", receiver="", http_status=200),  # counted nowhere
        Exchange(at=at, direction="in", method="GET", path="/ocpi", sender="DE/MSA",
                 platform="emsp", http_status=200, ocpi_status=1000, latency_ms=9),
        Exchange(at=at + HOUR, direction="in", method="GET", path="/ocpi", sender="DE/MSA",
                 platform="emsp", http_status=401, ocpi_status=2000),
    ]  # fmt: skip
    quality_of, usage_of = _tallies(rows_of(hops))
    assert quality_of == {
        Keys.quality("cpo", 100): {
            "tried": 5, "reached": 4, "ms:1": 2, "ms:3": 1, "ms:0": 1,
            "ocpi:1": 2, "ocpi:2": 1, "ocpi:4": 1, "not-ocpi": 1,
        },
    }  # fmt: skip
    minute = 100 * 60 + 30
    assert usage_of == {
        Keys.usage(minute): {
            "NL/CPA|n": 5, "NL/CPA|e": 3, "NL/CPA|ms:1": 2, "NL/CPA|ms:3": 1, "NL/CPA|ms:0": 1,
            "DE/MSA|n": 1,
        },
        Keys.usage(minute + 60): {"DE/MSA|n": 1, "DE/MSA|e": 1},
    }  # fmt: skip
