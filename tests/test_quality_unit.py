"""Partner quality from counted hops (hub/registry/quality.py): percentiles as Prometheus'
``histogram_quantile`` reads them, availability and error rates, per-party usage."""

from __future__ import annotations

from hub.registry.quality import BUCKETS_MS, Tally, bucket_of, percentile, quality, usage


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
