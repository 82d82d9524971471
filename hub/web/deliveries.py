"""The operator's view of deliveries: each receiver platform's backlog, the dead letters,
and a dead letter's replay (``/admin/deliveries``, ``/admin/dead-letters``)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hub.background.broadcast import Report
from hub.background.deadletters import DeadLetter
from hub.background.engine import Backlog
from hub.web.access import AdminError, require_admin, runtime
from hub.web.admin import read_query
from hub.web.openapi import AdminRoute
from hub.web.responses import json_response

Seconds = Annotated[float, msgspec.Meta(ge=0)]


async def list_backlogs(request: Request) -> Response:
    """Per receiver platform: pushes waiting, the oldest one's age, and what was done."""
    require_admin(request)
    return json_response(await runtime(request).engine.backlog())


class DeadLettersQuery(msgspec.Struct):
    receiver: Annotated[str, msgspec.Meta(description="CC/PID or a platform id")] | None = None
    module: str | None = None
    older_than: Seconds | None = None
    newer_than: Seconds | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


async def list_dead_letters(request: Request) -> Response:
    """Deliveries finally not made, newest first. ``receiver``, ``module``, ``older_than``
    and ``newer_than`` (seconds) filter; ``limit`` caps."""
    require_admin(request)
    query = read_query(request, DeadLettersQuery)
    letters = await runtime(request).dead_letters.list(
        receiver=query.receiver,
        module=query.module,
        older_than=query.older_than,
        newer_than=query.newer_than,
        limit=query.limit,
    )
    return json_response(letters)


class Replay(msgspec.Struct):
    """A dead letter and the reports of sending its object again (null: a report not kept)."""

    dead_letter: DeadLetter
    replays: list[Report | None]


async def replay_dead_letter(request: Request) -> Response:
    """Send the receiver the latest state the hub holds of the object, and answer with what
    came of it (the replay's broadcast reports)."""
    require_admin(request)
    hub = runtime(request)
    letter_id = request.path_params["letter_id"]
    letter = await hub.dead_letters.get(letter_id)
    if letter is None:
        raise AdminError(404, f"unknown dead letter {letter_id}")
    snapshot = await hub.registry.refresh_if_stale()
    ids = await hub.broadcaster.replay(letter, snapshot)
    if not ids:
        raise AdminError(
            409,
            f"the hub no longer holds the state of {letter.module}{letter.path}; "
            f"{letter.receiver} has to GET it from its owner",
        )
    reports = []
    deadline = hub.settings.delivery_max_age + hub.settings.forward_timeout
    for broadcast_id in ids:
        reports.append(await hub.broadcaster.wait(broadcast_id, deadline))
    if any(report is not None and report.receivers == 0 for report in reports):
        raise AdminError(
            409,
            f"{letter.receiver} is not a receiver of {letter.module} now "
            "(not connected, or no agreement with the object's owner)",
        )
    return json_response(Replay(letter, reports))


routes = [
    AdminRoute("/admin/deliveries", list_backlogs, methods=["GET"], response=list[Backlog]),
    AdminRoute(
        "/admin/dead-letters",
        list_dead_letters,
        methods=["GET"],
        query=DeadLettersQuery,
        response=list[DeadLetter],
    ),
    AdminRoute(
        "/admin/dead-letters/{letter_id}/replay",
        replay_dead_letter,
        methods=["POST"],
        response=Replay,
    ),
]
