"""7. Status storm: EVSE status PATCHes from 10 CPOs broadcast to 200 receiver parties.

Ten CPO platforms (one party each, 10 EVSEs each: 5 Locations of 2 EVSEs) PATCH EVSE
statuses through the hub at each of ``RATES`` per second in total for ``SECONDS``, each CPO sending
its PATCHes one after the other so that each EVSE's pushes have one acceptance order. The
receivers are 50 eMSP platforms of 4 parties each on the fake platforms process, which holds
per (party, EVSE) the ``last_updated`` it was last told and logs every arrival.

Measured: PATCHes accepted per second; deliveries made against deliveries requested
(accepted x receivers: the coalescing ratio); the lag from the hub's 1000 answer to the
arrival of the delivery that carried the push, for every (push, receiver) pair; order
violations (an arrival older than what the receiver held); the time from the storm's end
until every receiver holds every EVSE's last status; the hub's CPU per accepted PATCH and
per delivery made, the latter against the bare forwarder's CPU per forwarded PATCH measured
in the same run.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis

from tests.bench import data
from tests.bench.hotpath import redis_commands
from tests.bench.load import Call, closed_loop
from tests.bench.platforms import authorization, token_b
from tests.bench.procs import Registered, Role, cpu_seconds, party_ids, start_hub
from tests.bench.report import Row

if TYPE_CHECKING:
    from tests.bench.scenarios import Bench

# PATCHes per second, all CPOs together: the storm, and a calm this 2-core machine keeps up
# with (each PATCH is 200 deliveries unless merged).
RATES = (300.0, 4.0)
SECONDS = 20.0
CPOS = 10
LOCATIONS, EVSES = 5, 2  # per CPO
RECEIVER_PLATFORMS, PARTIES_EACH = 50, 4
CONVERGE_WITHIN = 180.0  # seconds the bench waits for the receivers after the storm
STATUSES = ("AVAILABLE", "CHARGING", "BLOCKED", "OUTOFORDER", "RESERVED")
S = "7 status storm"


def evse_paths(cpo: int) -> list[str]:
    return [f"NL/C{cpo:02d}/L{n}/E{m}" for n in range(LOCATIONS) for m in range(EVSES)]


def stamp() -> str:
    """last_updated at microseconds: unique and increasing for one sender's pushes."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Outcome:
    rate: float
    accepted: dict[str, list[tuple[str, float]]]  # evse -> [(last_updated, answered at)]
    seconds: float
    ended: float  # wall-clock time the last PATCH was answered
    pairs: int
    converged: int
    last: float  # wall-clock arrival that made the last pair converge
    cpu: float  # hub CPU seconds from the first PATCH until converged
    redis_commands: int  # Redis commands over the same time (INFO commandstats)
    log: list[list[Any]]
    violations: int

    @property
    def count(self) -> int:
        return sum(len(p) for p in self.accepted.values())


async def run(bench: Bench) -> None:
    """The storm, then a calm at a rate this machine keeps up with, on one hub."""
    redis_url = bench.new_redis()
    service = bench.keep(start_hub("hub-storm", bench.workdir, redis_url))
    try:
        cpos = [
            await bench.register(service, f"scpo{n}", [("NL", f"C{n:02d}", "CPO")])
            for n in range(CPOS)
        ]
        ids = party_ids(RECEIVER_PLATFORMS * PARTIES_EACH)
        for n in range(RECEIVER_PLATFORMS):
            own = ids[n * PARTIES_EACH : (n + 1) * PARTIES_EACH]
            roles: list[Role] = [("XS", party_id, "EMSP") for party_id in own]
            await bench.register(service, f"srcv{n}", roles)
        outcomes = []
        for rate in RATES:
            await bench.settle()
            outcomes.append(await _storm(bench, service, cpos, rate, redis_url))
        bare_cpu = await _bare_cpu_per_patch(bench)
    finally:
        bench.stop(service)
    for outcome in outcomes:
        _report(bench, outcome, bare_cpu)


async def _storm(
    bench: Bench, service: Any, cpos: list[Registered], rate: float, redis_url: str
) -> Outcome:
    await _control(bench, "reset")
    accepted: dict[str, list[tuple[str, float]]] = {}
    client = redis.Redis.from_url(redis_url)
    commands_before = redis_commands(client)
    cpu_before = cpu_seconds(service.pid)
    began = time.monotonic()
    ends = began + SECONDS
    await asyncio.gather(
        *(_sender(bench, service.url, cpo, n, rate, ends, accepted) for n, cpo in enumerate(cpos))
    )
    ended, seconds = time.time(), time.monotonic() - began
    finals = {evse: pushes[-1][0] for evse, pushes in accepted.items()}
    await _control(bench, "expect", finals)
    pairs = len(finals) * RECEIVER_PLATFORMS * PARTIES_EACH
    converged, last = await _converged(bench, pairs)
    cpu = cpu_seconds(service.pid) - cpu_before
    commands = redis_commands(client) - commands_before
    client.close()
    log = await _control(bench, "log")
    return Outcome(
        rate,
        accepted,
        seconds,
        ended,
        pairs,
        converged,
        last,
        cpu,
        commands,
        log["log"],
        log["violations"],
    )


def _report(bench: Bench, o: Outcome, bare_cpu: float) -> None:
    label = f"{o.rate:g}/s: "
    lags = _lags(o.accepted, o.log)
    made = len(o.log)
    requested = o.count * RECEIVER_PLATFORMS * PARTIES_EACH
    bench.raw[f"status_storm_{o.rate:g}"] = {
        "accepted": o.count,
        "seconds": o.seconds,
        "deliveries_made": made,
        "deliveries_requested": requested,
        "violations": o.violations,
        "lag_samples": len(lags),
        "converged_pairs": o.converged,
        "pairs": o.pairs,
        "hub_cpu_s": o.cpu,
        "redis_commands": o.redis_commands,
    }
    note = f"{o.count} PATCHes in {o.seconds:.0f} s to {RECEIVER_PLATFORMS * PARTIES_EACH} parties"
    rows = [
        Row.measured(
            S, label + "PATCHes accepted per second", "/s", [o.count / o.seconds], note=note
        ),
        Row.measured(
            S,
            label + "deliveries made / requested",
            "ratio",
            [made / max(1, requested)],
            note=f"{made:,} requests for {requested:,} (push, receiver) pairs",
        ),
        Row.measured(
            S,
            label + "order violations",
            "",
            [o.violations],
            goal="0",
            check_value=lambda v: v == 0,
        ),
    ]
    for q in (50, 95, 99):
        rows.append(
            Row.measured(
                S,
                label + f"lag p{q}, acceptance to arrival",
                "ms",
                [_percentile(lags, q) * 1000],
                goal="< 1 s" if q == 95 else "",
                check_value=(lambda ms: ms < 1000) if q == 95 else None,
                note=f"{len(lags):,} (push, receiver) pairs" if q == 50 else "",
            )
        )
    settled = (o.last - o.ended) if o.converged == o.pairs else float("nan")
    rows += [
        Row.measured(
            S,
            label + "end to every receiver holding every last status",
            "s",
            [max(0.0, settled)],
            goal="< 2 s",
            check_value=lambda s: s < 2,
            note="" if o.converged == o.pairs else f"{o.converged} of {o.pairs} pairs",
        ),
        Row.measured(S, label + "hub CPU per accepted PATCH", "ms", [o.cpu / o.count * 1000]),
        Row.measured(
            S,
            label + "Redis commands per delivery made",
            "commands",
            [o.redis_commands / max(1, made)],
            note="INFO commandstats from the first PATCH until converged, acceptance included",
        ),
        Row.measured(
            S,
            label + "hub CPU per delivery made",
            "ms",
            [o.cpu / max(1, made) * 1000],
            "bare forward",
            [bare_cpu * 1000],
            note="bare: the bare forwarder's CPU per PATCH it forwards, c=16",
        ),
    ]
    for row in rows:
        bench.add(row)


async def _sender(
    bench: Bench,
    hub_url: str,
    cpo: Registered,
    n: int,
    rate: float,
    ends: float,
    accepted: dict[str, list[tuple[str, float]]],
) -> None:
    """One CPO: PATCHes at rate / CPOS per second, one at a time, a random EVSE and status."""
    interval = CPOS / rate
    paths = evse_paths(n)
    headers = {
        **cpo.hub_headers(("NL", f"C{n:02d}"), ("NL", "HUB")),
        "Content-Type": "application/json",
    }
    due = time.monotonic()
    while time.monotonic() < ends:
        path = random.choice(paths)
        updated = stamp()
        body = data.encode({"status": random.choice(STATUSES), "last_updated": updated})
        url = f"{hub_url}/ocpi/2.3.0/locations/receiver/{path}"
        async with bench.http.patch(url, data=body, headers=headers) as response:
            answer = data.decode(await response.read())
        if answer.get("status_code") == 1000:
            accepted.setdefault(path, []).append((updated, time.time()))
        due += interval
        await asyncio.sleep(max(0.0, due - time.monotonic()))


async def _control(bench: Bench, what: str, body: Any = None) -> Any:
    url = f"{bench.platforms.url}/bench/storm/{what}"
    async with bench.http.post(url, data=data.encode(body or {})) as response:
        return data.decode(await response.read())


async def _converged(bench: Bench, pairs: int) -> tuple[int, float]:
    """Poll the receivers until every (party, EVSE) holds the last status (bounded)."""
    deadline = time.monotonic() + CONVERGE_WITHIN
    seen: dict[str, Any] = {"pairs": 0, "last": 0.0}
    while time.monotonic() < deadline:
        seen = await _control(bench, "converged")
        if seen["pairs"] >= pairs:
            break
        await asyncio.sleep(0.1)
    return int(seen["pairs"]), float(seen["last"])


def _lags(accepted: dict[str, list[tuple[str, float]]], log: list[list[Any]]) -> list[float]:
    """For every arrival, the lag of each push it carried: those accepted after what the
    receiver held before, up to the one it holds now."""
    stamps = {evse: [s for s, _ in pushes] for evse, pushes in accepted.items()}
    lags = []
    for _party, evse, before, now, at in log:
        pushes, order = accepted.get(evse, []), stamps.get(evse, [])
        first = bisect.bisect_right(order, before)
        last = bisect.bisect_right(order, now)
        lags += [at - when for _, when in pushes[first:last]]
    lags.sort()
    return lags


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[max(0, min(len(values) - 1, round(q / 100 * len(values)) - 1))]


async def _bare_cpu_per_patch(bench: Bench) -> float:
    """CPU seconds the bare forwarder spends per PATCH it forwards to a receiver."""
    body = data.encode({"status": "AVAILABLE", "last_updated": stamp()})
    headers = {
        "Authorization": authorization(token_b("srcv0")),
        "Content-Type": "application/json",
        "OCPI-to-country-code": "XS",
        "OCPI-to-party-id": "000",
    }
    url = f"{bench.bare.url}/p/srcv0/ocpi/2.3.0/locations/receiver/NL/C00/L0/E0"
    before = cpu_seconds(bench.bare.pid)
    result = await closed_loop(Call("PATCH", url, headers, body), 16, 3.0, 20_000, warmup=0)
    return (cpu_seconds(bench.bare.pid) - before) / max(1, result.requests + result.errors)
