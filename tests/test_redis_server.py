"""The embedded Redis-compatible server: found, started, persistent, never orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from hub.redis_server import EmbeddedRedis, RedisServerError, find_server_binary


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is gone for our purpose
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def _wait_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_start_answers_ping_and_stop_leaves_no_process(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    assert server.process is not None
    pid = server.process.pid
    assert redis.Redis.from_url(url).ping()
    server.stop()
    assert _wait_gone(pid)


def test_data_survives_restart_on_same_data_dir(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as url:
        redis.Redis.from_url(url).set("kept", "yes")
    with EmbeddedRedis(tmp_path) as url:
        assert redis.Redis.from_url(url).get("kept") == b"yes"
    assert any(tmp_path.glob("appendonly*")), "AOF persistence is on"


def test_second_server_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path), pytest.raises(RedisServerError, match="in use"):
        EmbeddedRedis(tmp_path).start()


def test_server_dies_with_its_parent(tmp_path: Path) -> None:
    """A hub killed with SIGKILL cannot stop its server: the kernel must (PR_SET_PDEATHSIG)."""
    script = (
        "import sys, time\n"
        "from hub.redis_server import EmbeddedRedis\n"
        f"s = EmbeddedRedis({str(tmp_path)!r}); s.start()\n"
        "print('PID', s.process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    line = parent.stdout.readline()
    while not line.startswith("PID "):
        line = parent.stdout.readline()
    child_pid = int(line.split()[1])
    assert _alive(child_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _wait_gone(child_pid), "embedded redis outlived a killed hub"


def test_binary_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RedisServerError, match="HUB_REDIS_SERVER_BIN"):
        find_server_binary(str(tmp_path / "missing"))
    wheel_binary = find_server_binary()
    assert os.access(wheel_binary, os.X_OK)
    assert find_server_binary(wheel_binary) == wheel_binary


def test_long_data_dir_falls_back_to_loopback_tcp(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with EmbeddedRedis(deep) as url:
        assert url.startswith("redis://127.0.0.1:")
        assert redis.Redis.from_url(url).ping()
