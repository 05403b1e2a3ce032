"""The log store on one SQLite file (WAL mode), through SQLAlchemy 2 Core.

WAL lets ``lmgate logs`` read while the proxy writes. Writes come from the batch processor's
delivery thread, one transaction per batch. Retention: rows older than ``retention_days`` are
deleted when the store opens and then at most once an hour, after a write.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Engine, Integer, and_, create_engine, event, func, literal_column, or_, select
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ColumnClause, ColumnElement

from .base import GROUP_BYS, Filters, Page, percentile
from .schema import calls, migrate

PRUNE_EVERY_S = 3600.0
# ON CONFLICT DO NOTHING on the primary key: a batch delivered twice is stored once
_INSERT = str(
    sqlite_insert(calls)
    .on_conflict_do_nothing(index_elements=["call_id"])
    .compile(dialect=sqlite_dialect(paramstyle="qmark"))
)
_DEFAULTS = [(c.name, getattr(c.default, "arg", None)) for c in calls.columns]
_ALL_COLUMNS = itemgetter(*(name for name, _ in _DEFAULTS))


def _row_tuple(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The row's values in table order; a column it lacks takes the column's default."""
    if len(row) == len(_DEFAULTS):
        try:
            return _ALL_COLUMNS(row)  # type: ignore[no-any-return]  # every column: one C call
        except KeyError:
            pass
    return tuple(row.get(name, default) for name, default in _DEFAULTS)


# SQLite's implicit row id: the order rows were written in, what `lmgate logs tail -f` follows
_ROWID: ColumnClause[int] = literal_column("calls.rowid", Integer)
# the columns a listing shows (everything but the payload)
LIST_COLUMNS = [c for c in calls.columns if c.name != "payload"]


class SQLiteStore:
    """``base.LogStore`` on a SQLite file; the file and its directory are made if missing."""

    def __init__(
        self, path: str, *, retention_days: float | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        if retention_days is not None and retention_days <= 0:
            raise ValueError(f"store: retention_days must be above 0, got {retention_days!r}")
        self.path = path
        self.retention_days = retention_days
        self._clock = clock
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self.engine: Engine = create_engine(f"sqlite:///{path}")
        event.listen(self.engine, "connect", _pragmas)
        with self.engine.begin() as conn:
            migrate(conn)
        self._pruned_at = 0.0
        self.prune()

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path}>"

    # ---- writing ----
    def write(self, rows: Iterable[Mapping[str, Any]]) -> int:
        # The DB-API's executemany with positional tuples on a raw connection: SQLAlchemy's
        # execution layer and named parameters cost more than SQLite's insert itself, and this
        # thread shares the interpreter lock with the proxy's event loop (docs/store.md, "Speed").
        params = [_row_tuple(row) for row in rows]
        if not params:
            return 0
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.executemany(_INSERT, params)
                written = cursor.rowcount
                raw.commit()
            except BaseException:
                raw.rollback()
                raise
            finally:
                cursor.close()
        finally:
            raw.close()  # back to the pool
        if self.retention_days and self._clock() - self._pruned_at >= PRUNE_EVERY_S:
            self.prune()
        return max(written, 0)

    def prune(self) -> int:
        """Delete rows older than ``retention_days`` (none without it); returns how many."""
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

    def last_marker(self) -> int:
        """Where ``newer`` starts: the rowid of the last row written (SQLite's insertion order)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(_ROWID)).select_from(calls)).scalar() or 0)

    def newer(self, marker: int, filters: Filters = Filters()) -> tuple[list[dict[str, Any]], int]:
        """Matching rows written after ``marker``, in the order written (not start order: a long
        call is written after shorter ones that began later), and the marker for the next look."""
        top = self.last_marker()  # first: a row written during the query waits for the next look
        statement = (
            select(*LIST_COLUMNS)
            .where(_ROWID > marker, _ROWID <= top, *_conditions(filters))
            .order_by(_ROWID)
        )
        with self.engine.connect() as conn:
            return [_listed(r._mapping) for r in conn.execute(statement)], top

    def count(self, filters: Filters = Filters()) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(calls).where(*_conditions(filters))).scalar()
                or 0
            )

    def stats(self, group_by: str, filters: Filters = Filters()) -> list[dict[str, Any]]:
        """Totals per group. The latency percentiles are computed here from the group's latencies
        (SQLite has no percentile function): fine for a local store; ClickHouse will use quantiles()."""
        if group_by not in GROUP_BYS:
            raise ValueError(f"stats: group_by must be one of {', '.join(GROUP_BYS)}, got {group_by!r}")
        key = _group_key(group_by).label("group")
        totals = (
            select(
                key,
                func.count().label("requests"),
                func.sum(func.iif(calls.c.status != "success", 1, 0)).label("errors"),
                func.coalesce(func.sum(calls.c.prompt_tokens), 0).label("prompt_tokens"),
                func.coalesce(func.sum(calls.c.completion_tokens), 0).label("completion_tokens"),
                func.coalesce(func.sum(calls.c.total_tokens), 0).label("total_tokens"),
                func.coalesce(func.sum(calls.c.cost), 0.0).label("cost"),
                func.avg(func.iif(calls.c.cache_hit, 1.0, 0.0)).label("cache_hit_rate"),
            )
            .where(*_conditions(filters))
            .group_by(key)
            .order_by(*((key,) if group_by in ("day", "hour") else (func.count().desc(), key)))
        )
        latencies = (
            select(key, calls.c.latency_ms)
            .where(*_conditions(filters), calls.c.latency_ms.is_not(None))
            .order_by(key, calls.c.latency_ms)
        )
        with self.engine.connect() as conn:
            groups = [{str(k): v for k, v in r._mapping.items()} for r in conn.execute(totals)]
            per_group: dict[Any, list[float]] = {}
            for group, latency in conn.execute(latencies):
                per_group.setdefault(group, []).append(latency)
        for group in groups:
            values = per_group.get(group["group"], [])
            group["p50_ms"] = percentile(values, 0.50)
            group["p95_ms"] = percentile(values, 0.95)
            group["p99_ms"] = percentile(values, 0.99)
        return groups

    def close(self) -> None:
        self.engine.dispose()


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; the spool covers a crash before
    cursor.execute("PRAGMA busy_timeout=5000")  # two processes writing wait instead of failing
    cursor.close()


def _group_key(group_by: str) -> ColumnElement[Any]:
    c = calls.c
    if group_by == "day":
        return func.strftime("%Y-%m-%d", c.start_time, "unixepoch")
    if group_by == "hour":
        return func.strftime("%Y-%m-%d %H:00", c.start_time, "unixepoch")
    column = {
        "model": c.model,
        "provider": c.provider,
        "key": func.coalesce(c.key_alias, c.key_hash),
        "team": func.coalesce(c.team_alias, c.team_id),
        "user": func.coalesce(c.user_id, c.end_user),
    }
    return column[group_by]  # type: ignore[return-value]


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
    if f.search:
        escaped = f.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        out.append(c.payload.like(f"%{escaped}%", escape="\\"))
    return [and_(*out)] if out else []


def _listed(mapping: Any) -> dict[str, Any]:
    # plain str keys: SQLAlchemy's are a str subclass that orjson refuses
    row = {str(name): value for name, value in mapping.items()}
    row["tags"] = orjson.loads(row["tags"]) if row.get("tags") else []
    return row
