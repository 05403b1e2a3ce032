"""Scenario `proxy`: `lmgate serve` vs `litellm` proxy, one worker each, same mock model list.

Measures start-up time (process start to the first 200 on /health/liveliness), idle RSS (the server's
whole process tree), then requests/s and p50/p99 latency with wrk at concurrency 50 and 1, without and
with a generic API logger pointed at bench/receiver.py, and (lmgate only) with the ``store`` logger
writing every call to a SQLite log store in a temp dir.

This driver is stdlib only; it starts the CLI that sits next to its own interpreter (the same venv).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing

from _common import (
    BENCH_DIR,
    Skip,
    exit_on_sigterm,
    metric,
    parse_args,
    reference_env,
    run_variants,
    skip_all,
    start_helper,
    stop_helper,
    variants,
)

VARIANTS = ["plain", "generic_api", "store"]
BIN = os.path.dirname(sys.executable)

CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      mock_response: "hello world"
      api_key: sk-bench
"""
# LiteLLM's documented form for a named generic API callback; lmgate reads the same file
LOGGER_CONFIG = """\
litellm_settings:
  success_callback: ["bench_logger"]
callback_settings:
  bench_logger:
    callback_type: generic_api
    endpoint: {endpoint}
    headers:
      x-bench: "1"
    log_format: json_array
"""
# lmgate's log store (docs/store.md); the reference has no equivalent callback
STORE_CONFIG = """\
litellm_settings:
  callbacks: ["store"]
callback_settings:
  store:
    path: {path}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except Exception:  # noqa: BLE001 - not up yet
        return 0


def post_once(port: int) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}',
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except Exception:  # noqa: BLE001
        return 0


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (uvicorn/gunicorn may fork), from /proc."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except OSError:
                continue
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def tree_rss_mb(pid: int) -> float:
    """RSS of pid and all its descendants."""
    total_kb = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                m = re.search(r"VmRSS:\s+(\d+)", f.read())
                total_kb += int(m.group(1)) if m else 0
        except OSError:
            continue
    return total_kb / 1024


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by pid and its descendants' live threads: on a
    machine shared with other busy processes, CPU per request is steadier than requests/s."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            continue
    return total / ticks


def parse_latency(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def wrk(port: int, connections: int, seconds: float) -> dict:
    threads = min(2, connections)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        os.path.join(BENCH_DIR, "wrk_post.lua"),
        f"http://127.0.0.1:{port}/v1/chat/completions",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*?timeout (\d+)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "requests": int(total.group(1)) if total else 0,
        "errors": (int(bad.group(1)) if bad else 0) + (int(errs.group(1)) if errs else 0),
        "p50_ms": parse_latency(lat.get("50", "")),
        "p99_ms": parse_latency(lat.get("99", "")),
    }


def server_cmd(impl: str, config: str, port: int, store: bool = False) -> list[str]:
    # loopback only, one worker each
    where = ["--config", config, "--host", "127.0.0.1", "--port", str(port)]
    if impl == "lmgate":
        # the log store is on by default in lmgate serve: off unless the variant measures it
        return [
            os.path.join(BIN, "lmgate"),
            "serve",
            *where,
            "--workers",
            "1",
            *([] if store else ["--no-store"]),
        ]
    return [os.path.join(BIN, "litellm"), *where, "--num_workers", "1"]


def check_available(impl: str) -> None:
    if not shutil.which("wrk"):
        raise Skip("wrk not installed (apt-get install wrk)")
    if impl == "lmgate":
        exe = os.path.join(BIN, "lmgate")
        if not os.path.exists(exe):
            raise Skip("no lmgate console script in the venv")
        r = subprocess.run([exe, "serve", "--help"], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise Skip("lmgate.cli has no `serve` yet")


def measure(args, variant: str) -> dict:
    if variant == "store":
        if args.impl != "lmgate":
            raise Skip("the store logger is lmgate's own")
        return measure_server(args, None, store=True)
    if variant != "generic_api":
        return measure_server(args, None)
    receiver, rport = start_helper("receiver.py", "--max-seconds", "600")
    try:
        return measure_server(args, rport)
    finally:
        stop_helper(receiver)


def measure_server(args, rport: int | None, store: bool = False) -> dict:
    """Start the server (with a generic API logger to 127.0.0.1:rport if given), measure, stop it."""
    seconds = 1.0 if args.quick else 5.0
    tmp = tempfile.mkdtemp(prefix="bench-proxy-")
    config = os.path.join(tmp, "config.yaml")
    text = CONFIG
    if rport is not None:
        endpoint = f"http://127.0.0.1:{rport}/log"
        text += LOGGER_CONFIG.format(endpoint=endpoint)
        os.environ["GENERIC_LOGGER_ENDPOINT"] = endpoint
    if store:
        text += STORE_CONFIG.format(path=os.path.join(tmp, "logs.sqlite3"))
    with open(config, "w") as f:
        f.write(text)
    port = free_port()
    env = dict(os.environ)
    if args.impl == "litellm":
        reference_env()
        env = dict(os.environ)
        # no master key in either server's config: clients talk to both unauthenticated
        env["LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY"] = "true"
    log = open(os.path.join(tmp, "server.log"), "w")  # noqa: SIM115 - closed in finally
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        server_cmd(args.impl, config, port, store),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = t0 + 120
        while http_get(f"http://127.0.0.1:{port}/health/liveliness", 1.0) != 200:
            if proc.poll() is not None and args.impl == "lmgate":
                # lmgate's server is being built: a server that exits at once is "not there yet"
                log.flush()
                last = (open(log.name).read().strip().splitlines() or ["no output"])[-1]
                raise Skip(f"lmgate serve exited with {proc.returncode}: {last}")
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"{args.impl} server did not come up; see {log.name}")
            time.sleep(0.02)
        startup = time.perf_counter() - t0
        time.sleep(1.0)  # let start-up background work settle before calling it idle
        idle_rss = tree_rss_mb(proc.pid)
        warm = [post_once(port) for _ in range(20)]
        if warm.count(200) < 20:
            raise RuntimeError(f"warm-up requests failed: {warm}; see {log.name}")
        cpu0 = tree_cpu_s(proc.pid)
        c50 = wrk(port, 50, seconds)
        cpu_per_req = (tree_cpu_s(proc.pid) - cpu0) * 1000 / max(1, c50["requests"])
        c1 = wrk(port, 1, seconds)
        loaded_rss = tree_rss_mb(proc.pid)
        metrics = {
            "startup_s": metric(startup, "s", "lower"),
            "idle_rss_mb": metric(idle_rss, "MiB", "lower"),
            "rps_c50": metric(c50["rps"], "req/s", "higher"),
            "cpu_ms_per_req_c50": metric(cpu_per_req, "ms", "lower"),
            "p50_c50_ms": metric(c50["p50_ms"], "ms", "lower"),
            "p99_c50_ms": metric(c50["p99_ms"], "ms", "lower"),
            "rps_c1": metric(c1["rps"], "req/s", "higher"),
            "p50_c1_ms": metric(c1["p50_ms"], "ms", "lower"),
            "p99_c1_ms": metric(c1["p99_ms"], "ms", "lower"),
            "errors": metric(c50["errors"] + c1["errors"], "requests", "lower", ratio=False),
        }
        info = {"rss_after_load_mb": round(loaded_rss, 1), "requests": c50["requests"] + c1["requests"] + 20}
    finally:
        # SIGTERM = graceful shutdown, the chance to flush the logger; bounded, then SIGKILL the group
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
        log.close()
    if rport is not None:
        from generic_api import wait_quiet

        got = wait_quiet(rport, quiet_s=1.0, max_s=10)
        # not a loss count: wrk's request total leaves out what was in flight at its deadline (up to 50)
        metrics["log_records_delivered"] = metric(got["unique"], "records", "higher", ratio=False)
        metrics["requests_counted"] = metric(info["requests"], "requests", "higher", ratio=False)
        # ... but fewer records than counted requests is a sure loss
        lost_min = max(0, info["requests"] - got["unique"])
        metrics["log_records_lost_min"] = metric(lost_min, "records", "lower", ratio=False)
    if store:
        # after a graceful stop every answered call is a row (the call id is the primary key, so
        # a row cannot be there twice); fewer rows than counted requests is a sure loss
        with closing(sqlite3.connect(os.path.join(tmp, "logs.sqlite3"))) as db:
            (stored,) = db.execute("SELECT count(*) FROM calls").fetchone()
        metrics["store_records"] = metric(stored, "records", "higher", ratio=False)
        metrics["requests_counted"] = metric(info["requests"], "requests", "higher", ratio=False)
        lost_min = max(0, info["requests"] - stored)
        metrics["store_records_lost_min"] = metric(lost_min, "records", "lower", ratio=False)
    shutil.rmtree(tmp, ignore_errors=True)  # kept on failure (the error names the server log)
    return {"metrics": metrics, "info": info}


def main() -> None:
    args = parse_args()
    exit_on_sigterm()
    chosen = variants(args.variant, VARIANTS)
    try:
        check_available(args.impl)
    except Skip as exc:
        skip_all(args.impl, "proxy", chosen, str(exc))
        return
    run_variants(args.impl, "proxy", chosen, lambda v: measure(args, v))


if __name__ == "__main__":
    main()
