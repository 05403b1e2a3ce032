"""A tiny, fast OpenAI-compatible server for the benchmarks (stdlib only, 127.0.0.1 only).

POST /v1/chat/completions (and /chat/completions) answers a fixed chat completion, as JSON or, when the
request says "stream": true, as server-sent events.  HTTP/1.1 keep-alive; Content-Length framing
for JSON, chunked encoding (one chunk per event) for streams, as OpenAI sends them; bodies are built once
per model, so the server itself costs as little as possible and the same for every client.

Prints "READY <port>" on stdout once listening.  Stops by itself after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import time

CONTENT = "hello world from the fake server"


@functools.lru_cache(maxsize=64)  # the same few models every time: the upstream must not be the bottleneck
def completion_body(model: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": CONTENT},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
        }
    ).encode()


@functools.lru_cache(maxsize=64)
def sse_body(model: str) -> bytes:
    created = int(time.time())

    def chunk(delta: dict, finish: str | None, usage: dict | None = None) -> bytes:
        obj: dict = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            obj["usage"] = usage
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    words = CONTENT.split(" ")
    parts = [chunk({"role": "assistant", "content": ""}, None)]
    parts += [chunk({"content": (" " if i else "") + w}, None) for i, w in enumerate(words)]
    parts.append(chunk({}, "stop", {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


@functools.lru_cache(maxsize=64)
def sse_response(model: str) -> bytes:
    """The stream as OpenAI sends it: chunked transfer encoding, one chunk per event."""
    events = [e + b"\n\n" for e in sse_body(model).split(b"\n\n") if e]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    return head + chunks


def response(status: str, ctype: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line[:15].lower() == "content-length:":
                    length = int(line[15:].strip())
            body = await reader.readexactly(length) if length else b""
            path = path.split("?", 1)[0]
            if method == "POST" and path.endswith("/chat/completions"):
                try:
                    req = json.loads(body or b"{}")
                except ValueError:
                    req = {}
                model = str(req.get("model", "gpt-4o-mini"))
                if req.get("stream"):
                    writer.write(sse_response(model))
                else:
                    writer.write(response("200 OK", "application/json", completion_body(model)))
            elif method == "GET" and path in ("/health", "/v1/models"):
                writer.write(response("200 OK", "application/json", b'{"ok":true}'))
            else:
                writer.write(response("404 Not Found", "application/json", b'{"error":"not found"}'))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args()
    server = await asyncio.start_server(handle, "127.0.0.1", args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    async with server:
        # bounded: a forgotten server goes away by itself
        await asyncio.sleep(args.max_seconds)


if __name__ == "__main__":
    try:  # uvloop when installed (lmgate's proxy extra): ~2x the requests/s of asyncio's own loop
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
