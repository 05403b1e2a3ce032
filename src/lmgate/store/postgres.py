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

import orjson
from sqlalchemy import (
    BigInteger,
    Engine,
    Float,
    and_,
    case,
    cast,
    create_engine,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.elements import ColumnElement

from .base import BUCKETS, GROUP_BYS, SERIES_FIELDS, SERIES_GROUP_BYS, TOTALS_FIELDS, Filters, Page
from .schema import COLUMNS, calls, migrate

PRUNE_EVERY_S = 3600.0
_INSERT = pg_insert(calls).on_conflict_do_nothing(index_elements=["call_id"]).returning(calls.c.call_id)
_DEFAULTS = [(str(c.name), getattr(c.default, "arg", None)) for c in calls.columns]
LIST_COLUMNS = [c for c in calls.columns if c.name != "payload"]


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


class PostgresStore:
    """``base.LogStore`` on a PostgreSQL database; the tables are made if missing."""

    def __init__(
        self, url: str, *, retention_days: float | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        if retention_days is not None and retention_days <= 0:
            raise ValueError(f"store: retention_days must be above 0, got {retention_days!r}")
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

    def prune(self) -> int:
        if not self.retention_days:
            return 0
        now = self._clock()
        self._pruned_at = now
        with self.engine.begin() as conn:
            deleted = conn.execute(
                calls.delete().where(calls.c.start_time < now - self.retention_days * 86400)
            )
        return deleted.rowcount

    # ---- reading ----
    def query(self, filters: Filters = Filters(), page: Page = Page()) -> list[dict[str, Any]]:
        statement = (
            select(*LIST_COLUMNS)
            .where(*_conditions(filters))
            .order_by(calls.c.start_time.desc(), calls.c.call_id.desc())
            .limit(page.limit)
            .offset(page.offset)
        )
        with self.engine.connect() as conn:
            return [_listed(r._mapping) for r in conn.execute(statement)]

    def get(self, call_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            found = conn.execute(select(calls).where(calls.c.call_id == call_id)).first()
        if found is None:
            return None
        row = _listed(found._mapping)
        row["payload"] = orjson.loads(row["payload"])
        return row

    def count(self, filters: Filters = Filters()) -> int:
        with self.engine.connect() as conn:
            statement = select(func.count()).select_from(calls).where(*_conditions(filters))
            return int(conn.execute(statement).scalar() or 0)

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
        row = self._aggregate(None, filters, (0.50, 0.95), cache=True)[0]
        if not row["requests"]:
            return {name: (0 if name in ("requests", "errors") else None) for name in TOTALS_FIELDS}
        row["error_rate"] = row["errors"] / row["requests"]
        return {name: row.get(name) for name in TOTALS_FIELDS}

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
        rows.sort(key=lambda r: (r["bucket_start"], r["group"] is not None, r["group"] or ""))
        return [{name: row.get(name) for name in SERIES_FIELDS} for row in rows]

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
        fields: list[Any] = [
            func.count().label("requests"),
            func.coalesce(func.sum(case((c.status != "success", 1), else_=0)), 0).label("errors"),
            func.coalesce(func.sum(c.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(c.completion_tokens), 0).label("completion_tokens"),
            func.coalesce(func.sum(c.total_tokens), 0).label("total_tokens"),
            func.coalesce(func.sum(c.cost), 0.0).label("cost"),
        ]
        for q in quantiles:
            # percentile_disc: the first value whose rank reaches q * n, i.e. the nearest rank
            fields.append(func.percentile_disc(q).within_group(c.latency_ms).label(f"p{round(q * 100)}_ms"))
        if cache:
            saved = cast(cast(c.payload, JSONB)["saved_cache_cost"].astext, Float)
            fields += [
                cast(func.avg(case((c.cache_hit, 1.0), else_=0.0)), Float).label("cache_hit_rate"),
                func.coalesce(func.sum(case((c.cache_hit, saved), else_=0.0)), 0.0).label("saved_cost"),
            ]
        statement = select(*keys, *fields).select_from(source).where(*_conditions(filters))
        if keys:
            statement = statement.group_by(*keys)
        with self.engine.connect() as conn:
            rows = [{str(k): v for k, v in r._mapping.items()} for r in conn.execute(statement)]
        for row in rows:
            row.setdefault("group", None)
            if "bucket_start" in row:
                row["bucket_start"] = int(row["bucket_start"])
        return rows

    def close(self) -> None:
        self.engine.dispose()


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
    return {
        "model": c.model,
        "provider": c.provider,
        "key": func.coalesce(c.key_alias, c.key_hash),
        "team": func.coalesce(c.team_alias, c.team_id),
        "user": func.coalesce(c.user_id, c.end_user),
    }[group_by], calls


def _conditions(f: Filters) -> list[ColumnElement[bool]]:
    c = calls.c
    out: list[ColumnElement[bool]] = []
    if f.model:
        out.append(or_(c.model == f.model, c.model_group == f.model, c.response_model == f.model))
    if f.provider:
        out.append(c.provider == f.provider)
    if f.key:
        out.append(or_(c.key_hash == f.key, c.key_alias == f.key))
    if f.team:
        out.append(or_(c.team_id == f.team, c.team_alias == f.team))
    if f.user:
        out.append(or_(c.user_id == f.user, c.end_user == f.user))
    if f.status:
        out.append(c.status == f.status)
    if f.since is not None:
        out.append(c.start_time >= f.since)
    if f.until is not None:
        out.append(c.start_time < f.until)
    if getattr(f, "trace_id", None):
        out.append(c.trace_id == f.trace_id)
    if f.search:
        escaped = f.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        out.append(c.payload.ilike(f"%{escaped}%", escape="\\"))  # case-insensitive, as SQLite's LIKE
    return [and_(*out)] if out else []


def _listed(mapping: Any) -> dict[str, Any]:
    row = {str(name): value for name, value in mapping.items()}
    row["tags"] = orjson.loads(row["tags"]) if row.get("tags") else []
    return row


__all__ = ["COLUMNS", "PostgresStore", "location", "psycopg_url"]
