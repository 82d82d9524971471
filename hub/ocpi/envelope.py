"""The OCPI response envelope and the error that becomes one."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from hub.ocpi.headers import routing_headers
from hub.ocpi.status import StatusCode


class Envelope(msgspec.Struct, kw_only=True, omit_defaults=True):
    """transport_and_format, "Response format": data, status_code, status_message, timestamp."""

    data: Any = None
    status_code: int
    status_message: str | None = None
    timestamp: datetime


class OcpiError(Exception):
    """Raised anywhere below a route; the app turns it into an envelope."""

    def __init__(
        self,
        status_code: int,
        message: str,
        http_status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.http_status = http_status
        self.headers = dict(headers or {})


_encoder = msgspec.json.Encoder()


def now() -> datetime:
    return datetime.now(UTC)


def encode_envelope(
    data: Any = None, status_code: int = StatusCode.SUCCESS, status_message: str | None = None
) -> bytes:
    return _encoder.encode(
        Envelope(
            data=data,
            status_code=int(status_code),
            status_message=status_message,
            timestamp=now(),
        )
    )


class answering:
    """An OcpiError raised inside is the hub's answer from ``sender`` to ``receiver``: it
    carries those routing headers (transport_and_format, "Message Routing"). A class, not a
    generator: every routed request enters two of these."""

    __slots__ = ("receiver", "sender")

    def __init__(self, sender: tuple[str, str], receiver: tuple[str, str]) -> None:
        self.sender = sender
        self.receiver = receiver

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, OcpiError):
            exc.headers = {**routing_headers(self.sender, self.receiver), **exc.headers}
