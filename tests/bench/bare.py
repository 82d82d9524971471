"""The floor a Python hop can reach: ``python -m tests.bench.bare PORT UPSTREAM``.

A starlette + aiohttp pass-through with no OCPI logic at all (no token look-up, no routing
headers, no checks), run by uvicorn with the same options as ``hub serve``. The hub's
throughput is reported against it to separate the hub's own cost from the cost of any hop.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

HOP_BY_HOP = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "date"}
UPSTREAM = sys.argv[2] if len(sys.argv) > 2 else ""
state: dict[str, aiohttp.ClientSession] = {}


async def forward(request: Request) -> Response:
    headers = {k: v for k, v in request.headers.items() if k not in HOP_BY_HOP}
    url = UPSTREAM + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    body = await request.body()
    async with state["http"].request(request.method, url, headers=headers, data=body or None) as r:
        content = await r.read()
        out = {k: v for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP}
        return Response(content, r.status, headers=out)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as http:
        state["http"] = http
        yield


app = Starlette(
    routes=[Route("/{path:path}", forward, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])],
    lifespan=lifespan,
)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
