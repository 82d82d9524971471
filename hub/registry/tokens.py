"""Credentials tokens: generated with enough entropy, stored only as hashes."""

from __future__ import annotations

import hashlib
import secrets


def new_token() -> str:
    """32 random bytes as URL-safe base64: 43 printable ASCII characters (U+0021-U+007E)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
