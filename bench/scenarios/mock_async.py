"""Scenario `mock_async`: `acompletion(mock_response=...)` at concurrency 100.

Reports calls/s and CPU per call, with and without an async CustomLogger, and for the logger variant
the delay from a call's return to its success hook (each call gets a unique mock answer, which the
hook reads back from the response object to match the two timestamps).
"""

from __future__ import annotations

import asyncio
import time

from _common import (
    MESSAGES,
    MODEL,
    Skip,
    adrain,
    custom_logger_base,
    load_impl,
    median,
    metric,
    parse_args,
    pct,
    require,
    reset_callbacks,
    response_text,
    run_variants,
    skip_all,
    variants,
)

VARIANTS = ["no_callbacks", "custom_logger"]
CONCURRENCY = 100


def main() -> None:
    args = parse_args()
    # bounded by count and by time; the count is high enough that time is what ends the loop
    max_calls, max_s = (40000, 0.75) if args.quick else (300000, 4.0)
    chosen = variants(args.variant, VARIANTS)
    try:
        mod = load_impl(args.impl)
        require(mod, "acompletion")
    except Skip as exc:
        skip_all(args.impl, "mock_async", chosen, str(exc))
        return

    async def measure(variant: str) -> dict:
        reset_callbacks(mod)
        returned: dict[str, float] = {}
        hooked: dict[str, float] = {}
        counts = {"sync_hook": 0, "async_hook": 0}

        def on_hook(kind: str, response_obj) -> None:
            now = time.perf_counter()
            counts[kind] += 1
            key = response_text(response_obj)
            if key is not None:
                hooked.setdefault(key, now)

        if variant == "custom_logger":
            base = custom_logger_base(args.impl)

            class Timer(base):  # type: ignore[misc, valid-type]
                def log_success_event(self, kwargs, response_obj, start_time, end_time):
                    on_hook("sync_hook", response_obj)

                async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
                    on_hook("async_hook", response_obj)

            mod.callbacks = [Timer()]

        async def one(i: int) -> None:
            key = f"r{i}"
            await mod.acompletion(model=MODEL, messages=MESSAGES, mock_response=key)
            returned[key] = time.perf_counter()

        for i in range(20):  # warm-up: lazy imports, first-call setup
            await one(-1 - i)
        await adrain(mod, args.impl, settle=False)
        returned.clear()
        hooked.clear()
        counts.update(sync_hook=0, async_hook=0)

        next_id = iter(range(max_calls))
        cpu0, t0 = time.process_time(), time.perf_counter()
        deadline = t0 + max_s

        async def worker() -> None:
            for i in next_id:
                if time.perf_counter() > deadline:
                    break
                await one(i)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        wall = time.perf_counter() - t0
        n = len(returned)
        info = await adrain(mod, args.impl)
        cpu = time.process_time() - cpu0
        info.update(calls=n, wall_s=round(wall, 4), cpu_s=round(cpu, 4), **counts)
        if hasattr(mod, "callback_stats"):  # lmgate: calls whose parts the caller made (loop behind)
            info["prepared_by_caller"] = mod.callback_stats().get("prepared_by_caller")
        metrics = {
            "calls_per_s": metric(n / wall, "calls/s", "higher"),
            "cpu_us_per_call": metric(cpu / n * 1e6, "µs", "lower"),
        }
        if variant == "custom_logger":
            delays = [(hooked[k] - returned[k]) * 1000 for k in returned if k in hooked]
            metrics["hook_delay_p50_ms"] = metric(median(delays), "ms", "lower")
            metrics["hook_delay_p99_ms"] = metric(pct(delays, 99), "ms", "lower")
            metrics["hooks_missed"] = metric(n - len(delays), "calls", "lower", ratio=False)
        return {"metrics": metrics, "info": info}

    async def run_all() -> dict:
        results: dict = {}
        for v in chosen:
            try:
                results[v] = await measure(v)
            except Skip as exc:
                results[v] = {"skipped": str(exc)}
        return results

    results = asyncio.run(run_all())
    run_variants(args.impl, "mock_async", list(results), lambda v: results[v])


if __name__ == "__main__":
    main()
