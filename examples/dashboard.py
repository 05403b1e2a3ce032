"""``make dashboard``: the proxy on mock models, a burst of traffic, and the dashboard's URL.

Starts ``lmgate serve`` on 127.0.0.1 (mock models: no provider key, no network) with the log
store, a response cache and virtual keys on, in a fresh temp data directory; makes three
virtual keys with budgets; sends a burst of calls through the official ``openai`` client
(several models, users, tags, streams, repeats the cache answers, a model that fails); waits
until the store holds them; prints the URL and the key to log in with. Then it keeps sending a
call every few seconds (watch the logs page's live tail) until Ctrl-C, and stops the proxy.

    python examples/dashboard.py [--port 4000] [--burst 150] [--once]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai

MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku")
QUESTIONS = (
    "Summarise the release notes in three bullet points",
    "What is the capital of Australia?",
    "Write a haiku about log pipelines",
    "Translate 'good morning' into French",
    "Explain p95 latency to a new engineer",
)
READY_POLLS = 600


def config(tmp: Path, master: str) -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: gpt-4o-mini
            litellm_params: {{model: openai/gpt-4o-mini, mock_response: "A short answer from a mock gpt-4o-mini.", mock_delay: 0.03}}
          - model_name: gpt-4o
            litellm_params: {{model: openai/gpt-4o, mock_response: "A longer, more careful answer from a mock gpt-4o, with a second sentence.", mock_delay: 0.12}}
          - model_name: claude-3-5-haiku
            litellm_params: {{model: anthropic/claude-3-5-haiku-20241022, mock_response: "Hello from a mock Claude.", mock_delay: 0.06}}
          - model_name: flaky
            litellm_params: {{model: openai/gpt-3.5-turbo, mock_response: "litellm.RateLimitError"}}
        general_settings:
          master_key: {master}
          virtual_keys: true
        litellm_settings:
          callbacks: ["store"]
          cache: true
          cache_params: {{type: local}}
        callback_settings:
          store: {{flush_interval: 0.2}}
        """)
    )
    return path


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(READY_POLLS):
        try:
            if httpx.get(f"{url}/health/liveliness", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise SystemExit(f"lmgate serve exited with {proc.returncode}")
    raise SystemExit("lmgate serve did not start")


def make_keys(url: str, master: str) -> dict[str, str]:
    admin = {"Authorization": f"Bearer {master}"}
    httpx.post(
        f"{url}/team/new",
        json={"team_id": "search", "team_alias": "search", "max_budget": 5},
        headers=admin,
        timeout=10,
    )
    keys = {}
    for alias, team, budget in (
        ("search-backend", "search", 1.0),
        ("support-bot", None, 0.5),
        ("ci", None, 0.01),
    ):
        body = {"key_alias": alias, "user_id": f"{alias}-owner", "max_budget": budget}
        if team:
            body["team_id"] = team
        r = httpx.post(f"{url}/key/generate", json=body, headers=admin, timeout=10)
        r.raise_for_status()
        keys[alias] = r.json()["key"]
    return keys


def one_call(url: str, key: str, rng: random.Random, n: int) -> bool:
    """One call like an application makes; False when it failed (some are meant to)."""
    client = openai.OpenAI(api_key=key, base_url=f"{url}/v1", max_retries=0)
    model = "flaky" if n % 23 == 7 else rng.choice(MODELS)
    # every fifth call repeats an earlier question: the cache answers it
    question = f"{rng.choice(QUESTIONS)} (request {n})" if n % 5 else QUESTIONS[0]
    kwargs = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "user": rng.choice(["ana", "ben", "chen", "dara"]),
        # a bound on the answer, as an application sets one: a request reserves its worst case
        # against its key's budget (docs/keys.md, "Budgets"), and the ci key's is $0.01
        "max_tokens": 256,
        "extra_body": {
            "metadata": {"tags": [rng.choice(["prod", "staging"]), rng.choice(["chat", "search"])]}
        },
    }
    try:
        if n % 4 == 1:
            for _ in client.chat.completions.create(stream=True, **kwargs):
                pass
        else:
            client.chat.completions.create(**kwargs)
        return True
    except openai.APIError:
        return False
    finally:
        client.close()


def stored(url: str, master: str) -> int:
    r = httpx.get(
        f"{url}/ui/api/overview",
        params={"range": "all"},
        headers={"Authorization": f"Bearer {master}"},
        timeout=10,
    )
    return int(r.json()["totals"]["requests"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("DASHBOARD_PORT", "4000")))
    parser.add_argument("--burst", type=int, default=150, help="calls sent at start (default 150)")
    parser.add_argument("--once", action="store_true", help="stop after the burst (for tests)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lmgate-dashboard-"))
    master = "sk-demo-" + secrets.token_urlsafe(12)
    url = f"http://127.0.0.1:{args.port}"
    env = {**os.environ, "LMGATE_DATA_DIR": str(tmp / "data")}
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115 - open for the server's whole life
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lmgate",
            "serve",
            "--config",
            str(config(tmp, master)),
            "--host",
            "127.0.0.1",
            "--port",
            str(args.port),
        ],
        stdout=log,
        stderr=log,
        env=env,
    )
    try:
        wait_ready(url, proc)
        keys = make_keys(url, master)
        callers = [master, *keys.values()]
        rng = random.Random(7)
        with ThreadPoolExecutor(8) as pool:
            results = list(
                pool.map(
                    lambda n: one_call(url, callers[n % len(callers)], random.Random(n), n), range(args.burst)
                )
            )
        for _ in range(READY_POLLS):  # the store logger writes in batches: wait for the last one
            if stored(url, master) >= args.burst:
                break
            try:
                proc.wait(timeout=0.05)
                raise SystemExit(f"lmgate serve exited with {proc.returncode}; see {tmp / 'serve.log'}")
            except subprocess.TimeoutExpired:
                pass
        print(
            f"\n{args.burst} calls sent through the openai client ({results.count(False)} failed on purpose), "
            f"{stored(url, master)} stored."
        )
        print(f"\n  dashboard:  {url}/ui/overview?range=15m")
        print(f"  log in with the master key  {master}")
        print(f"  or a key holder's key       {keys['support-bot']}  (sees only its own calls)")
        print(f"\n  data: {tmp}   (lmgate logs --db {tmp / 'data' / 'logs.sqlite3'} tail)")
        if args.once:
            return 0
        print("\nsending a call every 3 seconds (the logs page's live tail shows them); Ctrl-C stops")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        n = args.burst
        while not stop.wait(3.0):
            one_call(url, callers[n % len(callers)], rng, n)
            n += 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


if __name__ == "__main__":
    raise SystemExit(main())
