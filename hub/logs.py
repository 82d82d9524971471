"""Logging: structlog for every line, JSON by default, bound to the request being served.

Lines written through the standard library (uvicorn, aiohttp) pass through the same
processors, so an operator's log pipeline sees one format.
"""

from __future__ import annotations

import logging
import os
import sys
from contextvars import ContextVar
from typing import Any

import msgspec
import structlog
from structlog.typing import FilteringBoundLogger

_json = msgspec.json.Encoder()


def _serialize(obj: Any, **_: Any) -> str:
    return _json.encode(obj).decode()


# What the lines logged while a request is served carry (its ids, the calling platform).
_REQUEST: ContextVar[dict[str, str] | None] = ContextVar("hub_request_log", default=None)


def serving_request(**fields: str) -> None:
    """Begin the log context of a request: every line logged while it is served, and by
    the tasks it starts, carries ``fields``. One ContextVar set: structlog's
    clear_contextvars and bind_contextvars took 4 us of every routed request. Whatever a
    request before it on the same connection added is gone."""
    _REQUEST.set(fields)


def bind_request(**fields: str) -> None:
    """Add ``fields`` to the log context of the request being served (none outside one)."""
    context = _REQUEST.get()
    if context is not None:
        context.update(fields)


def _merge_request(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
    """The request's log context into a line; what the line names itself wins."""
    context = _REQUEST.get()
    if context:
        for key, value in context.items():
            event.setdefault(key, value)
    return event


def _process(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Which hub process wrote the line (``hub serve --workers N`` runs several)."""
    event.setdefault("process", os.getpid())
    return event


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    shared: list[Any] = [
        _merge_request,
        _process,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer(serializer=_serialize)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Below the level a call returns at once, before any processor runs.
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([] if fmt == "console" else [structlog.processors.format_exc_info]),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "aiohttp.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def get_logger(name: str) -> FilteringBoundLogger:
    """The logger ``configure_logging`` sets up (make_filtering_bound_logger)."""
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger
