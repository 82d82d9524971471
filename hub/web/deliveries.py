"""The operator's view of deliveries: each receiver platform's backlog, the dead letters,
and a dead letter's replay (``/admin/deliveries``, ``/admin/dead-letters``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.web.access import AdminError, require_admin, runtime
from hub.web.responses import json_response


async def list_backlogs(request: Request) -> Response:
    """Per receiver platform: pushes waiting, the oldest one's age, and what was done."""
    require_admin(request)
    return json_response(await runtime(request).engine.backlog())


def _seconds(request: Request, name: str) -> float | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise AdminError(400, f"{name} must be a number of seconds, got {value!r}")
    return seconds


async def list_dead_letters(request: Request) -> Response:
    """Newest first. ``receiver`` (CC/PID or a platform id), ``module``, ``older_than`` and
    ``newer_than`` (seconds) filter; ``limit`` (default 100, at most 1000) caps."""
    require_admin(request)
    params = request.query_params
    limit = params.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise AdminError(400, f"limit must be a whole number from 1 to 1000, got {limit!r}")
    letters = await runtime(request).dead_letters.list(
        receiver=params.get("receiver"),
        module=params.get("module"),
        older_than=_seconds(request, "older_than"),
        newer_than=_seconds(request, "newer_than"),
        limit=int(limit),
    )
    return json_response(letters)


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
    return json_response({"dead_letter": letter, "replays": reports})


routes = [
    Route("/admin/deliveries", list_backlogs, methods=["GET"]),
    Route("/admin/dead-letters", list_dead_letters, methods=["GET"]),
    Route("/admin/dead-letters/{letter_id}/replay", replay_dead_letter, methods=["POST"]),
]
