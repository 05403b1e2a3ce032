"""SQLite's store drops three indexes no query of its uses (schema version 5): each cost the writer
a b-tree insert per row. Every read the store makes, with each filter, is planned here on a copy
that still has them: no plan names one, so their loss changes no query."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
from sqlalchemy import event

from lmgate.store import Filters, Page, open_store
from lmgate.store.base import GROUP_BYS
from lmgate.store.rows import row_from_payload
from lmgate.store.schema import UNUSED_SQLITE_INDEXES

T0 = 1_700_000_000.0
FILTERS = [
    Filters(),
    Filters(model="m"),
    Filters(key="k"),
    Filters(team="t"),
    Filters(user="u"),
    Filters(status="failure"),
    Filters(trace_id="x"),
    Filters(search="hi"),
    Filters(since=T0, until=T0 + 86400),
    Filters(model="m", key="k", since=T0),
    Filters(team="t", user="u", until=T0 + 3600),
]


def rows(n: int = 300) -> list[dict[str, Any]]:
    return [
        row_from_payload(
            orjson.dumps(
                {
                    "litellm_call_id": f"c{i}",
                    "startTime": T0 + i * 60,
                    "endTime": T0 + i * 60 + 0.5,
                    "model": f"m{i % 3}",
                    "status": "success",
                    "metadata": {
                        "user_api_key_hash": f"k{i % 7}",
                        "user_api_key_team_id": f"t{i % 5}",
                        "user_api_key_user_id": f"u{i % 11}",
                    },
                }
            )
        )
        for i in range(n)
    ]


def test_the_dropped_indexes_serve_no_query(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = open_store(str(path))
    store.write(rows())
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert names.isdisjoint(UNUSED_SQLITE_INDEXES)  # version 5 dropped them

    # a copy with them back (as version 4 had them), planned as the store plans (no statistics)
    # and analysed (the planner then knows they are selective)
    old = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as src, sqlite3.connect(old) as conn:
        src.backup(conn)  # the WAL's pages too
        conn.execute("CREATE INDEX ix_calls_key_start ON calls (key_hash, start_time)")
        conn.execute("CREATE INDEX ix_calls_team_start ON calls (team_id, start_time)")
        conn.execute("CREATE INDEX ix_calls_user_start ON calls (user_id, start_time)")

    asked: list[tuple[str, Any]] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _seen(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        asked.append((statement, parameters))

    for f in FILTERS:
        store.query(f, Page(limit=50))
        store.query(f, Page(limit=50, offset=100))
        store.count(f)
        store.totals(f)
        store.timeseries("hour", f)
        store.timeseries("minute", f, group_by="model")
        store.newer(0, f)
        for group_by in GROUP_BYS:
            store.stats(group_by, f)
    store.get("c1")
    store.close()
    selects = [(s, p) for s, p in asked if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert len(selects) > 100
    with sqlite3.connect(old) as conn:
        for analysed in (False, True):
            if analysed:
                conn.execute("ANALYZE")
            for statement, parameters in selects:
                plan = " ".join(
                    str(r) for r in conn.execute("EXPLAIN QUERY PLAN " + statement, parameters or ())
                )
                assert not any(name in plan for name in UNUSED_SQLITE_INDEXES), (analysed, statement, plan)
