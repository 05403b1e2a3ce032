"""The floor of the forwarding path: a bare ASGI app that forwards every POST to the upstream with aiohttp
(``--client httpx``: with an httpx.AsyncClient instead, to show what httpx's async pool costs).

No routing, no validation, no logging: it reads the request body, posts it to ``--upstream`` + the
request path over one pooled aiohttp session, and passes status, content type and body back (streamed
chunk by chunk, so server-sent events go through as they arrive).  It runs on uvicorn like
``lmgate serve`` (uvloop and httptools when installed).  Prints "READY <port>" once listening.
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

import aiohttp
import uvicorn

UPSTREAM = ""
CLIENT = "aiohttp"
_session: aiohttp.ClientSession | None = None
_httpx: Any = None


async def app(scope, receive, send) -> None:
    global _session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _session is not None:
                    await _session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    if CLIENT == "httpx":
        await forward_httpx(scope, body, headers, send)
        return
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
    async with _session.post(UPSTREAM + scope["path"], data=body, headers=headers) as upstream:
        ctype = upstream.headers.get("Content-Type", "application/json").encode()
        await send(
            {"type": "http.response.start", "status": upstream.status, "headers": [(b"content-type", ctype)]}
        )
        async for chunk in upstream.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def forward_httpx(scope, body: bytes, headers: dict[str, str], send) -> None:
    global _httpx
    import httpx

    if _httpx is None:
        _httpx = httpx.AsyncClient(limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200))
    request = _httpx.build_request("POST", UPSTREAM + scope["path"], content=body, headers=headers)
    upstream = await _httpx.send(request, stream=True)
    try:
        ctype = upstream.headers.get("content-type", "application/json").encode()
        await send(
            {
                "type": "http.response.start",
                "status": upstream.status_code,
                "headers": [(b"content-type", ctype)],
            }
        )
        async for chunk in upstream.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await upstream.aclose()


def main() -> None:
    global UPSTREAM, CLIENT
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8001 (the path is appended)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--client", choices=["aiohttp", "httpx"], default="aiohttp")
    args = ap.parse_args()
    UPSTREAM, CLIENT = args.upstream.rstrip("/"), args.client
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(f"READY {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", backlog=1024)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
