#!/usr/bin/env python3
"""Scenario `forward`: gateways forwarding to an upstream over HTTP, side by side (issue 18).

    python bench/scenarios/forward.py             # 3 rounds, 5 s wrk runs
    python bench/scenarios/forward.py --quick     # 1 round, 1 s wrk runs (CI smoke: --servers upstream bare)

One fake OpenAI upstream (bench/fake_openai.py, uvloop when installed) runs throughout; it is measured
alone first (`upstream`: wrk straight at it), then each server, one at a time and alone on the
machine, forwards to it, one worker each:

- `lmgate`: `lmgate serve` with a model list entry `openai/gpt-4o-mini` whose `api_base` is the upstream;
- `lmgate_store`: the same `lmgate serve` with its log store on (SQLite in the temp dir; issue 16's
  "keeps at least 90% of its requests per second", here on the forwarding path);
- `litellm`: the reference's proxy (bench/.venv-ref, made by bench/setup_ref.sh), the same config file;
- `portkey`: the Portkey gateway (`@portkey-ai/gateway` from npm in bench/.portkey/, installed by
  bench/setup_portkey.sh, started with node,
  bound to 127.0.0.1 by bench/portkey_loopback.cjs), pointed at the upstream per request with the
  `x-portkey-provider: openai` and `x-portkey-custom-host` headers;
- `bare`: bench/bare_forwarder.py, a bare ASGI app forwarding with aiohttp on uvicorn: the floor;
- `bare_httpx`: the same app forwarding with an httpx.AsyncClient (what httpx's async pool costs).

Rounds alternate the servers (upstream, lmgate, litellm, portkey, bare, upstream, ...) so drift on the
machine hits all alike; every cell is the median over rounds with min–max.  Per server: start-up (spawn
to the first forwarded 200), idle RSS and RSS after load (the process tree), wrk at concurrency 50 and 1
(requests/s, p50, p99; after an unmeasured 1 s warm-up at c=50), server CPU per request over the c=50 run (utime+stime of the process tree from
/proc, divided by the requests wrk counted), and streamed requests (`"stream": true`, 8 SSE events, chunked)
made one at a time on one kept-alive connection: time to the first body byte (the first event) and to the
end of the body.  "Added"
figures are the server's minus the upstream's own in the same round.

Prints a JSON line (the summary) last; --markdown also prints the table.  Stdlib only; it starts the
servers from the interpreters next to it (project venv) and from bench/.venv-ref.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)
BIN = os.path.dirname(sys.executable)
REF_BIN = os.path.join(BENCH, ".venv-ref", "bin")
PORTKEY_DIR = os.path.join(BENCH, ".portkey")
PORTKEY_JS = os.path.join(PORTKEY_DIR, "node_modules", "@portkey-ai", "gateway", "build", "start-server.js")
SERVERS = ["upstream", "lmgate", "lmgate_store", "litellm", "portkey", "bare", "bare_httpx"]
BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
STREAM_BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": true}'
# a chat request of a typical size rather than the least one: a system prompt, an earlier turn and
# its answer, a follow-up, two parameters (~2.5 kB); with `fake_openai.py --answer-words 250` the
# answer is ~1.5 kB. BODY is the worst case for a logger's share: the proxy's own work per request
# grows with the bytes it parses and writes, a log record's fixed costs do not
_PROSE = (
    "Answer in plain language, cite the section of the handbook you rely on, and say so when the "
    "handbook does not cover the question. Keep answers under three paragraphs unless asked. "
)
TYPICAL_BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [
            {
                "role": "system",
                "content": "You are the support assistant of a software company. " + _PROSE * 8,
            },
            {"role": "user", "content": "How do I rotate the API key of a team without downtime? " * 3},
            {"role": "assistant", "content": _PROSE * 3},
            {"role": "user", "content": "And what happens to requests in flight with the old key?"},
        ],
        "temperature": 0.2,
        "max_tokens": 512,
    }
).encode()

CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {api_base}
      api_key: sk-bench
"""

# lmgate's log store (docs/store.md), as bench/scenarios/proxy.py configures it
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


def post(port: int, headers: dict[str, str], timeout: float = 5.0) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=BODY,
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status
    except Exception:  # noqa: BLE001 - not up yet
        return 0


def tree_pids(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu_s(pid: int) -> float:
    """utime + stime of pid and its descendants, in seconds."""
    ticks = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except (OSError, ValueError, IndexError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_rss_mb(pid: int) -> float:
    total_kb = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                m = re.search(r"VmRSS:\s+(\d+)", f.read())
                total_kb += int(m.group(1)) if m else 0
        except OSError:
            continue
    return total_kb / 1024


def parse_latency(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def wrk(port: int, connections: int, seconds: float, headers: dict[str, str]) -> dict:
    cmd = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    cmd += ["--timeout", "10s", "-s", os.path.join(BENCH, "wrk_post.lua")]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(f"http://127.0.0.1:{port}/v1/chat/completions")
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


def stream_once(conn: http.client.HTTPConnection, headers: dict[str, str]) -> tuple[float, float]:
    """One streamed request on a kept-alive connection, as an SDK client makes them: (time to the first
    body byte, the first `data:` event, and time to the end of the body)."""
    t0 = time.perf_counter()
    conn.request(
        "POST",
        "/v1/chat/completions",
        body=STREAM_BODY,
        headers={"Content-Type": "application/json", **headers},
    )
    response = conn.getresponse()
    first = response.read1(65536)
    ttfb = time.perf_counter() - t0
    rest = response.read()
    total = time.perf_counter() - t0
    if response.status != 200 or not first.startswith(b"data:") or b"[DONE]" not in first + rest:
        raise RuntimeError(f"HTTP {response.status}: {(first + rest)[:200]!r}")
    return ttfb, total


def stream_stats(port: int, headers: dict[str, str], n: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(5):
            stream_once(conn, headers)
        ttfb, total = [], []
        for _ in range(n):
            a, b = stream_once(conn, headers)
            ttfb.append(a * 1000)
            total.append(b * 1000)
    except (RuntimeError, OSError, http.client.HTTPException) as error:
        # a server that cannot stream still gets its other figures
        print(f"  streaming failed: {error}", file=sys.stderr, flush=True)
        return {"ttfb_ms": float("nan"), "total_ms": float("nan"), "stream_error": str(error)[:300]}
    finally:
        conn.close()
    return {"ttfb_ms": statistics.median(ttfb), "total_ms": statistics.median(total)}


class Server:
    """One server under test: how to start it, what headers its requests need."""

    def __init__(self, name: str, upstream_port: int, tmp: str) -> None:
        self.name, self.up, self.tmp = name, upstream_port, tmp
        self.port = free_port()
        self.headers: dict[str, str] = {}
        self.env = dict(os.environ)
        self.cwd = None
        api_base = f"http://127.0.0.1:{upstream_port}/v1"
        where = ["--host", "127.0.0.1", "--port", str(self.port)]
        if name in ("lmgate", "lmgate_store", "litellm"):
            config = os.path.join(tmp, f"{name}.yaml")
            with open(config, "w") as f:
                f.write(CONFIG.format(api_base=api_base))
                if name == "lmgate_store":  # a store of its own, fresh each round
                    store = os.path.join(tmp, f"store-{self.port}.sqlite3")
                    f.write(STORE_CONFIG.format(path=store))
        if name == "lmgate":
            # forwarding alone, as the others do it: they keep no log store either (the store's own
            # cost is measured by bench/scenarios/proxy.py and bench/store_scale.py)
            self.cmd = [
                os.path.join(BIN, "lmgate"),
                "serve",
                "--config",
                config,
                *where,
                "--workers",
                "1",
                "--no-store",
            ]
        elif name == "lmgate_store":
            # the same server with its log store on (its default; issue 16: "the proxy keeps at
            # least 90% of its requests per second"), writing to SQLite in the temp dir
            self.cmd = [os.path.join(BIN, "lmgate"), "serve", "--config", config, *where, "--workers", "1"]
        elif name == "litellm":
            self.cmd = [os.path.join(REF_BIN, "litellm"), "--config", config, *where, "--num_workers", "1"]
            self.env.update(
                LITELLM_LOCAL_MODEL_COST_MAP="True",
                LITELLM_TELEMETRY="False",
                LITELLM_LOG="ERROR",
                DISABLE_SCHEMA_UPDATE="True",
                LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY="true",
            )
        elif name == "portkey":
            loopback = os.path.join(BENCH, "portkey_loopback.cjs")
            self.cmd = ["node", "-r", loopback, PORTKEY_JS, f"--port={self.port}", "--headless"]
            self.cwd = PORTKEY_DIR
            self.env["NODE_ENV"] = "production"
            self.headers = {
                "x-portkey-provider": "openai",
                "x-portkey-custom-host": api_base,
                "Authorization": "Bearer sk-bench",
            }
        elif name in ("bare", "bare_httpx"):
            up = f"http://127.0.0.1:{upstream_port}"
            self.cmd = [
                sys.executable,
                os.path.join(BENCH, "bare_forwarder.py"),
                "--upstream",
                up,
                *where[2:],
            ]
            if name == "bare_httpx":
                self.cmd += ["--client", "httpx"]
        else:
            raise ValueError(name)

    def missing(self) -> str | None:
        if self.name == "litellm" and not os.path.exists(os.path.join(REF_BIN, "litellm")):
            return "no bench/.venv-ref (bash bench/setup_ref.sh)"
        if self.name == "portkey" and (not shutil.which("node") or not os.path.exists(PORTKEY_JS)):
            return "no Portkey gateway (bash bench/setup_portkey.sh)"
        if self.name in ("lmgate", "lmgate_store") and not os.path.exists(os.path.join(BIN, "lmgate")):
            return "no lmgate console script next to this interpreter"
        return None

    def measure(self, seconds: float, streams: int) -> dict:
        log_path = os.path.join(self.tmp, f"{self.name}.log")
        log = open(log_path, "w")  # noqa: SIM115 - closed in finally
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd, start_new_session=True
        )
        try:
            while post(self.port, self.headers, 2.0) != 200:
                if proc.poll() is not None or time.perf_counter() - t0 > 120:
                    raise RuntimeError(f"{self.name} did not come up; see {log_path}")
                time.sleep(0.02)
            startup = time.perf_counter() - t0
            time.sleep(1.0)  # start-up background work settles before we call it idle
            idle_rss = tree_rss_mb(proc.pid)
            warm = [post(self.port, self.headers) for _ in range(50)]
            if warm.count(200) < 50:
                raise RuntimeError(f"{self.name}: warm-up requests failed: {warm}; see {log_path}")
            return {"startup_s": startup, "idle_rss_mb": idle_rss, **self.load(proc.pid, seconds, streams)}
        finally:
            stop(proc)
            log.close()

    def load(self, pid: int, seconds: float, streams: int) -> dict:
        # an unmeasured 1 s at c=50 first: Node's JIT (and every pool) warm before the figures are taken
        wrk(self.port, 50, 1.0, self.headers)
        cpu0 = tree_cpu_s(pid)
        c50 = wrk(self.port, 50, seconds, self.headers)
        cpu = tree_cpu_s(pid) - cpu0
        c1 = wrk(self.port, 1, seconds, self.headers)
        st = stream_stats(self.port, self.headers, streams)
        return {
            "rps_c50": c50["rps"],
            "p50_c50_ms": c50["p50_ms"],
            "p99_c50_ms": c50["p99_ms"],
            "cpu_ms_per_req": cpu / max(1, c50["requests"]) * 1000,
            "rps_c1": c1["rps"],
            "p50_c1_ms": c1["p50_ms"],
            "p99_c1_ms": c1["p99_ms"],
            "stream_ttfb_ms": st["ttfb_ms"],
            "stream_total_ms": st["total_ms"],
            "rss_after_load_mb": tree_rss_mb(pid),
            "errors": c50["errors"] + c1["errors"],
            **({"stream_error": st["stream_error"]} if "stream_error" in st else {}),
        }


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def measure_upstream(port: int, pid: int, seconds: float, streams: int) -> dict:
    """The upstream alone: wrk straight at it (its CPU per request is the fake's own)."""
    cpu0 = tree_cpu_s(pid)
    c50 = wrk(port, 50, seconds, {})
    cpu = tree_cpu_s(pid) - cpu0
    c1 = wrk(port, 1, seconds, {})
    st = stream_stats(port, {}, streams)
    return {
        "rps_c50": c50["rps"],
        "p50_c50_ms": c50["p50_ms"],
        "p99_c50_ms": c50["p99_ms"],
        "cpu_ms_per_req": cpu / max(1, c50["requests"]) * 1000,
        "rps_c1": c1["rps"],
        "p50_c1_ms": c1["p50_ms"],
        "p99_c1_ms": c1["p99_ms"],
        "stream_ttfb_ms": st["ttfb_ms"],
        "stream_total_ms": st["total_ms"],
        "errors": c50["errors"] + c1["errors"],
    }


def summarize(rounds: list[dict]) -> dict:
    """{server: {metric: {median, min, max, n}}}, plus the per-round "added" figures over the upstream."""
    per: dict[str, dict[str, list[float]]] = {}
    notes: dict[str, str] = {}
    for r in rounds:
        up = r.get("upstream", {})
        for server, m in r.items():
            if "error" in m or "skipped" in m:
                continue
            vals = dict(m)
            if server != "upstream" and up and "error" not in up:
                for k in ("p50_c1_ms", "stream_ttfb_ms", "stream_total_ms"):
                    vals["added_" + k] = m[k] - up[k]
            for k, v in vals.items():
                if isinstance(v, (int, float)) and v == v:  # numbers only; nan = not measured
                    per.setdefault(server, {}).setdefault(k, []).append(v)
                elif k == "stream_error":
                    notes.setdefault(server, v)
    out: dict = {}
    for server, metrics in per.items():
        out[server] = {
            k: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
            for k, v in metrics.items()
        }
        if server in notes:
            out[server]["stream_error"] = notes[server]
    return out


def num(x: float) -> str:
    if x != x:  # nan
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


ROWS = [
    ("rps_c50", "requests/s, c=50"),
    ("p50_c50_ms", "p50 latency, c=50 (ms)"),
    ("p99_c50_ms", "p99 latency, c=50 (ms)"),
    ("cpu_ms_per_req", "server CPU per request, c=50 (ms)"),
    ("rps_c1", "requests/s, c=1"),
    ("p50_c1_ms", "p50 latency, c=1 (ms)"),
    ("added_p50_c1_ms", "added p50 latency, c=1 (ms)"),
    ("stream_ttfb_ms", "stream time to first byte, p50 (ms)"),
    ("added_stream_ttfb_ms", "added stream time to first byte (ms)"),
    ("stream_total_ms", "stream total, p50 (ms)"),
    ("added_stream_total_ms", "added stream total (ms)"),
    ("startup_s", "start-up to the first forwarded 200 (s)"),
    ("idle_rss_mb", "idle RSS, process tree (MiB)"),
    ("rss_after_load_mb", "RSS after load (MiB)"),
    ("errors", "errors (non-2xx, timeouts)"),
]
NAMES = {
    "upstream": "upstream alone",
    "lmgate": "lmgate",
    "lmgate_store": "lmgate + log store",
    "litellm": "LiteLLM",
    "portkey": "Portkey gateway",
    "bare": "bare ASGI + aiohttp",
    "bare_httpx": "bare ASGI + httpx",
}


def markdown(summary: dict) -> str:
    servers = [s for s in SERVERS if s in summary["servers"]]
    lines = ["| metric | " + " | ".join(NAMES[s] for s in servers) + " |", "|---" * (len(servers) + 1) + "|"]
    for key, label in ROWS:
        cells = []
        for s in servers:
            st = summary["servers"][s].get(key)
            cells.append("–" if st is None else f"{num(st['median'])} ({num(st['min'])}–{num(st['max'])})")
        if any(c != "–" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for s in servers:
        if summary["servers"][s].get("stream_error"):
            lines += ["", f"{NAMES[s]}: streaming failed: `{summary['servers'][s]['stream_error'][:200]}`"]
    lines += ["", "| issue 18 target (lmgate) | measured | |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {v} |" for t, m, v, _ in targets(summary)]
    return "\n".join(lines)


def _round_ratio(rounds: list[dict], a: str, b: str, key: str) -> float | None:
    """Median over rounds of rounds[a][key] / rounds[b][key] (both measured in the same round)."""
    vals = [
        r[a][key] / r[b][key]
        for r in rounds
        if a in r
        and b in r
        and r[a].get(key)
        and r[b].get(key)
        and "error" not in r[a]
        and "error" not in r[b]
    ]
    return statistics.median(vals) if vals else None


def targets(summary: dict) -> list[tuple[str, str, str, bool | None]]:
    """Issue 18's "done when" figures for the forwarding path: (target, measured, verdict, met)."""
    rows: list[tuple[str, str, str, bool | None]] = []
    rounds, servers = summary.get("rounds", []), summary.get("servers", {})
    lm = servers.get("lmgate", {})

    def add(target: str, value: float | None, fmt: str, ok: bool | None) -> None:
        measured = "not measured" if value is None else fmt.format(value)
        rows.append((target, measured, "–" if ok is None else ("met" if ok else "not met"), ok))

    r = _round_ratio(rounds, "lmgate", "portkey", "rps_c50")
    add("requests/s at c=50 ≥ 2× the Portkey gateway's", r, "{:.2f}×", None if r is None else r >= 2)
    r = _round_ratio(rounds, "lmgate", "bare", "rps_c50")
    add(
        "requests/s at c=50 ≥ 50% of the bare aiohttp forwarder's",
        r,
        "{:.0%}",
        None if r is None else r >= 0.5,
    )
    r = _round_ratio(rounds, "lmgate_store", "lmgate", "rps_c50")
    add(
        "(issue 16) requests/s at c=50 with the log store on ≥ 90% of lmgate's without",
        r,
        "{:.0%}",
        None if r is None else r >= 0.9,
    )
    for key, label, limit in (
        ("added_p50_c1_ms", "added p50 latency at c=1 ≤ 0.3 ms", 0.3),
        ("added_stream_ttfb_ms", "added stream time to first byte ≤ 0.5 ms", 0.5),
        ("cpu_ms_per_req", "server CPU per request ≤ 0.5 ms", 0.5),
    ):
        v = lm.get(key, {}).get("median")
        add(label, v, "{:.2f} ms", None if v is None else v <= limit)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round, 1 s wrk runs, fewer streamed requests")
    ap.add_argument("--rounds", type=int, help="rounds over all servers (default 3, quick 1)")
    ap.add_argument("--seconds", type=float, help="seconds per wrk run (default 5, quick 1)")
    ap.add_argument("--servers", nargs="+", choices=SERVERS, default=SERVERS)
    ap.add_argument("--markdown", action="store_true", help="print the table too")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `finally` stops the servers
    rounds_n = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    streams = 20 if args.quick else 200
    if not shutil.which("wrk"):
        print(json.dumps({"skipped": "wrk not installed (apt-get install wrk)"}))
        return 0
    started = time.time()
    load_start = [round(x, 2) for x in os.getloadavg()]
    tmp = tempfile.mkdtemp(prefix="bench-forward-")
    fake = subprocess.Popen(
        [sys.executable, os.path.join(BENCH, "fake_openai.py"), "--max-seconds", "3600"],
        stdout=subprocess.PIPE,
        text=True,
    )
    skipped: dict[str, str] = {}
    rounds: list[dict] = []
    try:
        line = fake.stdout.readline() if fake.stdout else ""
        up_port = int(line.split()[1])
        for _ in range(rounds_n):
            r: dict = {}
            for name in args.servers:
                if name in skipped:
                    continue
                try:
                    if name == "upstream":
                        r[name] = measure_upstream(up_port, fake.pid, seconds, streams)
                        continue
                    server = Server(name, up_port, tmp)
                    why = server.missing()
                    if why:
                        skipped[name] = why
                        print(f"skipped {name}: {why}", file=sys.stderr, flush=True)
                        continue
                    r[name] = server.measure(seconds, streams)
                except Exception as error:  # noqa: BLE001 - one server failing must not hide the others
                    r[name] = {"error": f"{type(error).__name__}: {error}"}
                    print(f"error: {name}: {r[name]['error']}", file=sys.stderr, flush=True)
                print(f"  {name}: {json.dumps(r[name])}", file=sys.stderr, flush=True)
            rounds.append(r)
    finally:
        fake.terminate()
        fake.wait(5)
    summary = {
        "servers": summarize(rounds),
        "skipped": skipped,
        "errors": [f"{n}: {m['error']}" for r in rounds for n, m in r.items() if "error" in m],
        "rounds": rounds,
        "meta": {
            "rounds": rounds_n,
            "wrk_seconds": seconds,
            "streamed_requests": streams,
            "quick": args.quick,
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)) + " UTC",
            "duration_s": round(time.time() - started, 1),
            "loadavg_start": load_start,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
    }
    if not summary["errors"]:
        shutil.rmtree(tmp, ignore_errors=True)  # kept on failure: the errors name the server logs
    if args.markdown:
        print(markdown(summary), flush=True)
    print(json.dumps(summary), flush=True)
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
