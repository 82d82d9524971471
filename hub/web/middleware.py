"""The outermost layer of every request: message ids, body size, and no tracebacks out.

A pure ASGI middleware (no per-request task or body buffering), since every routed request
passes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.logs import get_logger, serving_request
from hub.ocpi import headers
from hub.ocpi.envelope import encode_envelope
from hub.ocpi.pagination import whole_number
from hub.ocpi.status import StatusCode
from hub.registry.traffic import CURRENT, Exchange, elapsed_ms

log = get_logger(__name__)
_admin_error = msgspec.json.Encoder()
_REQUEST_ID = headers.REQUEST_ID.encode()
_CORRELATION_ID = headers.CORRELATION_ID.encode()


class BodyTooLarge(Exception):
    pass


class RequestContext:
    """Echo X-Request-ID / X-Correlation-ID (made up when absent), cap request bodies, and
    turn any unexpected error into HTTP 500 with status 3000 while the log gets the trace."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, drain_seconds: float = 10.0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # What is left of a body the answer did not need is read and dropped before the
        # answer ends, up to this much: see _drain.
        self.drain_bytes = max(4 * max_body_bytes, 16 * 1024 * 1024)
        self.drain_seconds = drain_seconds
        # The access line at INFO: the level is set before the app is made (hub/cli.py).
        self.log_requests = log.is_enabled_for(logging.INFO)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Decoded once, for every layer after this one (``request_headers``).
        incoming = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        content_length = -1
        declared = incoming.get("content-length", "")
        if declared.isascii() and declared.isdigit():
            length = whole_number(declared)  # None: more digits than any body we take
            content_length = self.max_body_bytes + 1 if length is None else length
        coding = incoming.get("content-encoding", "").strip().lower()
        chunked = "transfer-encoding" in incoming
        if chunked:
            content_length = max(content_length, 1)  # a body of unknown length
        request_id = incoming.get(headers.REQUEST_ID) or headers.new_message_id()
        correlation_id = incoming.get(headers.CORRELATION_ID) or headers.new_message_id()
        state = scope.setdefault("state", {})
        state["headers"] = incoming
        state["request_id"] = request_id
        state["correlation_id"] = correlation_id
        # uvicorn can run the next request on a connection in this one's context (when it
        # paused reading): each request begins a log context of its own.
        serving_request(request_id=request_id, correlation_id=correlation_id)
        path: str = scope["path"]
        hop = None
        if path.startswith("/ocpi/"):
            hop = Exchange(
                at=time.time(),
                direction="in",
                method=scope["method"],
                path=path,
                request_id=request_id,
                correlation_id=correlation_id,
            )
        CURRENT.set(hop)
        id_headers = [
            (_REQUEST_ID, request_id.encode("latin-1")),
            (_CORRELATION_ID, correlation_id.encode("latin-1")),
        ]
        started = False
        status = 0
        began = time.perf_counter()
        body_read = content_length <= 0  # no body, or the app has read all of it

        async def send_with_ids(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                # No route sets these itself (the forwarder drops the receiver's).
                message["headers"] = [*message.get("headers", []), *id_headers]
            elif not body_read and not message.get("more_body", False):
                await self._drain(receive)
            await send(message)

        admin = path.startswith("/admin")  # plain JSON errors there, no envelope
        if content_length > self.max_body_bytes:
            await self._too_large(send_with_ids, admin)
            return
        if coding not in ("", "identity") and (content_length > 0 or chunked):
            # The hub reads request bodies as sent (JSON checks, response_url) and forwards
            # them byte for byte: a compressed one could pass neither, and a body merely
            # labelled so would reach the receiver with a coding it does not have.
            await _send_error(
                send_with_ids,
                admin,
                415,
                StatusCode.CLIENT_ERROR,
                f"request bodies are taken uncompressed, not Content-Encoding {coding}",
                [(b"accept-encoding", b"identity")],
            )
            return

        received = 0

        async def receive_capped() -> Message:
            nonlocal received, body_read
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_read = not message.get("more_body", False)
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            else:
                body_read = True  # disconnected: nothing left to read
            return message

        try:
            await self.app(scope, receive_capped, send_with_ids)
        except BodyTooLarge:
            if not started:
                await self._too_large(send_with_ids, admin)
        except Exception:
            log.exception("unhandled error", method=scope["method"], path=scope["path"])
            if not started:
                await _send_error(
                    send_with_ids, admin, 500, StatusCode.SERVER_ERROR, "internal error in the hub"
                )
        if state.get("unlogged"):
            return
        duration_ms = elapsed_ms(began)
        if hop is not None:
            hop.http_status = status
            hop.latency_ms = duration_ms
            scope["app"].runtime.traffic.record(hop)
        if self.log_requests:
            log.info(
                "request", method=scope["method"], path=path, status=status, duration_ms=duration_ms
            )

    async def _drain(self, receive: Receive) -> None:
        """Read and drop the rest of a request body the answer did not need (401, 404, 405,
        413 come before it is read), bounded in bytes and time, before the answer ends.

        A client that writes its whole body before reading would otherwise meet a socket
        the server closed with its data unread: the kernel answers that with a reset, and
        the client loses the answer it was about to read.
        """
        taken = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.drain_seconds):
                while taken <= self.drain_bytes:
                    message = await receive()
                    if message["type"] != "http.request":
                        return
                    taken += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        return

    async def _too_large(self, send: Send, admin: bool) -> None:
        await _send_error(
            send,
            admin,
            413,
            StatusCode.CLIENT_ERROR,
            f"request body larger than {self.max_body_bytes} bytes",
        )


async def _send_error(
    send: Send,
    admin: bool,
    http_status: int,
    code: int,
    message: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """An OCPI envelope, or the admin API's ``{"error": ...}`` under /admin."""
    body = (
        _admin_error.encode({"error": message}) if admin else encode_envelope(None, code, message)
    )
    hop = CURRENT.get()
    if hop is not None:
        hop.ocpi_status = code
    response_headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": http_status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})
