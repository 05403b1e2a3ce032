"""Helpers shared by every worker script.

A worker is one fresh process that measures one implementation (`--impl lmgate|litellm`) and prints
exactly one JSON line on stdout.  Both implementations run the very same worker code: lmgate mirrors
LiteLLM's API, so only the module name differs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from typing import Any

IMPLS = ("lmgate", "litellm")
# A fixed answer keeps the mock path identical on both sides.
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "hi"}]
MOCK = "hello world"


class Skip(Exception):
    """The feature under test is not there (yet) in this implementation."""


def reference_env() -> None:
    """Keep LiteLLM off the network and quiet: local price map, no telemetry, no debug banners."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    os.environ.setdefault("DISABLE_SCHEMA_UPDATE", "True")


def parse_args(extra: list[tuple[str, dict[str, Any]]] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=IMPLS, required=True)
    ap.add_argument("--variant", default="", help="comma-separated variants; empty = all")
    ap.add_argument("--quick", action="store_true", help="shorter loops")
    for flag, kw in extra or []:
        ap.add_argument(flag, **kw)
    return ap.parse_args()


def exit_on_sigterm() -> None:
    """Drivers that own servers: turn SIGTERM (run.py's time-out) into SystemExit so `finally` stops them.

    Never in a child whose SIGTERM behaviour is itself under test.
    """
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def load_impl(name: str) -> Any:
    """Import the implementation; lmgate being half-built is a skip, not a crash."""
    if name == "litellm":
        reference_env()
    try:
        mod = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - any import failure means "not ready"
        raise Skip(f"import {name} failed: {exc!r}") from exc
    if name == "litellm":
        mod.telemetry = False
        mod.suppress_debug_info = True
    return mod


def require(mod: Any, *attrs: str) -> None:
    missing = [a for a in attrs if not hasattr(mod, a)]
    if missing:
        raise Skip(f"{mod.__name__} has no {', '.join(missing)} yet")


def custom_logger_base(impl: str) -> type:
    try:
        return importlib.import_module(f"{impl}.integrations.custom_logger").CustomLogger
    except Exception as exc:  # noqa: BLE001
        raise Skip(f"{impl}.integrations.custom_logger.CustomLogger not importable: {exc!r}") from exc


def reset_callbacks(mod: Any) -> None:
    """Variants run one after another in --quick mode; none may see the previous one's hooks."""
    for attr in ("callbacks", "success_callback", "_async_success_callback", "failure_callback"):
        if isinstance(getattr(mod, attr, None), list):
            setattr(mod, attr, [])
    if getattr(mod, "cache", None) is not None:  # the cache_hit variant's cache must not outlive it
        mod.cache = None


def drain(mod: Any, impl: str, timeout: float = 30.0, settle: bool = True) -> dict[str, Any]:
    """Wait (bounded) until background callback work is done, so its CPU is counted.

    lmgate: its public `flush_callbacks(timeout=...)`.
    litellm: no public flush for sync calls; we poll its logging thread pool (free pending slots) and
    its async logging worker (`pending_count`) until both are idle or the timeout passes.
    Both sides then get the same short fixed settle time for stragglers.
    """
    t0 = time.perf_counter()
    how = "none"
    if impl == "lmgate":
        if hasattr(mod, "flush_callbacks"):
            mod.flush_callbacks(timeout=timeout)
            how = "flush_callbacks"
        else:
            how = "no flush_callbacks: fixed settle only"
    else:
        how = "poll executor + logging worker"
        try:
            from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER as worker
            from litellm.litellm_core_utils.thread_pool_executor import executor
        except Exception:  # noqa: BLE001 - older/newer layouts: fall back to the fixed settle
            worker = executor = None
            how = "fixed settle only"
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            busy = 0
            if executor is not None:
                slots = getattr(executor, "_pending_slots", None)
                cap = getattr(executor, "_max_pending_tasks", None)
                if slots is not None and cap is not None:
                    busy += cap - slots._value
                else:
                    busy += executor._work_queue.qsize()
            if worker is not None:
                busy += worker.pending_count
            if busy == 0:
                break
            time.sleep(0.005)
    if settle:
        time.sleep(SETTLE_S)
    return {"drain": how, "drain_s": round(time.perf_counter() - t0, 4)}


# the same for both implementations; not counted in throughput, counted in CPU (idle sleep costs none)
SETTLE_S = 0.2


def metric(value: float | None, unit: str, better: str, ratio: bool = True) -> dict[str, Any]:
    """better: "lower" (costs) or "higher" (throughputs).  ratio=False for counts like records lost."""
    return {"value": value, "unit": unit, "better": better, "ratio": ratio}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def variants(arg: str, all_variants: list[str]) -> list[str]:
    chosen = [v for v in arg.split(",") if v] or list(all_variants)
    unknown = [v for v in chosen if v not in all_variants]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; known: {all_variants}")
    return chosen


def emit(impl: str, scenario: str, results: dict[str, Any]) -> None:
    """The one JSON line the orchestrator reads (always the last stdout line)."""
    sys.stdout.flush()
    print(json.dumps({"impl": impl, "scenario": scenario, "results": results}), flush=True)


def skip_all(impl: str, scenario: str, chosen: list[str], reason: str) -> None:
    emit(impl, scenario, {v: {"skipped": reason} for v in chosen})


def run_variants(impl: str, scenario: str, chosen: list[str], fn: Any) -> None:
    """Run fn(variant) for each variant; a Skip in one variant does not hide the others."""
    results: dict[str, Any] = {}
    for v in chosen:
        try:
            results[v] = fn(v)
        except Skip as exc:
            results[v] = {"skipped": str(exc)}
    emit(impl, scenario, results)


async def adrain(mod: Any, impl: str, timeout: float = 30.0, settle: bool = True) -> dict[str, Any]:
    """drain() for code running inside an event loop: hooks scheduled on this loop must keep running.

    litellm: awaits its async logging worker's flush (bounded), then the sync drain for its thread pool.
    lmgate: its `aflush_callbacks` if there is one, else `flush_callbacks` in a thread.
    """
    import asyncio

    t0 = time.perf_counter()
    if impl == "lmgate":
        if hasattr(mod, "aflush_callbacks"):
            await asyncio.wait_for(mod.aflush_callbacks(timeout=timeout), timeout + 1)
            info = {"drain": "aflush_callbacks"}
            if settle:
                await asyncio.sleep(SETTLE_S)
        else:
            info = await asyncio.to_thread(drain, mod, impl, timeout, settle)
    else:
        try:
            from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

            await asyncio.wait_for(GLOBAL_LOGGING_WORKER.flush(), timeout)
        except Exception:  # noqa: BLE001 - timeout or another layout: the polling drain still runs
            pass
        info = await asyncio.to_thread(drain, mod, impl, timeout, settle)
        info["drain"] = "logging worker flush + " + info["drain"]
    info["drain_s"] = round(time.perf_counter() - t0, 4)
    return info


def response_text(resp: Any) -> str | None:
    """The first choice's content, whether the response is an object or a dict."""
    try:
        choice = resp.choices[0] if hasattr(resp, "choices") else resp["choices"][0]
        msg = choice.message if hasattr(choice, "message") else choice["message"]
        return msg.content if hasattr(msg, "content") else msg["content"]
    except Exception:  # noqa: BLE001
        return None


BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_helper(script: str, *args: str, timeout: float = 20.0) -> tuple[Any, int]:
    """Start a helper server from bench/ (same interpreter); wait for its "READY <port>" line."""
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, os.path.join(BENCH_DIR, script), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.startswith("READY "):
            return proc, int(line.split()[1])
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"{script} did not start")


def stop_helper(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except Exception:  # noqa: BLE001
        proc.kill()
        proc.wait()
    if proc.stdout is not None:  # the pipe its READY line came through
        proc.stdout.close()
