"""How fast the dashboard's queries answer on a SQLite log store of N calls.

    python bench/ui_queries.py 100000            # fills /tmp/lmgate-ui-bench-100000.sqlite3 once
    python bench/ui_queries.py 100000 --db PATH

Calls are spread over the last 7 days (3 models, 3 keys, 2% failures, ~300-byte prompts);
each query runs twice (cold, warm) through ``lmgate.ui.query``, the functions behind
``/ui/api``. Prints milliseconds per query.
"""

from __future__ import annotations

import argparse
import random
import time

import orjson

from lmgate.store import open_store
from lmgate.store.rows import row_from_payload
from lmgate.ui import query


def fill(store: object, n: int, now: float) -> None:
    rng = random.Random(1)
    batch = []
    for i in range(n):
        start = now - rng.random() * 7 * 86400
        record = {
            "litellm_call_id": f"bench-{i}",
            "startTime": start,
            "endTime": start + rng.lognormvariate(-2, 1),
            "status": "failure" if i % 50 == 0 else "success",
            "model": rng.choice(["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku"]),
            "custom_llm_provider": "openai",
            "prompt_tokens": 10,
            "completion_tokens": 20,
            "total_tokens": 30,
            "response_cost": 0.0001,
            "request_tags": ["bench"],
            "metadata": {"user_api_key_hash": rng.choice(["h1", "h2", "h3"])},
            "messages": [{"role": "user", "content": "hello " * 50}],
        }
        batch.append(row_from_payload(orjson.dumps(record)))
        if len(batch) == 5000:
            store.write(batch)  # type: ignore[attr-defined]
            batch = []
    store.write(batch)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calls", type=int)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    now = time.time()
    store = open_store(args.db or f"/tmp/lmgate-ui-bench-{args.calls}.sqlite3")
    if store.totals()["requests"] < args.calls:
        fill(store, args.calls, now)
    holder = query.Viewer(admin=False, key_hash="h2")
    cases = [
        ("overview, 24 hours", lambda: query.overview(store, {"range": "24h"}, query.ADMIN, now)),
        ("overview, 7 days", lambda: query.overview(store, {"range": "7d"}, query.ADMIN, now)),
        ("breakdown by model, 24 hours", lambda: query.breakdown(store, {"range": "24h"}, query.ADMIN, now)),
        ("logs, first page", lambda: query.logs(store, {}, query.ADMIN, now)),
        ("logs, model filter", lambda: query.logs(store, {"model": "gpt-4o"}, query.ADMIN, now)),
        ("logs, a key holder", lambda: query.logs(store, {}, holder, now)),
    ]
    for name, run in cases:
        times = []
        for _ in range(2):
            started = time.perf_counter()
            run()
            times.append((time.perf_counter() - started) * 1000)
        print(f"{name:30s} {times[0]:8.1f} ms {times[1]:8.1f} ms")
    store.close()


if __name__ == "__main__":
    main()
