"""HTTP header names OCPI uses (lower case, as ASGI delivers them), routing headers, and
message ids."""

import functools
import random

AUTHORIZATION = "authorization"
REQUEST_ID = "x-request-id"
CORRELATION_ID = "x-correlation-id"
TOTAL_COUNT = "x-total-count"
LIMIT = "x-limit"
LINK = "link"
LOCATION = "location"

TO_COUNTRY_CODE = "ocpi-to-country-code"
TO_PARTY_ID = "ocpi-to-party-id"
FROM_COUNTRY_CODE = "ocpi-from-country-code"
FROM_PARTY_ID = "ocpi-from-party-id"

ROUTING = (TO_COUNTRY_CODE, TO_PARTY_ID, FROM_COUNTRY_CODE, FROM_PARTY_ID)


# The variant's hex digit (RFC 9562: bits 10xx) for each random one.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_message_id() -> str:
    """A random (version 4) UUID as text, for X-Request-ID and X-Correlation-ID: laid out
    as str(uuid.uuid4()), without building a UUID object on every request.

    The bits come from ``random``, not the system's random source: a message id must be
    unique, not secret (it is no credential), and reading 16 bytes from the kernel was a
    system call on every routed request. ``random`` is seeded from the system's source and
    seeded again in a forked child, so processes do not repeat each other."""
    h = random.randbytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def routing_headers(sender: tuple[str, str], receiver: tuple[str, str]) -> dict[str, str]:
    """OCPI-from-* and OCPI-to-* of a message from ``sender`` to ``receiver`` (each a
    (country_code, party_id) pair)."""
    return {
        FROM_COUNTRY_CODE: sender[0],
        FROM_PARTY_ID: sender[1],
        TO_COUNTRY_CODE: receiver[0],
        TO_PARTY_ID: receiver[1],
    }


@functools.lru_cache(maxsize=4096)
def raw_routing_headers(
    sender: tuple[str, str], receiver: tuple[str, str]
) -> tuple[tuple[bytes, bytes], ...]:
    """``routing_headers`` as an answer's raw (ASGI) header pairs, kept for the next answer
    between the same two parties: every relayed answer carries them."""
    return tuple(
        (k.encode(), v.encode("latin-1")) for k, v in routing_headers(sender, receiver).items()
    )
