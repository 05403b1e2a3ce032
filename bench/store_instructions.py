"""What the log store costs the proxy's serving process, in instructions: a count that does not
move with the machine's load, where requests per second on a shared VM move by a fifth between
rounds.

    .venv/bin/python bench/store_instructions.py [--path mock|forward] [--body minimal|typical]
                                                 [--requests 1000] [--cache-sim]

For each of `lmgate serve --no-store` and `lmgate serve` with the store on (the config of
bench/scenarios/proxy.py; with `--path forward`, a deployment whose `api_base` is
bench/fake_openai.py), the server runs under valgrind's callgrind with instrumentation off. After
a warm-up it is switched on (`callgrind_control -i on`) for `--requests` chat completions sent one
at a time over one kept-alive connection, then off, and the profile is dumped. The count covers
every thread of the serving process, divided by the requests; the store's writer child is another
process and is not counted. `--cache-sim` adds callgrind's simulated cache misses. `--body typical`
sends a chat request of a typical size (bench/scenarios/forward.py `TYPICAL_BODY`, ~2.5 kB) in
place of the least one, and on the forwarding path the upstream answers with ~1.5 kB of text.

The ratio printed is plain / store, by instructions. Throughput has run a few points below it
(docs/store.md, "Instructions and time"). Needs valgrind (`apt-get install valgrind`); ~30 s a
path.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "scenarios"))

from _common import exit_on_sigterm, start_helper, stop_helper  # noqa: E402
from forward import BODY, TYPICAL_BODY  # noqa: E402
from forward import CONFIG as FORWARD_CONFIG  # noqa: E402
from proxy import CONFIG as MOCK_CONFIG  # noqa: E402
from proxy import STORE_CONFIG, free_port, http_get, server_cmd  # noqa: E402

# Under callgrind the server answers ~50 requests a second: the store's 1 s flush timer would cut
# its batches at a twentieth of the 1,000 records that cut them at full speed, and the delivery
# thread's work per batch (in the serving process) would be spread over too few records
BATCHES_BY_SIZE = "    flush_interval: 3600\n"


def send(port: int, n: int, body: bytes) -> None:
    """``n`` requests, one at a time on one kept-alive connection; raises on anything but a 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(n):
            conn.request(
                "POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"}
            )
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {answer[:200]!r}")
    finally:
        conn.close()


def totals(dump: str) -> dict[str, int]:
    """The events of the explicit dump. A dump writes one file per part (``<out>.1``: the measured
    window) and zeroes the counters; the file callgrind writes at exit (``<out>``) holds only the
    shutdown, so it is left out rather than trusted to be ~0."""
    summed: dict[str, int] = {}
    for path in glob.glob(dump + ".*"):
        events: list[str] = []
        with open(path) as f:
            for line in f:
                if line.startswith("events:"):
                    events = line.split()[1:]
                elif line.startswith("totals:"):
                    for name, value in zip(events, line.split()[1:], strict=False):
                        summed[name] = summed.get(name, 0) + int(value)
    return summed


def measure(
    store: bool, config_text: str, body: bytes, requests: int, warmup: int, cache_sim: bool
) -> dict[str, float]:
    tmp = tempfile.mkdtemp(prefix="bench-instr-")
    config = os.path.join(tmp, "config.yaml")
    with open(config, "w") as f:
        f.write(config_text)
        if store:
            f.write(STORE_CONFIG.format(path=os.path.join(tmp, "logs.sqlite3")) + BATCHES_BY_SIZE)
    port = free_port()
    out = os.path.join(tmp, "callgrind.out")
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        *(["--cache-sim=yes"] if cache_sim else []),
        sys.executable,  # the console script is a text file: valgrind runs its interpreter
        *server_cmd("lmgate", config, port, store),
    ]
    # `writer: auto` counts the CPUs this process may use, and valgrind runs every thread on one:
    # the child writer is what `lmgate serve` picks on the bench's two cores
    env = {**os.environ, "LMGATE_STORE_WRITER": "process"}
    log_path = os.path.join(tmp, "server.log")
    with open(log_path, "w") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 300
        while http_get(f"http://127.0.0.1:{port}/health/liveliness", 5.0) != 200:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: see {log_path}")
            time.sleep(0.5)

        def control(*args: str) -> None:
            subprocess.run(["callgrind_control", *args, str(server.pid)], check=True, capture_output=True)

        send(port, warmup, body)
        control("-i", "on")
        send(port, requests, body)
        control("-i", "off")
        control("-d")
    except BaseException:
        print(f"kept for a look: {tmp}", file=sys.stderr)
        raise
    else:
        counts = {k: v / requests for k, v in totals(out).items()}
        shutil.rmtree(tmp, ignore_errors=True)
        return counts
    finally:
        server.terminate()
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--path", choices=("mock", "forward"), default="mock")
    ap.add_argument("--body", choices=("minimal", "typical"), default="minimal")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--cache-sim", action="store_true")
    args = ap.parse_args()
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    exit_on_sigterm()  # a SIGTERM still stops the servers (the `finally`s)
    upstream = None
    if args.path == "forward":
        answer = ["--answer-words", "250"] if args.body == "typical" else []
        upstream, port = start_helper("fake_openai.py", "--max-seconds", "1800", *answer)
        config_text = FORWARD_CONFIG.format(api_base=f"http://127.0.0.1:{port}/v1")
    else:
        config_text = MOCK_CONFIG
    try:
        body = TYPICAL_BODY if args.body == "typical" else BODY
        plain = measure(False, config_text, body, args.requests, args.warmup, args.cache_sim)
        store = measure(True, config_text, body, args.requests, args.warmup, args.cache_sim)
    finally:
        if upstream is not None:
            stop_helper(upstream)
    print(f"path: {args.path}, body: {args.body}, {args.requests} requests, serving process, per request\n")
    print("| event | plain (`--no-store`) | the store on | added |")
    print("|---|---|---|---|")
    for name in plain:
        added = store[name] - plain[name]
        share = f" ({added / plain[name]:+.1%})" if plain[name] else ""
        print(f"| {name} | {plain[name]:,.0f} | {store[name]:,.0f} | {added:+,.0f}{share} |")
    print(f"\nplain / store, instructions: {plain['Ir'] / store['Ir']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
