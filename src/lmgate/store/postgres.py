"""The log store on PostgreSQL, through SQLAlchemy 2 Core and psycopg 3 (sync: the store is
written by the batch processor's delivery thread and read by ``lmgate logs`` and /ui).

    store: {type: postgres, url: "postgresql://user:password@127.0.0.1:5432/lmgate"}

The same table and migrations as SQLite (``schema.py``): a ``call_id`` primary key, so a batch
delivered twice is stored once (``INSERT … ON CONFLICT DO NOTHING``). Latency percentiles are
``percentile_disc``, which picks the nearest rank, the rule of ``base.percentile``. Retention:
rows older than ``retention_days`` are deleted on open and then at most hourly after a write.

A URL naming another driver (``postgresql+asyncpg://`` of the key store, ``postgres://``) is
used with psycopg: same server, same database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    Float,
    case,
    cast,
    create_engine,
    func,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.elements import ColumnElement

from .base import BUCKETS, GROUP_BYS, SERIES_GROUP_BYS, Filters, series_rows
from .schema import COLUMNS, calls, migrate
from .sql import SQLStore, check_retention, column_key, sum_fields, totals_answer

PRUNE_EVERY_S = 3600.0
_INSERT = pg_insert(calls).on_conflict_do_nothing(index_elements=["call_id"]).returning(calls.c.call_id)
_DEFAULTS = [(str(c.name), getattr(c.default, "arg", None)) for c in calls.columns]


def psycopg_url(url: str) -> str:
    """``url`` with the psycopg 3 driver (any postgres:// or postgresql+driver:// form)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] not in ("postgres", "postgresql"):
        raise ValueError("store: a PostgreSQL url is postgresql://user:password@host:5432/database")
    return f"postgresql+psycopg://{rest}"


def location(url: str) -> str:
    """The URL as psycopg reads it, password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(psycopg_url(url)).render_as_string(hide_password=True)


class PostgresStore(SQLStore):
    """``base.LogStore`` on a PostgreSQL database; the tables are made if missing."""

    case_insensitive_like = True  # LIKE minds case here: a search is ILIKE, as SQLite's LIKE

    def __init__(
        self, url: str, *, retention_days: float | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        check_retention(retention_days)
        self.engine: Engine = create_engine(psycopg_url(url), pool_pre_ping=True)
        # where it is, without the password: names the spool directory and appears in messages
        self.location = location(url)
        self.retention_days = retention_days
        self._clock = clock
        with self.engine.begin() as conn:
            migrate(conn)
        self._pruned_at = 0.0
        self.prune()

    def __repr__(self) -> str:
        return f"<PostgresStore {self.location}>"

    # ---- writing ----
    def write(self, rows: Iterable[Mapping[str, Any]]) -> int:
        params = [{name: row.get(name, default) for name, default in _DEFAULTS} for row in rows]
        if not params:
            return 0
        with self.engine.begin() as conn:
            # SQLAlchemy sends it as multi-row INSERTs ("insertmanyvalues"); RETURNING counts the new
            written = len(conn.execute(_INSERT, params).all())
        if self.retention_days and self._clock() - self._pruned_at >= PRUNE_EVERY_S:
            self.prune()
        return written

    def stats(self, group_by: str, filters: Filters = Filters()) -> list[dict[str, Any]]:
        if group_by not in GROUP_BYS:
            raise ValueError(f"stats: group_by must be one of {', '.join(GROUP_BYS)}, got {group_by!r}")
        rows = self._aggregate(group_by, filters, (0.50, 0.95, 0.99), cache=True)
        for row in rows:
            row.pop("saved_cost", None)
        if group_by in ("day", "hour"):
            return sorted(rows, key=lambda r: (r["group"] is not None, r["group"] or ""))
        return sorted(rows, key=lambda r: (-r["requests"], r["group"] is not None, r["group"] or ""))

    def totals(self, filters: Filters = Filters()) -> dict[str, Any]:
        return totals_answer(self._aggregate(None, filters, (0.50, 0.95), cache=True)[0])

    def timeseries(
        self, bucket: str, filters: Filters = Filters(), group_by: str | None = None
    ) -> list[dict[str, Any]]:
        if bucket not in BUCKETS:
            raise ValueError(f"timeseries: bucket must be one of {', '.join(BUCKETS)}, got {bucket!r}")
        if group_by is not None and group_by not in SERIES_GROUP_BYS:
            raise ValueError(
                f"timeseries: group_by must be one of {', '.join(SERIES_GROUP_BYS)}, got {group_by!r}"
            )
        rows = self._aggregate(group_by, filters, (0.50, 0.95), bucket=BUCKETS[bucket])
        return series_rows(rows, sort=True)

    def _aggregate(
        self,
        group_by: str | None,
        filters: Filters,
        quantiles: tuple[float, ...],
        *,
        cache: bool = False,
        bucket: int | None = None,
    ) -> list[dict[str, Any]]:
        c = calls.c
        source: Any = calls
        keys: list[Any] = []
        if bucket is not None:
            start = cast(func.floor(c.start_time), BigInteger)
            keys.append((start // bucket * bucket).label("bucket_start"))
        if group_by is not None:
            key, source = _grouping(group_by)
            keys.append(key.label("group"))
        fields: list[Any] = sum_fields(_when)
        for q in quantiles:
            # percentile_disc: the first value whose rank reaches q * n, i.e. the nearest rank
            fields.append(func.percentile_disc(q).within_group(c.latency_ms).label(f"p{round(q * 100)}_ms"))
        if cache:
            saved = cast(cast(c.payload, JSONB)["saved_cache_cost"].astext, Float)
            fields += [
                cast(func.avg(case((c.cache_hit, 1.0), else_=0.0)), Float).label("cache_hit_rate"),
                func.coalesce(func.sum(case((c.cache_hit, saved), else_=0.0)), 0.0).label("saved_cost"),
            ]
        statement = select(*keys, *fields).select_from(source).where(*self._conditions(filters))
        if keys:
            statement = statement.group_by(*keys)
        with self.engine.connect() as conn:
            rows = [{str(k): v for k, v in r._mapping.items()} for r in conn.execute(statement)]
        for row in rows:
            row.setdefault("group", None)
            if "bucket_start" in row:
                row["bucket_start"] = int(row["bucket_start"])
        return rows


def _when(condition: ColumnElement[bool], then: Any, otherwise: Any) -> ColumnElement[Any]:
    return case((condition, then), else_=otherwise)


def _grouping(group_by: str) -> tuple[ColumnElement[Any], Any]:
    """The expression a grouping groups on and the FROM it needs: one row per tag (LEFT JOIN
    LATERAL: an untagged call counts once, under None)."""
    c = calls.c
    if group_by == "tag":
        tag = func.jsonb_array_elements_text(cast(c.tags, JSONB)).table_valued("value").lateral("tag")
        return tag.c.value, calls.outerjoin(tag, true())
    utc = func.timezone("UTC", func.to_timestamp(c.start_time))
    if group_by == "day":
        return func.to_char(utc, "YYYY-MM-DD"), calls
    if group_by == "hour":
        return func.to_char(utc, "YYYY-MM-DD HH24:00"), calls
    return column_key(group_by), calls


__all__ = ["COLUMNS", "PostgresStore", "location", "psycopg_url"]
