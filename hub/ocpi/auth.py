"""The ``Authorization: Token ...`` header (transport_and_format, "Authorization header").

OCPI 2.2-d2 and later send base64(utf8(token)); many 2.1.1/2.2 peers send the raw token.
Both are accepted on input; the hub writes base64 unless a platform is set to raw.
"""

from __future__ import annotations

import base64
import binascii

SCHEME = "Token"


def authorization_header(token: str, raw: bool = False) -> str:
    if raw:
        return f"{SCHEME} {token}"
    return f"{SCHEME} {base64.b64encode(token.encode()).decode('ascii')}"


def token_candidates(header: str | None) -> tuple[str, ...]:
    """The credentials tokens a header may carry: the base64-decoded form first, then raw."""
    if not header:
        return ()
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != SCHEME.lower() or not value:
        return ()
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return (value,)
    decoded = decoded.strip()  # some encoders add a newline (`echo token | base64`)
    if decoded and decoded.isprintable() and decoded != value:
        return (decoded, value)
    return (value,)
