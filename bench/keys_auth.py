#!/usr/bin/env python3
"""What virtual keys cost per proxy request — authentication, limits, the budget's reservation
and settlement, spend accounting — against the master key alone: paired, in process.

    PYTHONPATH=src python bench/keys_auth.py [--keys 1000] [--requests 300] [--pairs 8] [--concurrency 50]

Four apps from one config but for ``general_settings.virtual_keys``, ``database_url`` and
``router_settings``:

- ``master``: the master key only (no key store);
- ``keys, SQLite``: a real SQLite key store with ``--keys`` keys in as many teams, each key and
  team with an rpm, tpm, parallel limit and a budget (every check runs), counters in process;
- ``keys, SQLite + Redis``: the same store, the counters in a real ``redis-server``, taken
  through per-instance leases (``proxy/leases.py``: a request is admitted against this
  instance's slice of each counter in memory; a round trip reports and resizes the slices —
  printed as requests admitted without one);
- ``keys, PostgreSQL + Redis``: the multi-instance set-up: the key store and ledger in a real
  PostgreSQL (``initdb`` + ``postgres`` on a free port, the tests' harness ``tests/pg.py``),
  the counters in the same Redis; its own 1,000 keys in 1,000 teams.

Each answers ``POST /v1/chat/completions`` for a ``mock_response`` deployment through httpx's
ASGI transport; requests rotate over every key (all cached after the warm-up, as in steady
state). CPU: blocks of ``--requests`` sequential requests alternate the apps (drift hits all
alike); each block's ``time.process_time()`` per request is one sample; the difference to the
master block of the same round is the keys' cost. The spend ledger's batches are written by a
child process, as in ``lmgate serve`` (``LMGATE_SPEND_WRITER=process``; ``inline`` writes them in
this process, in the figure): the child's CPU is not in the figure, nor the Redis server's. Throughput:
``--concurrency`` workers, requests per second of wall time, the master app's rate = 100%; each
app's measured run follows ``--warmup`` unmeasured requests at the same concurrency (every
app alike), so that a Redis app's leases are sized to the concurrent rate, as in steady state.
Not part of bench/run.py: the key path has no reference counterpart runnable here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from lmgate.proxy.app import create_app
from lmgate.proxy.config import load_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fakes.redis_server import RedisServer  # noqa: E402 - the tests' real redis-server runner
from pg import PostgresServer  # noqa: E402 - the tests' real PostgreSQL runner

MASTER = "sk-bench-master-000000000"
BODY = {"model": "fast", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16}
BIG = 10**9


def make_app(tmp: Path, keyed: bool, redis_url: str | None = None, database_url: str | None = None) -> Any:
    name = "master" if not keyed else "postgres" if database_url else "redis" if redis_url else "sqlite"
    path = tmp / f"config-{name}.yaml"
    router = f"router_settings: {{redis_url: '{redis_url}'}}\n" if redis_url else ""
    database = f"  database_url: {database_url}\n" if database_url else ""
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
        + database
        + router
    )
    return create_app(load_config(path))


async def populate(app: Any, n: int, teams_named: str = "team") -> list[str]:
    """``n`` teams and ``n`` keys (key i in team i), each with every limit, in one transaction."""
    from lmgate.control.schema import keys as keys_table
    from lmgate.control.schema import teams as teams_table
    from lmgate.control.store import hash_token

    store = app.state.proxy.key_store
    now = time.time()
    limits = {"rpm_limit": BIG, "tpm_limit": BIG, "max_budget": float(BIG), "budget_duration": "30d"}
    common = {"metadata": {}, "blocked": False, "spend": 0.0, "created_at": now, "updated_at": now}
    texts = [f"sk-bench-{i:06d}-{os.urandom(12).hex()}" for i in range(n)]
    teams = [{"team_id": f"{teams_named}-{i}", "models": [], **limits, **common} for i in range(n)]
    keys = [
        {
            "token": hash_token(text),
            "key_name": f"sk-...{text[-4:]}",
            "key_alias": f"k{i}",
            "team_id": f"{teams_named}-{i}",
            "models": ["fast"],
            "tags": [],
            "max_parallel_requests": BIG,
            **limits,
            **common,
        }
        for i, text in enumerate(texts)
    ]
    async with store.engine.begin() as conn:
        await conn.execute(teams_table.insert(), teams)
        await conn.execute(keys_table.insert(), keys)
    return texts


async def block(client: httpx.AsyncClient, keys: list[str], n: int, offset: int) -> float:
    started = time.process_time()
    for i in range(n):
        key = keys[(offset + i) % len(keys)]
        r = await client.post("/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
    return (time.process_time() - started) / n


async def throughput(client: httpx.AsyncClient, keys: list[str], total: int, concurrency: int) -> float:
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            key = keys[i % len(keys)]
            r = await client.post(
                "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"}
            )
            assert r.status_code == 200, r.text

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    # as `lmgate serve` does (cli.py): the spend ledger's batches written by a child process
    # (proxy/spend_process.py); its CPU is not in this process's figure, like Redis's
    os.environ.setdefault("LMGATE_SPEND_WRITER", "process")
    tmp = Path(tempfile.mkdtemp(prefix="lmgate-keys-bench-"))
    redis = RedisServer().start()
    try:
        with PostgresServer() as pg:
            apps = {
                "master": make_app(tmp, False),
                "keys, SQLite": make_app(tmp, True),
                "keys, SQLite + Redis": make_app(tmp, True, redis.url),
                "keys, PostgreSQL + Redis": make_app(tmp, True, redis.url, pg.create_database()),
            }
            await run(apps, args)
    finally:
        redis.stop()


async def run(apps: dict[str, Any], args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        started = time.perf_counter()
        keys = await populate(apps["keys, SQLite"], args.keys)
        pg_keys = await populate(apps["keys, PostgreSQL + Redis"], args.keys, "pg-team")  # its own counters
        print(f"{args.keys} keys in {args.keys} teams written twice in {time.perf_counter() - started:.1f}s")
        # every key is in the database; --active of them carry the traffic, so each is reused
        # within the cache's TTL as in steady state (a miss and a window's first request are
        # measured apart below)
        active = keys[: args.active]
        keysets = {
            "master": [MASTER],
            "keys, SQLite": active,
            "keys, SQLite + Redis": active,
            "keys, PostgreSQL + Redis": pg_keys[: args.active],
        }
        clients = {
            name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p")
            for name, app in apps.items()
        }
        try:
            for name, client in clients.items():  # warm: every key looked up and cached once
                await block(client, keysets[name], max(50, len(keysets[name])), 0)
            cpu: dict[str, list[float]] = {name: [] for name in apps}
            for round_ in range(args.pairs):
                for name, client in clients.items():
                    cpu[name].append(
                        await block(client, keysets[name], args.requests, round_ * args.requests)
                    )
            rps: dict[str, list[float]] = {name: [] for name in apps}
            for _ in range(3):
                for name, client in clients.items():
                    # every app, the master key's too, runs --warmup requests at the same
                    # concurrency first, unmeasured: while the other apps ran, a Redis app's
                    # leases went idle and gave their slices back, and a measured run would
                    # otherwise start by asking Redis for every counter's slice again
                    if args.warmup:
                        await throughput(client, keysets[name], args.warmup, args.concurrency)
                    rps[name].append(
                        await throughput(client, keysets[name], args.throughput, args.concurrency)
                    )
        finally:
            for client in clients.values():
                await client.aclose()
        for name in apps:
            enforcer = apps[name].state.proxy.enforcer
            if enforcer is None:
                continue
            await enforcer.writer.flush()
            print(
                f"{name}: ledger rows written {enforcer.writer.written}, settle errors {enforcer.settle_errors}"
            )
            counters = enforcer.counters
            batches = getattr(counters, "batches", 0)
            if batches:
                admitted = counters.local
                print(
                    f"{name}: {batches} Redis round trips, {counters.operations / batches:.1f} operations "
                    f"each; {admitted} admissions made in memory against a lease"
                )
    master_cpu = cpu["master"]
    master_rps = statistics.median(rps["master"])
    print(
        f"\n{args.pairs} rounds of {args.requests} sequential requests per app; throughput: "
        f"{args.throughput} requests at c={args.concurrency} after {args.warmup} unmeasured, median of 3"
    )
    print(f"{'app':26} {'CPU/request':>12} {'added (paired)':>22} {'req/s':>8} {'vs master':>10}")
    for name in apps:
        diffs = [k - m for m, k in zip(master_cpu, cpu[name], strict=True)]
        median_rps = statistics.median(rps[name])
        added = (
            "—"
            if name == "master"
            else f"{statistics.median(diffs) * 1e3:+.3f} ms ({min(diffs) * 1e3:+.2f}..{max(diffs) * 1e3:+.2f})"
        )
        print(
            f"{name:26} {statistics.median(cpu[name]) * 1e3:9.3f} ms {added:>22} {median_rps:8.0f} "
            f"{median_rps / master_rps:9.0%}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--throughput", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--warmup",
        type=int,
        default=2000,
        help="unmeasured requests at --concurrency before each app's throughput run (every app)",
    )
    parser.add_argument("--active", type=int, default=100, help="keys that carry the traffic")
    asyncio.run(main(parser.parse_args()))
