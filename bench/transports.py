#!/usr/bin/env python3
"""Which async HTTP transport should carry lmgate's provider calls and log deliveries? (issue 18)

    python bench/transports.py               # every transport, both loops, 3 fresh processes each
    python bench/transports.py --quick       # 1 process each, shorter loops

Each transport runs in a fresh process against bench/fake_openai.py and does what lmgate's async
path does per call (build the request, send it streamed, read the body, close; or decode the SSE
stream with httpx-sse): N calls at concurrency 50, then calls one at a time.  Reported: process CPU
per call (``time.process_time``, the client process only) and p50 latency; medians over processes.

Transports: ``httpx`` (lmgate's pool before issue 18: httpx.AsyncClient, limits 1000/200),
``httpx_tuned`` (the same without environment lookups: trust_env=False), ``httpx_aiohttp`` (the
httpx-aiohttp package's transport, as the OpenAI SDK's DefaultAioHttpClient), ``lmgate`` (what
``lmgate._http.async_client()`` builds: httpx over lmgate's aiohttp transport), ``lmgate_wire`` (what
lmgate's own async calls use: ``_http.async_wire().send``, httpx-sse over its response) and
``aiohttp`` (a bare aiohttp ClientSession, the floor).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TRANSPORTS = ["httpx", "httpx_tuned", "httpx_aiohttp", "lmgate", "lmgate_wire", "aiohttp"]
LOOPS = ["asyncio", "uvloop"]
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
SBODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
).encode()
HEADERS = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}


def make_client(name: str):
    import httpx

    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    if name == "httpx":
        return httpx.AsyncClient(limits=limits)
    if name == "httpx_tuned":
        return httpx.AsyncClient(limits=limits, trust_env=False)
    if name == "httpx_aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return httpx.AsyncClient(transport=AiohttpTransport(limits=limits))
    if name == "lmgate":
        from lmgate import _http

        return _http.async_client()
    raise ValueError(name)


async def one_httpx(client, url: str, stream: bool) -> None:
    from httpx_sse import EventSource

    request = client.build_request("POST", url, headers=HEADERS, content=SBODY if stream else BODY)
    response = await client.send(request, stream=True)
    try:
        if stream:
            async for sse in EventSource(response).aiter_sse():
                if sse.data != "[DONE]":
                    json.loads(sse.data)
        else:
            json.loads(await response.aread())
    finally:
        await response.aclose()


async def one_wire(wire, url: str, stream: bool) -> None:
    from httpx_sse import EventSource

    from lmgate import _http

    response = await wire.send("POST", url, HEADERS, SBODY if stream else BODY, None, _http.timeout(None))
    try:
        if stream:
            async for sse in EventSource(response).aiter_sse():
                if sse.data != "[DONE]":
                    json.loads(sse.data)
        else:
            json.loads(await response.aread())
    finally:
        await response.aclose()


async def one_aiohttp(session, url: str, stream: bool) -> None:
    async with session.post(url, data=SBODY if stream else BODY, headers=HEADERS) as response:
        if stream:
            async for line in response.content:
                if line.startswith(b"data: ") and line != b"data: [DONE]\n":
                    json.loads(line[6:])
        else:
            json.loads(await response.read())


async def worker(name: str, port: int, calls: int) -> dict:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    if name == "aiohttp":
        import aiohttp

        client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
        one = one_aiohttp
    elif name == "lmgate_wire":
        from lmgate import _http

        client = _http.async_wire()
        one = one_wire
    else:
        client = make_client(name)
        one = one_httpx
    out: dict = {}
    for stream in (False, True):
        for _ in range(50):  # warm: connections open, code paths hot
            await one(client, url, stream)
        # concurrency 50
        left = [calls]
        lat: list[float] = []

        async def task(stream: bool, lat: list[float], left: list[int]) -> None:
            while left[0] > 0:
                left[0] -= 1
                t0 = time.perf_counter()
                await one(client, url, stream)
                lat.append(time.perf_counter() - t0)

        c0, w0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(task(stream, lat, left) for _ in range(50)))
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        tag = "stream_" if stream else ""
        out[f"{tag}c50_cpu_ms"] = cpu / calls * 1000
        out[f"{tag}c50_rps"] = calls / wall
        out[f"{tag}c50_p50_ms"] = statistics.median(lat) * 1000
        lat = []
        c0 = time.process_time()
        n1 = calls // 5
        for _ in range(n1):
            t0 = time.perf_counter()
            await one(client, url, stream)
            lat.append(time.perf_counter() - t0)
        out[f"{tag}c1_cpu_ms"] = (time.process_time() - c0) / n1 * 1000
        out[f"{tag}c1_p50_ms"] = statistics.median(lat) * 1000
    if name == "aiohttp":
        await client.close()
    elif name not in ("lmgate", "lmgate_wire"):
        await client.aclose()
    return out


def child(name: str, loop: str, port: int, calls: int) -> None:
    if loop == "uvloop":
        import uvloop

        result = uvloop.run(worker(name, port, calls))
    else:
        result = asyncio.run(worker(name, port, calls))
    print(json.dumps(result), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=4, metavar=("TRANSPORT", "LOOP", "PORT", "CALLS"))
    ap.add_argument("--only", nargs="+", choices=TRANSPORTS)
    ap.add_argument("--loops", nargs="+", choices=LOOPS, default=LOOPS)
    args = ap.parse_args()
    if args.child:
        name, loop, port, calls = args.child
        child(name, loop, int(port), int(calls))
        return 0
    repeats, calls = (1, 1000) if args.quick else (3, 4000)
    fake = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "fake_openai.py"), "--max-seconds", "900"],
        stdout=subprocess.PIPE,
        text=True,
    )
    port = int(fake.stdout.readline().split()[1])
    results: dict = {}
    try:
        for _ in range(repeats):
            for loop in args.loops:
                for name in args.only or TRANSPORTS:
                    r = subprocess.run(
                        [sys.executable, __file__, "--child", name, loop, str(port), str(calls)],
                        capture_output=True,
                        text=True,
                        timeout=600,
                    )
                    if r.returncode != 0:
                        print(f"{name}/{loop} failed: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                        continue
                    results.setdefault((name, loop), []).append(json.loads(r.stdout.strip().splitlines()[-1]))
    finally:
        fake.terminate()
        fake.wait(5)
    keys = ["c50_cpu_ms", "c50_rps", "c50_p50_ms", "c1_cpu_ms", "c1_p50_ms"]
    keys += ["stream_" + k for k in keys]
    print("| transport / loop | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for (name, loop), runs in results.items():
        cells = [f"{statistics.median(r[k] for r in runs):.3g}" for k in keys]
        print(f"| {name} / {loop} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
