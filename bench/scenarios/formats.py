#!/usr/bin/env python3
"""Scenario `formats`: the proxy's added latency per API format, against chat completions (issue 17).

    python bench/scenarios/formats.py             # 3 rounds, 3 s wrk runs
    python bench/scenarios/formats.py --quick     # 1 round, 1 s wrk runs

One fake upstream (bench/fake_openai.py) answers chat completions, Anthropic's /v1/messages and
OpenAI's /v1/responses with the same text; one `lmgate serve` (one worker, no key, no logger)
forwards to it with three deployments: `gpt` (openai/…, the upstream's OpenAI API), `claude`
(anthropic/…, its Messages API) and `azure` (azure/…, its chat API under a deployment URL). Each route is measured with wrk, one at a time:

| route | what the proxy does | upstream endpoint it is compared with |
|---|---|---|
| `chat` | POST /v1/chat/completions to `gpt`: forwarded | /v1/chat/completions |
| `messages_passthrough` | POST /v1/messages to `claude`: passed through | /v1/messages |
| `messages_translated` | POST /v1/messages to `gpt`: Messages → chat → Messages | /v1/chat/completions |
| `responses_passthrough` | POST /v1/responses to `gpt`: passed through | /v1/responses |
| `responses_bridged` | POST /v1/responses to `claude`: Responses → chat → Messages and back | /v1/messages |
| `responses_bridged_chat` | POST /v1/responses to `azure` (a chat API): Responses → chat and back | /v1/chat/completions |

For each: requests/s at c=50, the server's CPU per request over that run (utime+stime from /proc
divided by the requests wrk counted: the figure that survives a busy machine best), and p50 at c=1; "added p50" is the route's p50 at c=1 minus the
upstream endpoint's own in the same round, and "vs chat" that minus chat's added p50 (the cost
of the format itself). Rounds alternate the routes; cells are medians over rounds. Prints a JSON
line (the summary) last; --markdown also prints the table. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
BIN = os.path.dirname(sys.executable)

CONFIG = """\
model_list:
  - model_name: gpt
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:{port}/v1", api_key: sk-bench}}
  - model_name: claude
    litellm_params: {{model: anthropic/claude-sonnet-4-20250514, api_base: "http://127.0.0.1:{port}", api_key: sk-bench}}
  - model_name: azure
    litellm_params: {{model: azure/gpt-4o-mini, api_base: "http://127.0.0.1:{port}", api_key: sk-bench}}
"""
HI = [{"role": "user", "content": "hi"}]
CHAT = {"messages": HI}
MESSAGES = {"max_tokens": 64, "messages": HI}
RESPONSES = {"input": "hi"}
# route → (path, body fields, model, the upstream endpoint it is compared with)
ROUTES: dict[str, tuple[str, dict, str, str]] = {
    "chat": ("/v1/chat/completions", CHAT, "gpt", "up_chat"),
    "messages_passthrough": ("/v1/messages", MESSAGES, "claude", "up_messages"),
    "messages_translated": ("/v1/messages", MESSAGES, "gpt", "up_chat"),
    "responses_passthrough": ("/v1/responses", RESPONSES, "gpt", "up_responses"),
    "responses_bridged": ("/v1/responses", RESPONSES, "claude", "up_messages"),
    "responses_bridged_chat": ("/v1/responses", RESPONSES, "azure", "up_chat"),
}
UPSTREAM: dict[str, tuple[str, dict]] = {
    "up_chat": ("/v1/chat/completions", CHAT),
    "up_messages": ("/v1/messages", MESSAGES),
    "up_responses": ("/v1/responses", RESPONSES),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lua(tmp: str, name: str, body: dict) -> str:
    path = os.path.join(tmp, f"{name}.lua")
    with open(path, "w") as f:
        f.write(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            'wrk.headers["anthropic-version"] = "2023-06-01"\n'
            f"wrk.body = {json.dumps(json.dumps(body))}\n"
        )
    return path


def parse_latency(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def wrk(url: str, script: str, connections: int, seconds: int) -> dict:
    cmd = [
        "wrk",
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        script,
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "requests": int(total.group(1)) if total else 0,
        "errors": int(bad.group(1)) if bad else 0,
        "p50_ms": parse_latency(lat.get("50", "")),
    }


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(url: str, body: dict) -> int:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "anthropic-version": "2023-06-01"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except Exception:  # noqa: BLE001 - not up yet, or refused: the caller checks
        return 0


def start_upstream() -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, os.path.join(BENCH, "fake_openai.py"), "--max-seconds", "1800"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError("fake_openai.py did not start")
    return proc, int(line.split()[1])


def start_proxy(tmp: str, upstream: int) -> tuple[subprocess.Popen, int]:
    config = os.path.join(tmp, "config.yaml")
    with open(config, "w") as f:
        f.write(CONFIG.format(port=upstream))
    port = free_port()
    proc = subprocess.Popen(
        [
            os.path.join(BIN, "lmgate"),
            "serve",
            "--config",
            config,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-store",  # no logger: the format's own cost, as the forward scenario measures chat
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):  # bounded: 60 s
        if post(url + "/v1/chat/completions", {"model": "gpt", **CHAT}) == 200:
            return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.1)  # polling a starting server, not synchronising a test
    proc.kill()
    raise RuntimeError("lmgate serve did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rounds, seconds = (1, 1) if args.quick else (3, 3)
    tmp = tempfile.mkdtemp(prefix="bench-formats-")
    upstream, up_port = start_upstream()
    proxy = None
    try:
        proxy, port = start_proxy(tmp, up_port)
        scripts = {n: lua(tmp, n, {"model": m, **b}) for n, (_, b, m, _) in ROUTES.items()}
        scripts.update({n: lua(tmp, n, {"model": "gpt-4o-mini", **b}) for n, (_, b) in UPSTREAM.items()})
        for name, (path, body, model, _) in ROUTES.items():  # every route answers before anything is measured
            status = post(f"http://127.0.0.1:{port}{path}", {"model": model, **body})
            if status != 200:
                raise RuntimeError(f"{name}: {path} answered {status}")
        samples: dict[str, list[dict]] = {}
        for _ in range(rounds):
            for name in [*UPSTREAM, *ROUTES]:
                if name in UPSTREAM:
                    url = f"http://127.0.0.1:{up_port}{UPSTREAM[name][0]}"
                else:
                    url = f"http://127.0.0.1:{port}{ROUTES[name][0]}"
                wrk(url, scripts[name], 50, 1)  # warm-up, not measured
                pid = upstream.pid if name in UPSTREAM else proxy.pid
                before = cpu_s(pid)
                c50 = wrk(url, scripts[name], 50, seconds)
                cpu = (cpu_s(pid) - before) / max(c50["requests"], 1) * 1000
                c1 = wrk(url, scripts[name], 1, seconds)
                samples.setdefault(name, []).append(
                    {
                        "rps_c50": c50["rps"],
                        "p50_c1_ms": c1["p50_ms"],
                        "cpu_ms": cpu,
                        "errors": c50["errors"] + c1["errors"],
                    }
                )
    finally:
        for proc in (proxy, upstream):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    summary: dict[str, dict] = {}
    for name, rows in samples.items():
        summary[name] = {
            "rps_c50": round(statistics.median(r["rps_c50"] for r in rows), 1),
            "p50_c1_ms": round(statistics.median(r["p50_c1_ms"] for r in rows), 3),
            "cpu_ms_per_request": round(statistics.median(r["cpu_ms"] for r in rows), 3),
            "errors": sum(r["errors"] for r in rows),
        }
    for name, (_, _, _, up) in ROUTES.items():
        added = [r["p50_c1_ms"] - u["p50_c1_ms"] for r, u in zip(samples[name], samples[up], strict=True)]
        summary[name]["added_p50_ms"] = round(statistics.median(added), 3)
    chat = summary["chat"]["added_p50_ms"]
    chat_cpu = summary["chat"]["cpu_ms_per_request"]
    for name in ROUTES:
        summary[name]["vs_chat_ms"] = round(summary[name]["added_p50_ms"] - chat, 3)
        summary[name]["cpu_vs_chat_ms"] = round(summary[name]["cpu_ms_per_request"] - chat_cpu, 3)
    if args.markdown:
        print(
            "| route | req/s c=50 | CPU/request (ms) | p50 c=1 (ms) | added p50 (ms) | vs chat (ms) | errors |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, row in summary.items():
            print(
                f"| {name} | {row['rps_c50']:,.0f} | {row['cpu_ms_per_request']:.3f} | {row['p50_c1_ms']:.3f} "
                f"| {row.get('added_p50_ms', '—')} | {row.get('vs_chat_ms', '—')} | {row['errors']} |"
            )
    print(json.dumps({"scenario": "formats", "rounds": rounds, "seconds": seconds, "results": summary}))


if __name__ == "__main__":
    main()
