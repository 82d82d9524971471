"""A bounded closed-loop load client: N workers, each sends its next request when the last
answer is read, until a request count OR a time limit is reached (whichever comes first).

Closed loop, because an open-loop client on a 2-core machine would measure its own queue;
bounded both ways, so that a slow or hanging target can never keep the bench running.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

REQUEST_TIMEOUT = 15.0  # seconds; the hub answers 4002 after HUB_FORWARD_TIMEOUT=10 anyway


@dataclass(frozen=True)
class Call:
    """One request, sent again and again."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = None


@dataclass
class Run:
    """What one bounded run measured."""

    concurrency: int
    requests: int = 0
    errors: int = 0
    elapsed: float = 0.0
    issued: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)  # seconds, sorted

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def percentile_ms(self, q: float) -> float:
        """Nearest-rank percentile of the successful requests' latencies, in ms."""
        if not self.latencies:
            return float("nan")
        rank = max(0, min(len(self.latencies) - 1, round(q / 100 * len(self.latencies)) - 1))
        return self.latencies[rank] * 1000

    @property
    def p50(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99(self) -> float:
        return self.percentile_ms(99)

    def summary(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.elapsed, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50, 3),
            "p99_ms": round(self.p99, 3),
            "mean_ms": round(statistics.fmean(self.latencies) * 1000, 3)
            if self.latencies
            else float("nan"),
        }


def session(concurrency: int) -> aiohttp.ClientSession:
    """One keep-alive connection per worker, as a platform's HTTP client would hold."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=30),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        skip_auto_headers=("User-Agent",),
    )


async def _loop(
    http: aiohttp.ClientSession, call: Call, run: Run, deadline: float, max_requests: int
) -> None:
    while run.issued < max_requests and time.perf_counter() < deadline:
        run.issued += 1
        began = time.perf_counter()
        try:
            async with http.request(
                call.method, call.url, headers=call.headers, data=call.body
            ) as response:
                await response.read()
                ok = response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            run.requests += 1
            run.latencies.append(time.perf_counter() - began)
        else:
            run.errors += 1


async def closed_loop(
    call: Call,
    concurrency: int,
    seconds: float,
    max_requests: int,
    warmup: float = 0.3,
) -> Run:
    """Warm up (connections opened, caches filled), then measure for ``seconds``."""
    async with session(concurrency) as http:
        if warmup > 0:
            spare = Run(concurrency)
            end = time.perf_counter() + warmup
            await asyncio.gather(
                *(_loop(http, call, spare, end, max_requests) for _ in range(concurrency))
            )
        run = Run(concurrency)
        began = time.perf_counter()
        await asyncio.gather(
            *(_loop(http, call, run, began + seconds, max_requests) for _ in range(concurrency))
        )
        run.elapsed = time.perf_counter() - began
    run.latencies.sort()
    return run


async def fixed_count(call: Call, concurrency: int, count: int, seconds: float) -> Run:
    """Exactly ``count`` requests (unless ``seconds`` run out first), no warm-up."""
    return await closed_loop(call, concurrency, seconds, count, warmup=0)
