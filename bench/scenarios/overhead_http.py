"""Scenario `overhead_http`: latency the implementation adds over a raw httpx call.

Both talk to bench/fake_openai.py on 127.0.0.1.  Calls alternate raw / implementation so drift on the
machine hits both equally; the result is median(impl) - median(raw) per call.  The raw side parses the
JSON (or every SSE line) too, as any client must.

Variants gemini / gemini_stream: the same, sync, for a ``gemini/gemini-2.5-flash-lite`` call (the fake answers
Gemini's generateContent / streamGenerateContent too): what the Gemini translation adds over OpenAI's.
Variants vertex / vertex_stream: a ``vertex_ai/gemini-2.0-flash`` call with a service account (a key made
for the run) whose token the fake's ``/token`` issues; the token is fetched once, in the warm-up, so the
figure is the per-call cost of Vertex's URL, translation and cached bearer token. Both sides post to the
model's whole Vertex path (the form of api_base the reference takes too).

Variants bedrock / bedrock_stream: the same for a ``bedrock/anthropic.claude-3-7-sonnet-20250219-v1:0``
call (Converse / ConverseStream on the fake, AWS event-stream framing): what the Bedrock translation, the
SigV4 signature (botocore) and the event-stream decoding add. The raw side posts the same body unsigned
and decodes the stream with botocore's EventStreamBuffer, so signing counts as lmgate's overhead.

Variants sync_hook / async_hook: one call at a time with a CustomLogger whose success hook notes when
it runs; the metric is the time from the call's return to its success hook (0 when the hook ran
before the caller resumed). Unlike mock_async, the caller waits on real I/O here, as real calls do.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from _common import (
    MESSAGES,
    Skip,
    adrain,
    custom_logger_base,
    drain,
    exit_on_sigterm,
    load_impl,
    median,
    metric,
    parse_args,
    pct,
    require,
    reset_callbacks,
    run_variants,
    skip_all,
    start_helper,
    stop_helper,
    variants,
)

VARIANTS = [
    "sync",
    "sync_stream",
    "async",
    "async_stream",
    "sync_hook",
    "async_hook",
    "gemini",
    "gemini_stream",
    "bedrock",
    "bedrock_stream",
    "vertex",
    "vertex_stream",
]
WARMUP = 20


def bench_service_account(token_uri: str) -> str:
    """A service account's JSON with a fresh RSA key, its token exchanged at ``token_uri``."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError as exc:
        raise Skip(f"cryptography is not installed: {exc!r}") from exc
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return json.dumps({"type": "service_account", "project_id": "bench", "private_key_id": "bench",
                       "private_key": pem, "client_email": "bench@bench.iam.gserviceaccount.com",
                       "token_uri": token_uri})  # fmt: skip


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
        stream = variant in ("sync_stream", "gemini_stream", "bedrock_stream", "vertex_stream")
        client = httpx.Client()  # httpx defaults, as a plain user would have them
        call_url, call_headers, call_kw = url, headers, impl_kw
        body_for = raw_body
        if variant.startswith("gemini"):
            method = "streamGenerateContent?alt=sse" if stream else "generateContent"
            call_url = f"http://127.0.0.1:{port}/v1beta/models/gemini-2.5-flash-lite:{method}"
            call_headers = {"x-goog-api-key": "bench-key"}
            call_kw = {"model": "gemini/gemini-2.5-flash-lite", "messages": MESSAGES,
                       "api_base": f"http://127.0.0.1:{port}", "api_key": "bench-key"}  # fmt: skip

            def body_for(stream: bool) -> dict:
                return {"contents": [{"role": "user", "parts": [{"text": m["content"]}]} for m in MESSAGES]}

        parse_stream = parse_sse_lines
        if variant.startswith("bedrock"):
            model_id = "anthropic.claude-3-7-sonnet-20250219-v1:0"
            action = "converse-stream" if stream else "converse"
            call_url = f"http://127.0.0.1:{port}/model/{model_id.replace(':', '%3A')}/{action}"
            call_headers = {}
            call_kw = {"model": "bedrock/" + model_id, "messages": MESSAGES,
                       "aws_bedrock_runtime_endpoint": f"http://127.0.0.1:{port}", "aws_region_name": "us-east-1",
                       "aws_access_key_id": "AKIABENCH", "aws_secret_access_key": "bench-secret"}  # fmt: skip

            def body_for(stream: bool) -> dict:
                return {"messages": [{"role": "user", "content": [{"text": m["content"]}]} for m in MESSAGES]}

            # what a raw client must do: decode the frames, parse each payload
            def parse_stream(pieces) -> int:
                from botocore.eventstream import EventStreamBuffer

                buffer, n = EventStreamBuffer(), 0
                for piece in pieces:
                    buffer.add_data(piece)
                    for message in buffer:
                        json.loads(message.payload)
                        n += 1
                return n
        if variant.startswith("vertex"):
            model_path = f"http://127.0.0.1:{port}/v1/projects/bench/locations/us-central1/publishers/google/models/gemini-2.0-flash"
            method = "streamGenerateContent?alt=sse" if stream else "generateContent"
            call_url = f"{model_path}:{method}"
            call_headers = {"Authorization": "Bearer bench-token"}
            call_kw = {"model": "vertex_ai/gemini-2.0-flash", "messages": MESSAGES, "api_base": model_path,
                       "vertex_project": "bench", "vertex_location": "us-central1",
                       "vertex_credentials": bench_service_account(f"http://127.0.0.1:{port}/token")}  # fmt: skip

            def body_for(stream: bool) -> dict:
                return {"contents": [{"role": "user", "parts": [{"text": m["content"]}]} for m in MESSAGES]}

        def raw_call() -> None:
            if stream:
                with client.stream("POST", call_url, json=body_for(True), headers=call_headers) as r:
                    parse_stream(r.iter_bytes() if variant.startswith("bedrock") else r.iter_lines())
            else:
                client.post(call_url, json=body_for(False), headers=call_headers).json()

        def impl_call() -> None:
            resp = mod.completion(stream=stream, **call_kw)
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

    def hook_result(returned: dict[str, float], hooked: dict[str, float], drain_info: dict) -> dict:
        delays = [max(0.0, hooked[k] - returned[k]) for k in returned if k in hooked]
        if not delays:
            raise Skip("no success hook ran")
        return {
            "metrics": {
                "return_to_hook_p50_ms": metric(median(delays) * 1000, "ms", "lower"),
                "return_to_hook_p99_ms": metric(pct(delays, 99) * 1000, "ms", "lower"),
                "hooks_missed": metric(len(returned) - len(delays), "calls", "lower", ratio=False),
            },
            "info": {"calls": len(returned), **drain_info},
        }

    def stamping_logger(hooked: dict[str, float]) -> Any:
        base = custom_logger_base(args.impl)

        class Stamp(base):  # type: ignore[misc, valid-type]
            def log_success_event(self, kwargs, response_obj, start_time, end_time):
                hooked[kwargs["litellm_call_id"]] = time.perf_counter()

            async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
                hooked[kwargs["litellm_call_id"]] = time.perf_counter()

        return Stamp()

    def measure_hook_sync() -> dict:
        returned: dict[str, float] = {}
        hooked: dict[str, float] = {}
        reset_callbacks(mod)
        mod.callbacks = [stamping_logger(hooked)]
        deadline = time.perf_counter() + max_s
        for i in range(max_calls):
            if time.perf_counter() > deadline:
                break
            call_id = f"hook-{i}"
            mod.completion(litellm_call_id=call_id, **impl_kw)
            returned[call_id] = time.perf_counter()
        info = drain(mod, args.impl)
        reset_callbacks(mod)
        return hook_result(returned, hooked, info)

    async def measure_hook_async() -> dict:
        returned: dict[str, float] = {}
        hooked: dict[str, float] = {}
        reset_callbacks(mod)
        mod.callbacks = [stamping_logger(hooked)]
        deadline = time.perf_counter() + max_s
        for i in range(max_calls):
            if time.perf_counter() > deadline:
                break
            call_id = f"hook-{i}"
            await mod.acompletion(litellm_call_id=call_id, **impl_kw)
            returned[call_id] = time.perf_counter()
        info = await adrain(mod, args.impl)
        reset_callbacks(mod)
        return hook_result(returned, hooked, info)

    def measure(variant: str) -> dict:
        if variant == "sync_hook":
            return measure_hook_sync()
        if variant == "async_hook":
            return asyncio.run(measure_hook_async())
        if variant.startswith("async"):
            return asyncio.run(measure_async(variant))
        return measure_sync(variant)

    try:
        run_variants(args.impl, "overhead_http", chosen, measure)
    finally:
        stop_helper(server)


if __name__ == "__main__":
    main()
