"""Stopping background tasks without trusting every library to honour a cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from hub.logs import get_logger

log = get_logger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None]], grace: float) -> None:
    """Cancel ``tasks`` and wait up to ``grace`` seconds for them to end.

    A task that swallowed its cancel (a library caught it, or a race lost it) would hold
    shutdown forever. It is logged and left behind instead, so the process still exits.
    """
    running = [task for task in tasks if not task.done()]
    for task in running:
        task.cancel()
    if not running:
        return
    done, pending = await asyncio.wait(running, timeout=grace)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            error = str(task.exception())
            log.warning("background task failed", task=task.get_name(), error=error)
    for task in pending:
        log.warning("background task ignored its cancel", task=task.get_name(), grace=grace)
