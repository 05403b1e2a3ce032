"""Summaries of worker results: per-metric statistics, console tables and docs/benchmarks.md."""

from __future__ import annotations

import math
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

NAMES = {"lmgate": "lmgate", "litellm": "LiteLLM"}

LABELS = {
    "import_ms": "import time",
    "peak_rss_mb": "peak RSS after import",
    "first_call_ms": "first mock completion after import",
    "cold_start_ms": "import + first mock completion",
    "peak_rss_after_call_mb": "peak RSS after the first completion",
    "calls_per_s": "calls/s",
    "cpu_us_per_call": "CPU per call",
    "hooks_missed": "hooks that never ran",
    "hook_delay_p50_ms": "return → hook, p50",
    "hook_delay_p99_ms": "return → hook, p99",
    "return_to_hook_p50_ms": "return → hook, p50 (calls over HTTP)",
    "return_to_hook_p99_ms": "return → hook, p99 (calls over HTTP)",
    "overhead_ms": "added latency over raw httpx (median)",
    "call_ms": "per-call latency (median)",
    "records_per_s": "records/s delivered",
    "records_produced": "calls that returned (records to deliver)",
    "records_lost": "records lost",
    "lost_after_restart": "records lost after a restart on the same spool",
    "startup_s": "start-up to first 200",
    "idle_rss_mb": "idle RSS (process tree)",
    "rps_c50": "requests/s, concurrency 50",
    "p50_c50_ms": "p50 latency, concurrency 50",
    "p99_c50_ms": "p99 latency, concurrency 50",
    "rps_c1": "requests/s, concurrency 1",
    "p50_c1_ms": "p50 latency, concurrency 1",
    "p99_c1_ms": "p99 latency, concurrency 1",
    "errors": "failed requests",
    "log_records_delivered": "log records delivered (after graceful stop)",
    "requests_counted": "requests wrk counted (+20 warm-up; excludes in-flight at its deadline)",
    "log_records_lost_min": "log records lost, at least (counted − delivered)",
    "store_records": "rows in the log store (after graceful stop)",
    "store_records_lost_min": "store rows lost, at least (counted − stored)",
}

ABOUT = {
    "import": "Wall time of `import <impl>` measured in-process with `perf_counter`, and the peak RSS "
    "(`ru_maxrss`) of that fresh process. lmgate imports most of itself lazily, so the first mock "
    "`completion(...)` right after the import is timed too, and their sum is the cold start. One untimed "
    "lmgate import runs first so its byte-code cache exists (pip compiled LiteLLM's at install).",
    "mock_sync": "Sync `completion(model='gpt-4o-mini', messages=[...], mock_response='hello world')` in a "
    "loop. CPU is `time.process_time()` (all threads) from the first timed call until background callback "
    "work has drained, divided by calls. lmgate drains with `lmgate.flush_callbacks(timeout=30)`; LiteLLM "
    "has no public flush for sync calls, so the harness polls its logging thread pool (free pending slots) "
    "and its async logging worker until idle (bounded, 30 s). Both then get the same fixed 0.2 s settle. "
    "Variants: no callbacks; a `success_callback` function; a `CustomLogger` counting "
    "`log_success_event` + `async_log_success_event`; both at once (`logger_and_fn`); `stream=True` with "
    "every chunk consumed; `cache_hit`: the same call repeated with a local in-memory cache "
    "(`Cache(type='local')`, `caching=True`), so every timed call is a cache hit (compare it with "
    "LiteLLM's `no_callbacks` row too: issue 5 asks for a hit under a tenth of the reference's mock call).",
    "mock_async": "`acompletion(mock_response=...)` from 100 concurrent tasks. With the async CustomLogger, "
    "each call gets a unique mock answer; the hook reads it back from the response to pair the call's "
    "return time with the hook's time (return → hook delay). Drain: lmgate `flush_callbacks` (in a thread, "
    "the loop keeps running); LiteLLM `GLOBAL_LOGGING_WORKER.flush()` plus the thread-pool poll.",
    "overhead_http": "Real HTTP to a local fake OpenAI server (bench/fake_openai.py, stdlib asyncio, "
    "127.0.0.1). Calls alternate raw `httpx` (default client settings, JSON/SSE parsed) and "
    "`completion(model='openai/gpt-4o-mini', api_base=<fake>/v1, api_key='sk-bench')`; the added latency "
    "is median(impl) − median(raw httpx) in the same process. `sync_hook` / `async_hook`: one call at a "
    "time with a `CustomLogger` whose success hook stamps the time; the metric is the delay from the call's "
    "return to its hook (0 when the hook ran first), the realistic counterpart of `mock_async`, where the "
    "caller's loop never waits on I/O and a delivery thread gets the GIL only at CPython's 5 ms switch "
    "interval.",
    "generic_api": "The generic API logger (`json_array`, batch 100, flush interval 1 s, same for both) "
    "posting to a local receiver (bench/receiver.py) that de-duplicates records by id. A child process "
    "makes the calls (`acompletion`, mock); it appends a byte per returned call to a file, so 'lost' = "
    "returned calls − unique records received, even after a kill. lmgate runs with its write-ahead disk spool on "
    "(every record on disk before its call returns; `throughput` alone uses lmgate's defaults) and, "
    "after each variant, a fresh lmgate process opens the same spool and flushes ('after restart'); "
    "LiteLLM has no spool (and its default `max_retries=0`). The 500 window starts at the first POST. "
    "`normal`, `exit_no_flush` and `receiver_500` make 5,000 calls at concurrency 50 (500 in quick mode); "
    "records/s is end to end (first call to last record received), so it is bounded by how fast each side "
    "makes calls, too. The kill variants pace 2,000 calls (300 in quick mode; 10 tasks, 20 ms apart) and "
    "signal the child once half of them have returned, so about 1,000 (150) records are at stake. "
    "`throughput` is the logger's delivery rate alone: 20,000 standard payloads (5,000 in quick mode) handed "
    "to each logger's own `async_log_success_event` as fast as it takes them, then its flush; records/s = "
    "unique records received / (last receipt − first hand-off); lmgate runs with its defaults there "
    '(`spool="exit"`, 3 batches in flight). `throughput_write_ahead` is the same with the write-ahead spool '
    "on, so each record is also written to disk on the producer's path. The receiver parses with orjson when "
    "the interpreter has it; it runs on the same 2-core machine, so it takes CPU from the sender.",
    "proxy": "`lmgate serve --config X --host 127.0.0.1 --port P --workers 1` vs `litellm --config X "
    "--host 127.0.0.1 --port P --num_workers 1`, same "
    "mock model list (`mock_response` in `litellm_params`), no master key (LiteLLM started with "
    "`LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true`). Start-up = process start to the first 200 "
    "on `/health/liveliness`; idle RSS 1 s later (whole process tree); then 20 warm-up requests and "
    "`wrk --latency` with a POST script (bench/wrk_post.lua) at 50 and 1 connections. The `generic_api` "
    "variant adds a generic API logger (LiteLLM's `callback_settings` form) pointing at bench/receiver.py; "
    "after the load the server gets SIGTERM (graceful stop) and the receiver's count is compared with the "
    "requests wrk counted, which leave out up to 50 requests still in flight at wrk's deadline, so a "
    "delivered count above it is no error, and one below it is a sure loss.",
}


# (scenario, variant, metric): the numbers worth a glance, shown first in the report
HEADLINE = [
    ("import", "import", "cold_start_ms"),
    ("import", "import", "peak_rss_mb"),
    ("mock_sync", "no_callbacks", "cpu_us_per_call"),
    ("mock_sync", "custom_logger", "cpu_us_per_call"),
    ("mock_sync", "logger_and_fn", "cpu_us_per_call"),
    ("mock_sync", "cache_hit", "cpu_us_per_call"),
    ("mock_sync", "stream", "cpu_us_per_call"),
    ("mock_async", "custom_logger", "calls_per_s"),
    ("mock_async", "custom_logger", "hook_delay_p99_ms"),
    ("overhead_http", "sync", "overhead_ms"),
    ("overhead_http", "async_stream", "overhead_ms"),
    ("overhead_http", "sync_hook", "return_to_hook_p50_ms"),
    ("overhead_http", "async_hook", "return_to_hook_p50_ms"),
    ("generic_api", "throughput", "records_per_s"),
    ("generic_api", "throughput_write_ahead", "records_per_s"),
    ("generic_api", "normal", "records_per_s"),
    ("generic_api", "receiver_500", "lost_after_restart"),
    ("generic_api", "sigkill", "lost_after_restart"),
    ("proxy", "plain", "rps_c50"),
    ("proxy", "plain", "p99_c50_ms"),
    ("proxy", "plain", "startup_s"),
    ("proxy", "plain", "idle_rss_mb"),
]


# ---------------------------------------------------------------- statistics


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def aggregate(runs: dict[str, list[dict]], impls: tuple[str, ...]) -> dict:
    """{impl: [worker result, ...]} -> per-impl status plus per-metric median/min/max and pair ratios."""
    out: dict[str, Any] = {"sides": {}, "metrics": {}}
    ok: dict[str, list[dict]] = {}
    for impl in impls:
        results = runs.get(impl, [])
        skipped = next((r["skipped"] for r in results if "skipped" in r), None)
        errors = [r["error"] for r in results if "error" in r]
        ok[impl] = [r for r in results if "metrics" in r]
        out["sides"][impl] = {
            "runs": len(ok[impl]),
            "skipped": skipped,
            "errors": errors,
            "info": ok[impl][-1].get("info") if ok[impl] else None,
        }
    names: list[str] = []
    for impl in impls:
        for r in ok[impl]:
            names += [n for n in r["metrics"] if n not in names]
    for name in names:
        entry: dict[str, Any] = {}
        for impl in impls:
            vals = [r["metrics"][name]["value"] for r in ok[impl] if name in r["metrics"]]
            spec = next((r["metrics"][name] for r in ok[impl] if name in r["metrics"]), None)
            if spec:
                entry.update(unit=spec["unit"], better=spec["better"], ratio=spec["ratio"])
            vals = [v for v in vals if _finite(v)]
            if vals:
                entry[impl] = {
                    "median": statistics.median(vals),
                    "min": min(vals),
                    "max": max(vals),
                    "values": vals,
                }
        entry["ratio_median"] = None
        if entry.get("ratio") and "lmgate" in entry and "litellm" in entry:
            pairs = []
            for a, b in zip(entry["lmgate"]["values"], entry["litellm"]["values"], strict=False):
                # always "lmgate is X× better": reference/lmgate for costs, lmgate/reference for throughputs
                num, den = (b, a) if entry["better"] == "lower" else (a, b)
                if den > 0 and num > 0:
                    pairs.append(num / den)
            entry["ratio_pairs"] = pairs
            entry["ratio_median"] = statistics.median(pairs) if pairs else None
        out["metrics"][name] = entry
    return out


def has_errors(summary: dict) -> bool:
    if summary.get("forward", {}).get("errors"):
        return True
    return any(
        side["errors"]
        for variants in summary["scenarios"].values()
        for v in variants.values()
        for side in v["sides"].values()
    )


# ---------------------------------------------------------------- formatting


def num(x: float | None) -> str:
    if x is None or not _finite(x):
        return "–"
    if float(x).is_integer() and abs(x) < 1e6:
        return f"{int(x):,}"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def cell(stats: dict | None, unit: str) -> str:
    if not stats:
        return "–"
    if len(stats["values"]) == 1:
        return f"{num(stats['median'])} {unit}"
    return f"{num(stats['median'])} {unit} ({num(stats['min'])}–{num(stats['max'])})"


def ratio_text(r: float | None) -> str:
    if r is None:
        return "–"
    if r >= 1:
        return f"**{num(r)}×** better"
    return f"{num(r)}× (LiteLLM {num(1 / r)}× better)"


def side_note(sides: dict) -> str:
    notes = []
    for impl, s in sides.items():
        if s["skipped"]:
            notes.append(f"{NAMES[impl]} skipped: {s['skipped']}")
        for e in sorted(set(s["errors"])):
            notes.append(f"{NAMES[impl]} error: {e}")
    return "; ".join(notes)


def console_table(name: str, variants: dict) -> str:
    lines = [f"\n== {name}"]
    for v, agg in variants.items():
        note = side_note(agg["sides"])
        lines.append(f"  [{v}]" + (f"  ({note})" if note else ""))
        for m, e in agg["metrics"].items():
            unit = e.get("unit", "")
            lines.append(
                f"    {LABELS.get(m, m):44s} lmgate {cell(e.get('lmgate'), unit):28s} "
                f"LiteLLM {cell(e.get('litellm'), unit):28s} {ratio_text(e.get('ratio_median')).replace('*', '')}"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------- machine and report


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.rstrip()
    except Exception:  # noqa: BLE001
        return ""


def machine_meta(py: dict[str, Path], impls: tuple[str, ...]) -> dict:
    cpu, cores, mhz = "unknown", 0, ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                cores += 1
            elif line.startswith("cpu MHz") and not mhz:
                mhz = line.split(":", 1)[1].strip()
    except OSError:
        pass
    versions = {}
    names = {"lmgate": ["lmgate"], "litellm": ["litellm", "certifi", "litellm-proxy-extras"]}
    for impl in impls:
        for name in names[impl]:
            versions[name] = _run(
                [str(py[impl]), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"]
            )
    return {
        "cpu": cpu,
        "cores": cores,
        "cpu_mhz": mhz,
        "free": _run(["free", "-h"]),
        "kernel": platform.release(),
        "python": _run([str(py["lmgate"]), "-c", "import sys; print(sys.version.split()[0])"]),
        "versions": versions,
        "wrk": _run(["wrk", "--version"]).splitlines()[0] if _run(["which", "wrk"]) else "",
    }


def forward_table(result: dict) -> str:
    """The forward scenario's table (scenarios/forward.py renders it; bench/scenarios is on sys.path)."""
    from forward import markdown as forward_markdown

    return forward_markdown(result)


FORWARD_ABOUT = (
    "The forwarding path (issue 18): each gateway forwards `POST /v1/chat/completions` to one fake OpenAI "
    "upstream (bench/fake_openai.py on uvloop; measured alone first, column *upstream alone*), one worker "
    "each, one server at a time on the machine: `lmgate serve` (model list entry `openai/gpt-4o-mini` with "
    "`api_base` = the upstream), LiteLLM's proxy (same config file), the Portkey gateway "
    "(`@portkey-ai/gateway` 1.15.2 from npm, installed into bench/.portkey/ by bench/setup_portkey.sh, run by node, bound to 127.0.0.1 by "
    "bench/portkey_loopback.cjs, pointed at the upstream with `x-portkey-provider: openai` and "
    "`x-portkey-custom-host`) and bench/bare_forwarder.py (a bare ASGI app on uvicorn forwarding with "
    "aiohttp: the floor). Rounds alternate the servers; cells are medians over rounds with min–max. wrk "
    "at concurrency 50 and 1 after an unmeasured 1 s warm-up at c=50; server CPU per request = utime+stime of the server's process tree "
    "(/proc/<pid>/stat) over the c=50 run / requests; streams (`stream: true`, 8 events, chunked as "
    "OpenAI sends them) one at a time on one kept-alive connection (as an SDK client sends them): time to "
    "the first body byte (the first event) and to the end of the body. *Added* = the server's figure minus the upstream's own in the same round. The issue's "
    "targets follow the table; the library's own added latency over raw httpx is the overhead_http "
    "scenario (async / async_stream rows)."
)


FORWARD_NOTES = [
    "Notes (issue 18):",
    "",
    "- lmgate's async provider calls go to aiohttp directly (`src/lmgate/_aiohttp_transport.py`), chosen "
    "by `bench/transports.py`: per request, httpx's async pool costs ~1.2–1.5 ms of CPU, httpx over an "
    "aiohttp transport (the `httpx-aiohttp` package or lmgate's own) ~0.3 ms, aiohttp itself and lmgate's "
    "wire ~0.08–0.1 ms. A caller's own `aclient_session` or an environment HTTP(S) proxy keeps httpx.",
    "- The servers run on uvicorn with uvloop and httptools when they are installed (`lmgate serve` and "
    "the bare forwarder alike).",
    "- What separates lmgate from the bare forwarder is the proxy itself, not the wire: per request the "
    "OpenAI-shaped request/response objects, the Router's attempt and the call, the access log line, "
    "cost and metrics (the LLM routes skip Starlette's routing layers: `FastLane` in "
    "`src/lmgate/proxy/middleware.py`). Counted in instructions (valgrind --tool=callgrind, the ASGI app "
    "driven in-process without uvicorn, one request at a time; reproducible to 0.1% on a loaded "
    "machine), a forwarded chat completion cost 1,145k instructions before issue 18's second pass and "
    "966k after (the bare forwarder's app: 384k); a streamed one (8 events) 2,261k and 2,040k (bare: "
    "503k). Targets not met above are bounded by that part. The bare forwarder's own added latency at "
    "c=1 (same table) is the floor for a Python ASGI forwarder on this machine: the 0.3 ms target sits "
    "close to it.",
    "- Portkey gateway 1.15 on this machine's Node (20) answers streamed requests with a 500 "
    "(`TypeError: immutable` in its response-header update), so its streaming columns stay empty; its "
    "plain forwarding works.",
]


def forward_section(summary: dict) -> list[str]:
    result = summary.get("forward")
    if not result:
        return []
    meta = result.get("meta", {})
    md = ["## forward", "", FORWARD_ABOUT, ""]
    run = summary.get("runs", {}).get("forward", {})
    md += [
        f"_Measured {meta.get('started', '?')} ({'quick' if meta.get('quick') else 'full'} mode, "
        f"{meta.get('rounds', '?')} rounds, {meta.get('wrk_seconds', '?')} s per wrk run, "
        f"{meta.get('streamed_requests', '?')} streamed requests per server), took {meta.get('duration_s', '?')} s, "
        f"load average at start {meta.get('loadavg_start')}, at end {meta.get('loadavg_end')}; "
        f"command `{run.get('command', 'python bench/run.py --only forward')}`._",
        "",
    ]
    if result.get("servers"):
        md += [forward_table(result), ""]
    ov = summary.get("scenarios", {}).get("overhead_http", {})
    rows = []
    for variant, limit in (("async", 0.1), ("async_stream", 0.3), ("sync", 0.1), ("sync_stream", 0.3)):
        e = ov.get(variant, {}).get("metrics", {}).get("overhead_ms", {}).get("lmgate")
        if e and _finite(e.get("median")):
            verdict = "met" if e["median"] <= limit else "not met"
            rows.append(
                f"| library added latency over raw httpx, {variant} ≤ {limit} ms | {cell(e, 'ms')} | {verdict} |"
            )
    if rows:
        md += ["| issue 18 target (library, overhead_http) | measured | |", "|---|---|---|", *rows, ""]
    md += FORWARD_NOTES + [""]
    for skipped, why in result.get("skipped", {}).items():
        md += [f"- {skipped}: skipped, {why}"]
    for error in result.get("errors", []):
        md += [f"- error: {error}"]
    return md


def markdown(summary: dict) -> str:
    meta = summary["meta"]
    ver = meta.get("versions", {})
    md = [
        "# Benchmarks: lmgate vs LiteLLM",
        "",
        "<!-- generated by bench/run.py (bench/report.py); edit those, not this file -->",
        "",
        "lmgate and the reference implementation, LiteLLM, measured side by side on the same machine in the "
        "same run. Every measurement is a fresh process; the two sides alternate (lmgate, LiteLLM, lmgate, "
        "LiteLLM, …). Each cell is the median of the runs, with min–max in brackets; the last column is the "
        "median of the per-pair ratios, phrased as *lmgate is X× better* (LiteLLM/lmgate for costs such as "
        "time, CPU and memory; lmgate/LiteLLM for throughputs). Below 1× LiteLLM is better.",
        "",
        "![lmgate vs LiteLLM](benchmarks.png)",
        "",
        "## How to run",
        "",
        "```sh",
        "make bench          # python bench/run.py: full run, about 20 minutes",
        "make bench-quick    # python bench/run.py --quick: fewer repeats and shorter loops, under 2 minutes",
        "python bench/run.py --only mock_sync proxy --repeats 3",
        "python bench/run.py --smoke   # lmgate only, a few seconds, no reference venv (for CI)",
        "```",
        "",
        "The first run creates the reference venv `bench/.venv-ref` with `bench/setup_ref.sh`: "
        f"LiteLLM {ver.get('litellm') or '1.109.1'} with the `proxy` extra (and matplotlib, for the chart). "
        "`litellm==1.109.1` asks for `certifi>=2026.10.19` and `litellm-proxy-extras==0.4.113`, releases the "
        "package index does not serve, so the script downloads the wheel, installs its requirements (core + "
        "`proxy` extra) with those two constraints dropped (installed here: certifi "
        f"{ver.get('certifi') or '?'}, litellm-proxy-extras {ver.get('litellm-proxy-extras') or '?'}), then "
        "installs the wheel with `--no-deps`; `bench/.venv-ref/freeze.txt` lists everything installed. "
        "LiteLLM never enters the project venv. The "
        "reference runs with `LITELLM_LOCAL_MODEL_COST_MAP=True` and `LITELLM_TELEMETRY=False`; all traffic "
        "stays on 127.0.0.1.",
        "",
        "Raw worker output of every run is kept in `bench/results/raw/` (git-ignored); the summary of the "
        "last run is `bench/results/latest.json`.",
        "",
        "## This run",
        "",
        f"- command: `{meta.get('command')}` ({'quick' if meta.get('quick') else 'full'} mode), started "
        f"{meta.get('started')}, took {meta.get('duration_s')} s",
        f"- CPU: {meta.get('cpu')}, {meta.get('cores')} logical cores"
        + (f" @ {meta['cpu_mhz']} MHz" if meta.get("cpu_mhz") else ""),
        f"- kernel {meta.get('kernel')}, Python {meta.get('python')}, {meta.get('wrk') or 'wrk not installed'}",
        f"- lmgate {ver.get('lmgate', '?')}, LiteLLM {ver.get('litellm', 'not measured')}",
        f"- load average (1/5/15 min) at start {meta.get('loadavg_start')}, at end {meta.get('loadavg_end')} "
        "(anything else running on the machine slows both sides)",
        "",
        "```",
        meta.get("free", ""),
        "```",
        "",
    ]
    head = []
    for scenario, variant, m in HEADLINE:
        e = summary["scenarios"].get(scenario, {}).get(variant, {}).get("metrics", {}).get(m)
        if e:
            unit = e.get("unit", "")
            head.append(
                f"| {scenario} / {variant} | {LABELS.get(m, m)} | {cell(e.get('lmgate'), unit)} | "
                f"{cell(e.get('litellm'), unit)} | {ratio_text(e.get('ratio_median'))} |"
            )
    if head:
        md += ["## Summary", "", "| scenario / variant | metric | lmgate | LiteLLM | lmgate is … |"]
        md += ["| --- | --- | --- | --- | --- |", *head, ""]
    if meta.get("quick"):
        md += [
            "> Quick mode: fewer repeats (1–2 per side), shorter loops, all variants of a scenario in one "
            "process, generic_api without `exit_no_flush`/`sigterm`, proxy without the logger variant and "
            "1 s wrk runs. Use `make bench` for the numbers to quote.",
            "",
        ]
    for name, variants in summary["scenarios"].items():
        md += [f"## {name}", "", ABOUT.get(name, ""), ""]
        run = summary.get("runs", {}).get(name)
        if run and (run.get("command"), run.get("started")) != (meta.get("command"), meta.get("started")):
            mode = "quick mode" if run.get("quick") else "full mode"
            md += [
                f"_Measured by an earlier run: `{run.get('command')}` ({mode}), {run.get('started')}._",
                "",
            ]
        md += ["| variant | metric | lmgate | LiteLLM | lmgate is … |", "| --- | --- | --- | --- | --- |"]
        notes = []
        for v, agg in variants.items():
            note = side_note(agg["sides"])
            if note:
                notes.append(f"- `{v}`: {note}")
            if not agg["metrics"]:
                md.append(f"| {v} | – | – | – | – |")
            for m, e in agg["metrics"].items():
                unit = e.get("unit", "")
                md.append(
                    f"| {v} | {LABELS.get(m, m)} | {cell(e.get('lmgate'), unit)} | "
                    f"{cell(e.get('litellm'), unit)} | {ratio_text(e.get('ratio_median'))} |"
                )
        md += [""] + notes + ([""] if notes else [])
    md += forward_section(summary)
    # figures from the standalone scenarios (formats, providers, store, keys), run by hand and kept
    # in bench/results/standalone.md so a re-render of this page keeps them
    standalone = Path(__file__).parent / "results" / "standalone.md"
    if standalone.is_file():
        md += ["", standalone.read_text().strip()]
    return "\n".join(md).rstrip() + "\n"
