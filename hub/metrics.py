"""The hub's Prometheus metrics (``/metrics``), counted where things happen.

Counters and histograms live in this process (in files shared by every worker when
``PROMETHEUS_MULTIPROC_DIR`` is set, as ``hub serve --workers N`` does); what is the same for
every process (parties by role and status, delivery queue depth) is read from Redis when
``/metrics`` is scraped (hub/web/monitoring.py).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics import MetricWrapperBase

disable_created_metrics()  # a ``_created`` series per counter is noise to every dashboard

# Seconds: from a fast platform on the same network to FORWARD_TIMEOUT.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "hub_requests",
    "OCPI requests platforms made to the hub, by module, interface, method and OCPI status",
    ["module", "interface", "method", "ocpi_status"],
)
FORWARD_SECONDS = Histogram(
    "hub_forward_seconds",
    "Time a receiver platform took to answer a request the hub sent it",
    ["module", "receiver"],
    buckets=LATENCY_BUCKETS,
)
FORWARD_FAILURES = Counter(
    "hub_forward_failures",
    "Requests the hub sent that got no OCPI answer, by module, receiver and hub status code",
    ["module", "receiver", "ocpi_status"],
)
DELIVERIES = Counter(
    "hub_deliveries",
    "Broadcast pushes per receiver, by outcome (delivered, coalesced, dropped, skipped, dead)",
    ["outcome"],
)
BROADCASTS = Counter("hub_broadcasts", "Broadcast pushes accepted, by module", ["module"])
ALIVE_CHECKS = Counter(
    "hub_alive_checks", "Still-alive checks, by outcome (answered, failed)", ["outcome"]
)
REDIS_ERRORS = Counter("hub_redis_errors", "Redis commands that failed or timed out")
TRANSLATION_LOSSES = Counter(
    "hub_translation_losses",
    "Fields left out translating objects between OCPI versions, by module and target version",
    ["module", "target"],
)


def exposition() -> tuple[bytes, str]:
    """The metrics of this process, or of every worker in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


_children: dict[tuple[object, ...], Any] = {}


def labelled(metric: MetricWrapperBase, *values: str) -> Any:
    """``metric.labels(*values)``, kept for the next time: the hot path counts every request
    under a few label sets, and ``labels`` checks its arguments and takes a lock each call.
    Label values come from bounded sets, so this stays small."""
    key = (id(metric), *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child
