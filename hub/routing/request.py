"""One functional-module request as routing sees it, and the answers routing gives.

The web edge builds a ``RoutedRequest`` once from the HTTP request; every scenario, the
forwarder and the relays take that value, not the framework's request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import msgspec

from hub.ocpi.models import VERSION, InterfaceRole
from hub.registry.records import Platform
from hub.routing.modules import ModuleFacts


class RoutedRequest(msgspec.Struct, frozen=True):
    facts: ModuleFacts
    interface: InterfaceRole
    method: str
    platform: Platform  # the requester's platform, authenticated
    sender: tuple[str, str]  # OCPI-from, a party of ``platform``
    receiver: tuple[str, str] | None  # OCPI-to, None for open routing
    suffix: str  # the path after /{module}/{interface}, decoded: for decisions
    raw_suffix: str  # the same as the requester encoded it: forwarded
    query: str
    body: bytes
    headers: Mapping[str, str]  # as received, lower-case names
    correlation_id: str
    version: str = VERSION  # the OCPI version the requester spoke (its route tree)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


class HubAnswer(NamedTuple):
    """An answer the hub gives itself (not relayed from a receiver): a JSON body."""

    body: bytes
    headers: Mapping[str, str]
    status: int = 200
    ocpi_status: int = 1000  # the body's status_code
