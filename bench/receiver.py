"""A log receiver for the generic API logger benchmarks (stdlib only, 127.0.0.1 only).

Any POST is a delivery: a JSON array (json_array), one JSON object (single) or NDJSON lines.  Records
are de-duplicated by their "id" (a retried batch must not count twice); records without one are
counted as they come.  With --fail-seconds N it answers 500 to every POST for N seconds from the first
POST (not from start-up: the client's own start-up time must not eat the outage).
GET /stats returns {"unique": ..., "received": ..., "posts": ..., "rejected_posts": ..., "last_at": ...}.

Prints "READY <port>" on stdout once listening.  Stops by itself after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

try:  # parse with orjson when the interpreter has it: the receiver must not be the bottleneck
    import orjson

    _loads = orjson.loads
except ImportError:  # stdlib fallback
    _loads = json.loads

ids: set[str] = set()
stats = {"unique": 0, "received": 0, "posts": 0, "rejected_posts": 0, "no_id": 0, "last_at": 0.0}


def records_of(body: bytes) -> list:
    try:
        obj = _loads(body)
        return obj if isinstance(obj, list) else [obj]
    except ValueError:
        out = []
        for line in body.splitlines():
            if line.strip():
                try:
                    out.append(_loads(line))
                except ValueError:
                    out.append(None)
        return out


def record_id(rec: object) -> str | None:
    if isinstance(rec, dict):
        for key in ("id", "litellm_call_id", "call_id", "request_id"):
            if rec.get(key):
                return str(rec[key])
    return None


def accept(body: bytes) -> None:
    stats["posts"] += 1
    for rec in records_of(body):
        stats["received"] += 1
        rid = record_id(rec)
        if rid is None:
            stats["no_id"] += 1
            stats["unique"] += 1
        elif rid not in ids:
            ids.add(rid)
            stats["unique"] += 1
    stats["last_at"] = time.time()


def reply(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


def make_handler(fail_seconds: float):
    fail_until: list[float] = []  # set at the first POST

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length, chunked = 0, False
                for line in lines[1:]:
                    low = line.lower()
                    if low.startswith("content-length:"):
                        length = int(line[15:].strip())
                    elif low.startswith("transfer-encoding:") and "chunked" in low:
                        chunked = True
                if chunked:
                    body = b""
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                        chunk = await reader.readexactly(size + 2)
                        if size == 0:
                            break
                        body += chunk[:-2]
                else:
                    body = await reader.readexactly(length) if length else b""
                if method == "GET" and path.startswith("/stats"):
                    writer.write(reply("200 OK", json.dumps(stats).encode()))
                elif method == "POST":
                    if not fail_until:
                        fail_until.append(time.monotonic() + fail_seconds)
                    if time.monotonic() < fail_until[0]:
                        stats["rejected_posts"] += 1
                        writer.write(reply("500 Internal Server Error", b'{"error":"warming up"}'))
                    else:
                        accept(body)
                        writer.write(reply("200 OK", b'{"ok":true}'))
                else:
                    writer.write(reply("404 Not Found", b"{}"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    return handle


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fail-seconds", type=float, default=0.0)
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args()
    handler = make_handler(args.fail_seconds)
    server = await asyncio.start_server(handler, "127.0.0.1", args.port, backlog=1024)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await asyncio.sleep(args.max_seconds)


if __name__ == "__main__":
    asyncio.run(main())
