"""The outermost layer of every request: message ids, body size, and no tracebacks out.

A pure ASGI middleware (no per-request task or body buffering), since every routed request
passes through it.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.logs import bind_contextvars, clear_contextvars, get_logger
from hub.ocpi import headers
from hub.ocpi.envelope import encode_envelope
from hub.ocpi.status import StatusCode

log = get_logger(__name__)


class BodyTooLarge(Exception):
    pass


class RequestContext:
    """Echo X-Request-ID / X-Correlation-ID (made up when absent), cap request bodies, and
    turn any unexpected error into HTTP 500 with status 3000 while the log gets the trace."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = correlation_id = ""
        content_length = -1
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"x-correlation-id":
                correlation_id = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                content_length = int(value)
        request_id = request_id or headers.new_message_id()
        correlation_id = correlation_id or headers.new_message_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["correlation_id"] = correlation_id
        clear_contextvars()
        bind_contextvars(request_id=request_id, correlation_id=correlation_id)
        id_headers = [
            (headers.REQUEST_ID.encode(), request_id.encode("latin-1")),
            (headers.CORRELATION_ID.encode(), correlation_id.encode("latin-1")),
        ]
        started = False
        status = 0
        began = time.perf_counter()

        async def send_with_ids(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                # No route sets these itself (the forwarder drops the receiver's).
                message["headers"] = [*message.get("headers", []), *id_headers]
            await send(message)

        if content_length > self.max_body_bytes:
            await self._too_large(send_with_ids)
            return

        received = 0

        async def receive_capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, receive_capped, send_with_ids)
        except BodyTooLarge:
            if not started:
                await self._too_large(send_with_ids)
        except Exception:
            log.exception("unhandled error", method=scope["method"], path=scope["path"])
            if not started:
                await _send_envelope(
                    send_with_ids, 500, StatusCode.SERVER_ERROR, "internal error in the hub"
                )
        if state.get("unlogged"):
            return
        log.info(
            "request",
            method=scope["method"],
            path=scope["path"],
            status=status,
            duration_ms=round((time.perf_counter() - began) * 1000, 2),
        )

    async def _too_large(self, send: Send) -> None:
        await _send_envelope(
            send,
            413,
            StatusCode.CLIENT_ERROR,
            f"request body larger than {self.max_body_bytes} bytes",
        )


async def _send_envelope(send: Send, http_status: int, code: int, message: str) -> None:
    body = encode_envelope(None, code, message)
    response_headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": http_status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})
