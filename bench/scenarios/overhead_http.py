"""Scenario `overhead_http`: latency the implementation adds over a raw httpx call.

Both talk to bench/fake_openai.py on 127.0.0.1.  Calls alternate raw / implementation so drift on the
machine hits both equally; the result is median(impl) - median(raw) per call.  The raw side parses the
JSON (or every SSE line) too, as any client must.
"""

from __future__ import annotations

import asyncio
import json
import time

from _common import (
    MESSAGES,
    Skip,
    exit_on_sigterm,
    load_impl,
    median,
    metric,
    parse_args,
    pct,
    require,
    run_variants,
    skip_all,
    start_helper,
    stop_helper,
    variants,
)

VARIANTS = ["sync", "sync_stream", "async", "async_stream"]
WARMUP = 20


def main() -> None:
    args = parse_args()
    exit_on_sigterm()
    max_calls, max_s = (1000, 0.5) if args.quick else (5000, 5.0)
    chosen = variants(args.variant, VARIANTS)
    try:
        mod = load_impl(args.impl)
        require(mod, "completion", "acompletion")
    except Skip as exc:
        skip_all(args.impl, "overhead_http", chosen, str(exc))
        return

    import httpx

    server, port = start_helper("fake_openai.py", "--max-seconds", "300")
    base = f"http://127.0.0.1:{port}/v1"
    url = f"{base}/chat/completions"
    headers = {"Authorization": "Bearer sk-bench"}
    impl_kw = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "api_base": base, "api_key": "sk-bench"}

    def raw_body(stream: bool) -> dict:
        return {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream}

    def parse_sse_lines(lines) -> int:
        n = 0
        for line in lines:
            if line.startswith("data: ") and line != "data: [DONE]":
                json.loads(line[6:])
                n += 1
        return n

    def result(variant: str, raw: list[float], impl: list[float]) -> dict:
        if not impl:
            raise Skip("no call completed")
        raw_ms, impl_ms = median(raw) * 1000, median(impl) * 1000
        return {
            "metrics": {
                "overhead_ms": metric(impl_ms - raw_ms, "ms", "lower"),
                "call_ms": metric(impl_ms, "ms", "lower"),
            },
            "info": {
                "calls": len(impl),
                "raw_httpx_ms": round(raw_ms, 4),
                "impl_p99_ms": round(pct(impl, 99) * 1000, 4),
                "raw_p99_ms": round(pct(raw, 99) * 1000, 4),
            },
        }

    def measure_sync(variant: str) -> dict:
        stream = variant == "sync_stream"
        client = httpx.Client()  # httpx defaults, as a plain user would have them

        def raw_call() -> None:
            if stream:
                with client.stream("POST", url, json=raw_body(True), headers=headers) as r:
                    parse_sse_lines(r.iter_lines())
            else:
                client.post(url, json=raw_body(False), headers=headers).json()

        def impl_call() -> None:
            resp = mod.completion(stream=stream, **impl_kw)
            if stream:
                for _ in resp:
                    pass

        raw, impl = [], []
        for i in range(WARMUP * 2 + max_calls * 2):
            if i == WARMUP * 2:
                deadline = time.perf_counter() + max_s
            if i > WARMUP * 2 and time.perf_counter() > deadline:
                break
            fn, sink = (raw_call, raw) if i % 2 == 0 else (impl_call, impl)
            t0 = time.perf_counter()
            fn()
            if i >= WARMUP * 2:
                sink.append(time.perf_counter() - t0)
        client.close()
        return result(variant, raw, impl)

    async def measure_async(variant: str) -> dict:
        stream = variant == "async_stream"
        client = httpx.AsyncClient()

        async def raw_call() -> None:
            if stream:
                async with client.stream("POST", url, json=raw_body(True), headers=headers) as r:
                    parse_sse_lines([line async for line in r.aiter_lines()])
            else:
                (await client.post(url, json=raw_body(False), headers=headers)).json()

        async def impl_call() -> None:
            resp = await mod.acompletion(stream=stream, **impl_kw)
            if stream:
                async for _ in resp:
                    pass

        raw, impl = [], []
        deadline = float("inf")
        for i in range(WARMUP * 2 + max_calls * 2):
            if i == WARMUP * 2:
                deadline = time.perf_counter() + max_s
            if time.perf_counter() > deadline:
                break
            fn, sink = (raw_call, raw) if i % 2 == 0 else (impl_call, impl)
            t0 = time.perf_counter()
            await fn()
            if i >= WARMUP * 2:
                sink.append(time.perf_counter() - t0)
        await client.aclose()
        return result(variant, raw, impl)

    def measure(variant: str) -> dict:
        if variant.startswith("async"):
            return asyncio.run(measure_async(variant))
        return measure_sync(variant)

    try:
        run_variants(args.impl, "overhead_http", chosen, measure)
    finally:
        stop_helper(server)


if __name__ == "__main__":
    main()
