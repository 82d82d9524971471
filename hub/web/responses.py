"""Starlette responses of every kind the hub gives: OCPI envelopes, admin JSON, the hub's own
answers, and a receiver's answer streamed back."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from hub.logs import get_logger
from hub.ocpi.envelope import OcpiError, encode_envelope
from hub.ocpi.status import StatusCode
from hub.registry.traffic import CURRENT
from hub.routing.forwarder import Relayed
from hub.routing.request import HubAnswer

log = get_logger(__name__)
JSON = "application/json"
_encoder = msgspec.json.Encoder()


def ocpi_response(
    data: Any = None,
    status_code: int = StatusCode.SUCCESS,
    status_message: str | None = None,
    http_status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    _answered(status_code)
    return Response(
        encode_envelope(data, status_code, status_message),
        status_code=http_status,
        headers=headers,
        media_type=JSON,
    )


def error_response(error: OcpiError) -> Response:
    return ocpi_response(
        None, error.status_code, error.message, error.http_status, headers=error.headers
    )


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """The admin API's plain JSON (not an OCPI envelope)."""
    return Response(_encoder.encode(data), status_code=status, headers=headers, media_type=JSON)


def answer_response(answer: Relayed | HubAnswer) -> Response:
    _answered(answer.ocpi_status)
    if isinstance(answer, HubAnswer):
        return Response(answer.body, answer.status, answer.headers, media_type=JSON)
    return RelayedResponse(answer)


def _answered(status_code: int | None) -> None:
    """The OCPI status of the answer, for the traffic log's record of the request."""
    hop = CURRENT.get()
    if hop is not None:
        hop.ocpi_status = status_code


class RelayedResponse(Response):
    """The receiver's answer as it came: a small body at once, a large one chunk by chunk
    (memory stays flat); headers are already raw. A requester that stops reading gets
    ``timeout`` seconds per chunk, then the connection closes and the platform's slot is
    free again; a receiver that breaks off mid-stream, or gives no piece for ``timeout``
    seconds, closes the requester's connection the same way (one warning in the log, no
    error)."""

    def __init__(self, relayed: Relayed) -> None:
        self.status_code = relayed.status
        self.raw_headers = relayed.headers
        self.relayed = relayed
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relayed = self.relayed
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        upstream = relayed.upstream
        if upstream is None:
            await send({"type": "http.response.body", "body": relayed.first})
            return
        try:
            if relayed.first:
                await self._send(send, relayed.first)
            while chunk := await upstream.chunk(relayed.timeout):
                await self._send(send, chunk)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The status is out already: ending here leaves the answer incomplete, so the
            # server closes the connection and the requester cannot mistake it for whole.
            log.warning("streaming stopped: a side broke off or stopped reading", error=str(exc))
        finally:
            upstream.release()

    async def _send(self, send: Send, chunk: bytes) -> None:
        message = {"type": "http.response.body", "body": chunk, "more_body": True}
        async with asyncio.timeout(self.relayed.timeout):
            await send(message)
