"""What the log store costs the proxy's serving process, in instructions: a figure that does not
move with the machine's load, where requests per second on a shared VM move by a quarter.

    .venv/bin/python bench/store_instructions.py [--path mock|forward] [--requests 1000] [--cache-sim]

For each of `lmgate serve --no-store` and `lmgate serve` with the store on (the config of
bench/scenarios/proxy.py; with `--path forward`, a deployment whose `api_base` is
bench/fake_openai.py), the server runs under valgrind's callgrind with instrumentation off. After
a warm-up it is switched on (`callgrind_control -i on`) for `--requests` chat completions sent one
at a time over one kept-alive connection, then off, and the profile is dumped. The figure is every
thread of the serving process (the store's writer child is another process: not counted), divided
by the requests. `--cache-sim` adds callgrind's simulated L1 misses, which say why the store's
instructions take more than their share of the time (docs/store.md, "Instructions and time").

The ratio printed is plain / store: the share of its requests per second the proxy would keep if
time followed instructions. Needs valgrind (`apt-get install valgrind`); takes ~1 minute.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "scenarios"))

from _common import start_helper, stop_helper  # noqa: E402
from forward import CONFIG as FORWARD_CONFIG  # noqa: E402
from proxy import CONFIG as MOCK_CONFIG  # noqa: E402
from proxy import STORE_CONFIG, free_port, server_cmd  # noqa: E402

BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


def send(port: int, n: int) -> None:
    """``n`` requests, one at a time on one connection; raises unless every answer is a 200."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        buf = b""
        for _ in range(n):
            sock.sendall(REQUEST)
            while True:
                end = buf.find(b"\r\n\r\n")
                if end >= 0:
                    head = buf[:end].lower()
                    length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(buf) >= end + 4 + length:
                        if not head.startswith(b"http/1.1 200"):
                            raise RuntimeError(f"not a 200: {head.splitlines()[0]!r}")
                        buf = buf[end + 4 + length :]
                        break
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the server closed the connection")
                buf += chunk


def totals(pattern: str) -> dict[str, int]:
    """The events summed over callgrind's dump files (a dump writes one file per part)."""
    summed: dict[str, int] = {}
    for path in glob.glob(pattern):
        events: list[str] = []
        with open(path) as f:
            for line in f:
                if line.startswith("events:"):
                    events = line.split()[1:]
                elif line.startswith("totals:"):
                    for name, value in zip(events, line.split()[1:], strict=False):
                        summed[name] = summed.get(name, 0) + int(value)
    return summed


def measure(store: bool, config_text: str, requests: int, warmup: int, cache_sim: bool) -> dict[str, float]:
    tmp = tempfile.mkdtemp(prefix="bench-instr-")
    try:
        config = os.path.join(tmp, "config.yaml")
        with open(config, "w") as f:
            f.write(config_text)
            if store:
                f.write(STORE_CONFIG.format(path=os.path.join(tmp, "logs.sqlite3")))
        port = free_port()
        out = os.path.join(tmp, "callgrind.out")
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            *(["--cache-sim=yes"] if cache_sim else []),
            sys.executable,  # the console script is run by the venv's interpreter, under valgrind
            *server_cmd("lmgate", config, port, store),
        ]
        env = {**os.environ, "LMGATE_STORE_WRITER": "process"}  # as `auto` picks it on 2 CPUs
        with open(os.path.join(tmp, "server.log"), "w") as log:
            server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                deadline = time.monotonic() + 300
                while True:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness", timeout=5):
                            break
                    except OSError:
                        if server.poll() is not None or time.monotonic() > deadline:
                            raise RuntimeError(f"the server did not start: see {log.name}") from None
                        time.sleep(0.5)
                send(port, warmup)
                control = ["callgrind_control"]
                subprocess.run([*control, "-i", "on", str(server.pid)], check=True, capture_output=True)
                send(port, requests)
                subprocess.run([*control, "-i", "off", str(server.pid)], check=True, capture_output=True)
                subprocess.run([*control, "-d", str(server.pid)], check=True, capture_output=True)
            finally:
                server.terminate()
                server.wait(120)
        return {k: v / requests for k, v in totals(out + "*").items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--path", choices=("mock", "forward"), default="mock")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--cache-sim", action="store_true")
    args = ap.parse_args()
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    upstream = None
    if args.path == "forward":
        upstream, port = start_helper("fake_openai.py", "--max-seconds", "1800")
        config_text = FORWARD_CONFIG.format(api_base=f"http://127.0.0.1:{port}/v1")
    else:
        config_text = MOCK_CONFIG
    try:
        plain = measure(False, config_text, args.requests, args.warmup, args.cache_sim)
        store = measure(True, config_text, args.requests, args.warmup, args.cache_sim)
    finally:
        if upstream is not None:
            stop_helper(upstream)
    print(f"path: {args.path}, {args.requests} requests, serving process, per request\n")
    print("| event | plain (`--no-store`) | the store on | added |")
    print("|---|---|---|---|")
    for name in plain:
        added = store[name] - plain[name]
        print(
            f"| {name} | {plain[name]:,.0f} | {store[name]:,.0f} | {added:+,.0f} ({added / plain[name]:+.0%}) |"
        )
    print(f"\nplain / store, instructions: {plain['Ir'] / store['Ir']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
