#!/usr/bin/env python3
"""The CPU a virtual key costs per proxy request, against the master key: paired, in process.

    PYTHONPATH=src python bench/keys_auth.py [--keys 1000] [--requests 300] [--pairs 10]

Two apps from the same config but for ``general_settings.virtual_keys`` (a real SQLite key
store with ``--keys`` keys and 100 teams), each answering ``POST /v1/chat/completions`` for a
``mock_response`` deployment through httpx's ASGI transport. Blocks of ``--requests``
requests alternate master-key app / keyed app (A B A B …, so drift hits both alike); each
block's ``time.process_time()`` per request is one sample. Also timed alone: one
``authenticate()`` call of each backend (the keyed one a cache hit, as in steady state).
Not part of bench/run.py: the key path has no reference counterpart runnable here.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from lmgate.proxy.app import create_app
from lmgate.proxy.config import load_config

MASTER = "sk-bench-master-000000000"
BODY = {"model": "fast", "messages": [{"role": "user", "content": "Hi"}]}


def make_app(tmp: Path, keyed: bool) -> Any:
    path = tmp / f"config-{keyed}.yaml"
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params: {{model: openai/gpt-4o-mini, mock_response: "Hello"}}
        general_settings:
          master_key: {MASTER}
          virtual_keys: {str(keyed).lower()}
          data_dir: {tmp / "data"}
        """)
    )
    return create_app(load_config(path))


async def block(client: httpx.AsyncClient, key: str, n: int) -> float:
    headers = {"Authorization": f"Bearer {key}"}
    started = time.process_time()
    for _ in range(n):
        r = await client.post("/v1/chat/completions", json=BODY, headers=headers)
        assert r.status_code == 200, r.text
    return (time.process_time() - started) / n


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lmgate-keys-bench-"))
    plain, keyed = make_app(tmp, False), make_app(tmp, True)
    async with plain.router.lifespan_context(plain), keyed.router.lifespan_context(keyed):
        store = keyed.state.proxy.key_store
        teams = [
            (await store.create_team({"models": [], "metadata": {}, "blocked": False}, None))["team_id"]
            for _ in range(100)
        ]
        key = ""
        for i in range(args.keys):
            columns = {
                "key_alias": f"k{i}",
                "team_id": teams[i % 100],
                "models": ["fast"],
                "metadata": {"i": i},
                "tags": [],
                "blocked": False,
            }
            key, _ = await store.create_key(columns, None)
        transport_a, transport_b = httpx.ASGITransport(app=plain), httpx.ASGITransport(app=keyed)
        async with (
            httpx.AsyncClient(transport=transport_a, base_url="http://p") as a,
            httpx.AsyncClient(transport=transport_b, base_url="http://p") as b,
        ):
            await block(a, MASTER, 50)  # warm both
            await block(b, key, 50)
            master_s, key_s = [], []
            for _ in range(args.pairs):
                master_s.append(await block(a, MASTER, args.requests))
                key_s.append(await block(b, key, args.requests))
        conn = None
        backends = {
            "master": (plain.state.proxy.backend, MASTER),
            "virtual key (cached)": (keyed.state.proxy.backend, key),
        }
        auth_us = {}
        for name, (backend, k) in backends.items():
            n = 20000
            started = time.process_time()
            for _ in range(n):
                await backend.authenticate(k, conn)
            auth_us[name] = (time.process_time() - started) / n * 1e6
    diffs = [k - m for m, k in zip(master_s, key_s, strict=True)]
    print(f"{args.keys} keys, 100 teams, SQLite; {args.pairs} pairs of {args.requests} requests")
    print(f"master-key request : {statistics.median(master_s) * 1e6:8.1f} us CPU (median of blocks)")
    print(f"virtual-key request: {statistics.median(key_s) * 1e6:8.1f} us CPU")
    print(
        f"difference (paired): {statistics.median(diffs) * 1e6:8.1f} us median, range {min(diffs) * 1e6:.1f} .. {max(diffs) * 1e6:.1f}"
    )
    for name, us in auth_us.items():
        print(f"authenticate() alone, {name}: {us:.2f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=10)
    asyncio.run(main(parser.parse_args()))
