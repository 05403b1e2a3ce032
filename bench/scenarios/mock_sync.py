"""Scenario `mock_sync`: sync `completion(mock_response=...)` calls/s and CPU per call.

CPU is time.process_time() (all threads of the process) from the first timed call until background
callback work has drained (see _common.drain), divided by the number of calls.
"""

from __future__ import annotations

import time

from _common import (
    MESSAGES,
    MOCK,
    MODEL,
    Skip,
    custom_logger_base,
    drain,
    load_impl,
    metric,
    parse_args,
    require,
    reset_callbacks,
    run_variants,
    skip_all,
    variants,
)

# Order matters only in --quick mode, where all variants share one process: LiteLLM keeps some
# callback state across resets, and in this order every variant's hooks still fire (checked below).
# logger_and_fn: one CustomLogger and one success function at once (issue 3's measure)
# cache_hit: the same call again and again with a local in-memory cache (every timed call is a hit)
# batch_logger: lmgate's built-in batch logger (the inline `take` path: the payload encoded on the
# caller's path, queued for a delivery thread) with an exporter that only counts (lmgate only: the
# reference has no batch logger whose delivery can be kept in memory without growing unbounded)
VARIANTS = [
    "no_callbacks",
    "stream",
    "success_fn",
    "custom_logger",
    "logger_and_fn",
    "cache_hit",
    "batch_logger",
]
WARMUP = 20


def main() -> None:
    args = parse_args()
    # bounded by count and by time; the count is high enough that time is what ends the loop
    max_calls, max_s = (30000, 0.4) if args.quick else (300000, 3.0)
    chosen = variants(args.variant, VARIANTS)
    try:
        mod = load_impl(args.impl)
        require(mod, "completion")
    except Skip as exc:
        skip_all(args.impl, "mock_sync", chosen, str(exc))
        return

    current = {"variant": ""}
    stale = {"stale_hook": 0}

    def measure(variant: str) -> dict:
        reset_callbacks(mod)
        counts = {"sync_hook": 0, "async_hook": 0, "fn_hook": 0}
        current["variant"] = variant

        def count(key: str) -> None:
            # a hook left over from an earlier variant in the same process would skew CPU: flag it
            if current["variant"] == variant:
                counts[key] += 1
            else:
                stale["stale_hook"] += 1

        if variant in ("custom_logger", "logger_and_fn"):
            base = custom_logger_base(args.impl)

            class Counter(base):  # type: ignore[misc, valid-type]
                def log_success_event(self, kwargs, response_obj, start_time, end_time):
                    count("sync_hook")

                async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
                    count("async_hook")

            mod.callbacks = [Counter()]
            if variant == "logger_and_fn":

                def on_success_too(kwargs, response_obj, start_time, end_time):
                    count("fn_hook")

                mod.success_callback = [on_success_too]
        elif variant == "success_fn":

            def on_success(kwargs, response_obj, start_time, end_time):
                count("sync_hook")

            mod.success_callback = [on_success]
        elif variant == "batch_logger":
            if args.impl != "lmgate":
                raise Skip("lmgate's BatchLogger only")
            from lmgate.loggers import BatchLogger
            from lmgate.loggers.exporter import DELIVERED

            class CountingExporter:
                """Ships nowhere: counts what was delivered (as the hooks are counted)."""

                def export(self, batch):
                    counts["sync_hook"] += len(batch.records) if current["variant"] == variant else 0
                    return DELIVERED

                def close(self):
                    pass

            batch_logger = BatchLogger(CountingExporter(), name="bench-mock-sync", spool="off")
            mod.callbacks = [batch_logger]

        stream = variant == "stream"
        extra: dict = {}
        if variant == "cache_hit":
            mod.cache = mod.Cache(type="local")
            extra = {"caching": True}

        def call() -> None:
            resp = mod.completion(model=MODEL, messages=MESSAGES, mock_response=MOCK, stream=stream, **extra)
            if stream:
                for _chunk in resp:
                    pass

        for _ in range(WARMUP):  # first calls pay lazy imports; we measure the steady state
            call()
        drain(mod, args.impl, settle=False)
        counts.update(sync_hook=0, async_hook=0, fn_hook=0)
        stale["stale_hook"] = 0

        cpu0, t0 = time.process_time(), time.perf_counter()
        deadline = t0 + max_s
        n = 0
        while n < max_calls and time.perf_counter() < deadline:
            call()
            n += 1
        wall = time.perf_counter() - t0
        info = drain(mod, args.impl)
        if variant == "batch_logger":
            batch_logger.flush(30)  # its records are delivered on its own threads: counted CPU too
        cpu = time.process_time() - cpu0
        info.update(calls=n, wall_s=round(wall, 4), cpu_s=round(cpu, 4), **counts, **stale)
        metrics = {
            "calls_per_s": metric(n / wall, "calls/s", "higher"),
            "cpu_us_per_call": metric(cpu / n * 1e6, "µs", "lower"),
        }
        if variant in ("custom_logger", "success_fn", "batch_logger"):
            # a hook that never ran is a lost log line, not a speed-up
            metrics["hooks_missed"] = metric(n - max(counts.values()), "calls", "lower", ratio=False)
        elif variant == "logger_and_fn":
            logger_hooks = max(counts["sync_hook"], counts["async_hook"])
            missed = (n - logger_hooks) + (n - counts["fn_hook"])
            metrics["hooks_missed"] = metric(missed, "calls", "lower", ratio=False)
        if variant == "batch_logger":
            batch_logger.close(5)
        return {"metrics": metrics, "info": info}

    run_variants(args.impl, "mock_sync", chosen, measure)


if __name__ == "__main__":
    main()
