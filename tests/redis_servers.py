"""Debian's redis-server on loopback as a three-master Redis Cluster, or as a master, a
replica and three sentinels: for the suites that run the hub against them.

``python -m tests.redis_servers cluster DIR`` starts a cluster, prints its first node's URL
and writes the servers' process ids to DIR/pids; ``python -m tests.redis_servers stop DIR``
stops them by those ids.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis


def free_ports(count: int) -> list[int]:
    """Ports free on loopback, each with its cluster bus port (10,000 higher) free too."""
    found: list[int] = []
    for port in random.sample(range(20000, 55000), 2000):
        if len(found) == count:
            break
        if all(_free(p) for p in (port, port + 10000)):
            found.append(port)
    return found


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def redis_server() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server is not installed: apt-get install redis-server")
    return found


class Servers:
    """Redis processes started here, stopped by their process ids."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, port: int, *options: str, sentinel: bool = False) -> int:
        folder = self.folder / str(port)
        folder.mkdir(exist_ok=True)
        config = folder / ("sentinel.conf" if sentinel else "redis.conf")
        lines = [f"port {port}", "bind 127.0.0.1", f"dir {folder}", *options]
        if not sentinel:
            lines += ['save ""', "appendonly no", "repl-diskless-sync-delay 0"]
        config.write_text("\n".join(lines) + "\n")
        command = [redis_server(), str(config), *(["--sentinel"] if sentinel else [])]
        log = (folder / "log").open("ab")
        self.processes.append(subprocess.Popen(command, stdout=log, stderr=log))
        with (self.folder / "pids").open("a") as pids:
            pids.write(f"{self.processes[-1].pid}\n")
        _wait_for(lambda: redis.Redis(port=port).ping())
        return self.processes[-1].pid

    def stop(self) -> None:
        stop(self.folder)


def stop(folder: Path) -> None:
    pids = folder / "pids"
    if not pids.exists():
        return
    for line in pids.read_text().split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line), signal.SIGKILL)
    pids.unlink()


def _wait_for(ready, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while True:
        try:
            if ready():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("redis did not come up in time")
        time.sleep(0.05)


def cluster(folder: Path, masters: int = 3) -> tuple[Servers, str]:
    """A Redis Cluster of ``masters`` masters, no replicas; the URL of its first node."""
    servers = Servers(folder)
    try:
        return servers, _cluster(servers, free_ports(masters))
    except BaseException:
        servers.stop()
        raise


def _cluster(servers: Servers, ports: list[int]) -> str:
    for port in ports:
        servers.start(
            port,
            "cluster-enabled yes",
            f"cluster-config-file nodes-{port}.conf",
            "cluster-node-timeout 5000",
        )
    nodes = [f"127.0.0.1:{port}" for port in ports]
    subprocess.run(
        ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        capture_output=True,
    )

    def healthy() -> bool:
        return all(
            redis.Redis(port=port).cluster("info")["cluster_state"] == "ok" for port in ports
        )

    _wait_for(healthy)
    return f"redis://127.0.0.1:{ports[0]}"


def sentinel(folder: Path, service: str = "hub") -> tuple[Servers, str, list[int]]:
    """A master, one replica and three sentinels; the hub's URL for them and their ports."""
    servers = Servers(folder)
    try:
        return servers, *_sentinel(servers, service, *free_ports(5))
    except BaseException:
        servers.stop()
        raise


def _sentinel(
    servers: Servers, service: str, master: int, replica: int, *watchers: int
) -> tuple[str, list[int]]:
    servers.start(master)
    servers.start(replica, f"replicaof 127.0.0.1 {master}")
    _wait_for(lambda: redis.Redis(port=replica).info("replication")["master_link_status"] == "up")
    for port in watchers:
        servers.start(
            port,
            f"sentinel monitor {service} 127.0.0.1 {master} 2",
            f"sentinel down-after-milliseconds {service} 1000",
            f"sentinel failover-timeout {service} 5000",
            sentinel=True,
        )
    hosts = ",".join(f"127.0.0.1:{port}" for port in watchers)
    return f"redis+sentinel://{hosts}/{service}", [master, replica, *watchers]


if __name__ == "__main__":
    kind, where = sys.argv[1], Path(sys.argv[2])
    if kind == "cluster":
        print(cluster(where)[1])
    elif kind == "stop":
        stop(where)
    else:
        raise SystemExit(f"usage: {sys.argv[0]} cluster|stop DIR")
