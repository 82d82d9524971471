"""HTTP/1.1 written by hand over a socket: any bytes in the method, target and headers.

aiohttp and urllib refuse (or re-encode) header values with control characters or non-ASCII
bytes; bad input tests and the fuzzer need to send exactly such requests and read exactly
what the hub answers. One request per connection, read to the end of one answer.
"""

from __future__ import annotations

import contextlib
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Header = tuple[bytes | str, bytes | str]


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


@dataclass
class RawAnswer:
    status: int
    headers: list[tuple[bytes, bytes]]  # names lower-case
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        found = [v for k, v in self.headers if k == wanted]
        return found[-1].decode("latin-1") if found else None

    def json(self) -> Any:
        return json.loads(self.body)

    def envelope(self) -> dict[str, Any] | None:
        """The answer as an OCPI envelope, None if it is not one."""
        try:
            document = json.loads(self.body)
        except (ValueError, RecursionError):
            return None
        if isinstance(document, dict) and isinstance(document.get("status_code"), int):
            return document
        return None


class NoAnswer(Exception):
    """The connection closed or timed out before a whole answer arrived."""


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._more():
                raise NoAnswer(f"closed before {marker!r}; got {self.buffer[:200]!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._more():
                raise NoAnswer(f"closed after {len(self.buffer)} of {count} body bytes")
        out, self.buffer = self.buffer[:count], self.buffer[count:]
        return out

    def rest(self) -> bytes:
        while self._more():
            pass
        out, self.buffer = self.buffer, b""
        return out


def _read_answer(reader: _Reader, method: bytes) -> RawAnswer:
    while True:
        head = reader.until(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise NoAnswer(f"not an HTTP answer: {status_line[:200]!r}")
        status = int(parts[1])
        headers = []
        for line in lines:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        if 100 <= status < 200:  # 100 Continue: the real answer follows
            continue
        break
    fields = dict(headers)
    if method == b"HEAD" or status in (204, 304):
        body = b""
    elif b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        body = b""
        while True:
            size = int(reader.until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                reader.until(b"\r\n")  # no trailers from the hub
                break
            body += reader.exactly(size)
            reader.exactly(2)
    elif b"content-length" in fields:
        body = reader.exactly(int(fields[b"content-length"]))
    else:
        body = reader.rest()
    return RawAnswer(status, headers, body)


def raw_request(
    base_url: str,
    method: bytes | str,
    target: bytes | str,
    headers: list[Header] | tuple[Header, ...] = (),
    body: bytes = b"",
    timeout: float = 15.0,
) -> RawAnswer:
    """Send one request to ``base_url`` (http://host:port) exactly as given and read the
    answer. Content-Length is added for a body (and for POST/PUT/PATCH) unless the headers
    frame it; Host unless given."""
    parsed = urlsplit(base_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    method_b, target_b = _bytes(method), _bytes(target)
    names = {_bytes(k).lower() for k, _ in headers}
    lines = [method_b + b" " + target_b + b" HTTP/1.1"]
    if b"host" not in names:
        lines.append(f"Host: {host}:{port}".encode())
    lines += [_bytes(k) + b": " + _bytes(v) for k, v in headers]
    framed = names & {b"content-length", b"transfer-encoding"}
    if not framed and (body or method_b in (b"POST", b"PUT", b"PATCH")):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    request = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        # Answered (and closed) before the whole body was sent: read what came.
        with contextlib.suppress(OSError):
            sock.sendall(request)
        try:
            return _read_answer(_Reader(sock), method_b.upper())
        except (OSError, ValueError) as exc:
            raise NoAnswer(f"{type(exc).__name__}: {exc}") from None
