"""URLs the hub forwards to and hands out: joining, origins, and the hub's own named routes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol
from urllib.parse import unquote

from yarl import URL

from hub.ocpi.envelope import OcpiError
from hub.ocpi.status import StatusCode

Origin = tuple[str, str, int | None]  # scheme, host, port


class HubUrls(Protocol):
    """The hub's public URL of a named route (``hub/web/urls.py``): one source for the route
    and every link, callback and endpoint URL built from it."""

    def __call__(self, name: str, /, **params: str) -> str: ...


def origin(url: str) -> Origin | None:
    """Scheme, host and port of ``url``; None when it cannot be read as a URL (a port out of
    range, a broken IPv6 literal, a host IDNA refuses): such a URL matches no platform."""
    try:
        parsed = URL(url)
        return (parsed.scheme.lower(), (parsed.host or "").lower(), parsed.port)
    except (ValueError, UnicodeError):
        return None


def origins(urls: Iterable[str]) -> frozenset[Origin]:
    return frozenset(o for o in (origin(u) for u in urls if u) if o is not None)


def raw_suffix(raw_path: str, decoded_suffix: str, depth: int = 5) -> str:
    """The path after /ocpi/2.3.0/{module}/{interface} exactly as the requester encoded it,
    to be forwarded as sent: its segments after the first ``depth``. Dot segments are
    refused: they would climb out of the receiver's endpoint (a URL library resolves them,
    even percent-encoded)."""
    # A dot segment, however encoded, leaves a '.' in the decoded path: no '.', no check.
    if "." in decoded_suffix and (
        any(s in (".", "..") for s in decoded_suffix.split("/"))
        or any(unquote(s) in (".", "..") for s in raw_path.split("/"))
    ):
        raise OcpiError(
            StatusCode.INVALID_PARAMETERS, "path segments '.' and '..' are not allowed", 400
        )
    parts = raw_path.split("/", depth)  # '', 'ocpi', '2.3.0', module, interface, rest
    return "/" + parts[depth] if len(parts) > depth else ""


def join_url(base: str, suffix: str, query: str = "") -> str:
    """The receiver's endpoint URL with the path after the hub's endpoint and the query.

    Platforms differ in trailing slashes; exactly one slash joins the two parts. ``suffix``
    has passed raw_suffix (no dot segments), so the URL stays below the endpoint.
    """
    url = base.rstrip("/") + "/" + suffix.lstrip("/") if suffix.strip("/") else base
    return f"{url}?{query}" if query else url
