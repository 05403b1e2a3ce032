"""The log store on one SQLite file (WAL mode), through SQLAlchemy 2 Core.

WAL lets ``lmgate logs`` read while the proxy writes. Writes come from the batch processor's
delivery thread, one transaction per batch. Retention: rows older than ``retention_days`` are
deleted when the store opens and then at most once an hour, after a write.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    Engine,
    Integer,
    cast,
    create_engine,
    event,
    func,
    literal_column,
    select,
    text,
    true,
)
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ColumnClause, ColumnElement

from . import rollup
from .base import (
    BUCKETS,
    GROUP_BYS,
    SERIES_GROUP_BYS,
    Filters,
    percentile,
    series_rows,
)
from .rollup_add import HOURLY_UPSERT, LATENCY_UPSERT, batch_cells
from .schema import LATENCY_BASE, calls, migrate, rollup_add_statements
from .sql import LIST_COLUMNS, SQLStore, check_retention, column_key, listed, sum_fields, totals_answer

PRUNE_EVERY_S = 3600.0

# Python's sqlite3 binds only exact int, float, str and bytearray without asking for an adapter;
# for any other value (None, bool) the lookup misses and costs an AttributeError formatted and
# cleared: ~1,300 instructions a parameter, 40,000 a row (most columns are often NULL), on the
# delivery thread that shares the interpreter lock with the proxy. Adapters that give back what
# sqlite3 would bind anyway (NULL, 0/1) turn the miss into a dict hit; they apply to the whole
# process, and change nothing any other user of sqlite3 sees.
sqlite3.register_adapter(type(None), {}.get)  # type: ignore[arg-type]  # {}.get(None) is None: NULL
sqlite3.register_adapter(bool, int)  # bound as 0/1, as before (bool is an int)
# ON CONFLICT DO NOTHING on the primary key: a batch delivered twice is stored once
_INSERT = str(
    sqlite_insert(calls)
    .on_conflict_do_nothing(index_elements=["call_id"])
    .compile(dialect=sqlite_dialect(paramstyle="qmark"))
)
_ROLLUP_ADD = rollup_add_statements()
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


class SQLiteStore(SQLStore):
    """``base.LogStore`` on a SQLite file; the file and its directory are made if missing."""

    # ``write`` also takes a row as a tuple of its values in table order (``rows.ROW_COLUMNS``):
    # the store logger hands rows over so, with no dict per row to build and take apart
    WRITES_VALUE_ROWS = True

    def __init__(
        self,
        path: str,
        *,
        retention_days: float | None = None,
        clock: Callable[[], float] = time.time,
        use_rollup: bool = True,
    ) -> None:
        check_retention(retention_days)
        self.path = path
        self.retention_days = retention_days
        self._clock = clock
        # False: every aggregate from the raw rows, percentiles exact (the contract's reference)
        self.use_rollup = use_rollup
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self.engine: Engine = create_engine(f"sqlite:///{path}")
        event.listen(self.engine, "connect", _pragmas)
        with self.engine.begin() as conn:
            migrate(conn)
            # ln(LATENCY_BASE) as SQLite's ln() gives it: the rollup's buckets computed in Python
            # (rollup_add.py) divide by the very same double
            self._ln_base = float(conn.execute(text(f"SELECT ln({LATENCY_BASE})")).scalar_one())
        self._pruned_at = 0.0
        self.prune()

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path}>"

    # ---- writing ----
    def write(self, rows: Iterable[Mapping[str, Any] | tuple[Any, ...]]) -> int:
        # The DB-API's executemany with positional tuples on a raw connection: SQLAlchemy's
        # execution layer and named parameters cost more than SQLite's insert itself, and this
        # thread shares the interpreter lock with the proxy's event loop (docs/store.md, "Speed").
        params = [row if isinstance(row, tuple) else _row_tuple(row) for row in rows]
        if not params:
            return 0
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                # IMMEDIATE: the write lock first, so no other process's rows land between the
                # last rowid read here and this batch's rows; those rows (rowid above it) are the
                # ones this batch inserted, redelivered ones being ignored by the primary key
                cursor.execute("BEGIN IMMEDIATE")
                after = cursor.execute("SELECT coalesce(max(rowid), 0) FROM calls").fetchone()[0]
                cursor.executemany(_INSERT, params)
                written = cursor.rowcount
                # the hourly rollup, once per batch (a trigger per row before): when every row was
                # new, from the rows in hand (rollup_add.py); else (a redelivered row ignored by
                # the primary key, a row it does not compute as SQLite would) set-based, from the
                # rows above the last rowid
                cells = batch_cells(params, self._ln_base) if written == len(params) else None
                if cells is not None:
                    cursor.executemany(HOURLY_UPSERT, cells[0])
                    cursor.executemany(LATENCY_UPSERT, cells[1])
                elif written:
                    for statement in _ROLLUP_ADD:
                        cursor.execute(statement, (after,))
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

    # ---- reading ----
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
            .where(_ROWID > marker, _ROWID <= top, *self._conditions(filters))
            .order_by(_ROWID)
        )
        with self.engine.connect() as conn:
            return [listed(r._mapping) for r in conn.execute(statement)], top

    def stats(self, group_by: str, filters: Filters = Filters()) -> list[dict[str, Any]]:
        """Totals per group. The latency percentiles are computed here from the group's latencies
        (SQLite has no percentile function): fine for a local store; ClickHouse will use quantiles()."""
        if group_by not in GROUP_BYS:
            raise ValueError(f"stats: group_by must be one of {', '.join(GROUP_BYS)}, got {group_by!r}")
        if self.use_rollup and group_by in rollup.STATS_KEYS and rollup.answers(filters):
            order = "1" if group_by in ("day", "hour") else "requests DESC, 1"
            with self.engine.connect() as conn:
                groups = rollup.aggregate(
                    conn, [("group", rollup.STATS_KEYS[group_by])], filters, order, (0.50, 0.95, 0.99)
                )
            for group in groups:
                group.pop("saved_cost", None)
            return groups
        key, source = _grouping(group_by)
        ordering = (key,) if group_by in ("day", "hour") else (func.count().desc(), key)
        groups = self._aggregate(
            [key.label("group")], filters, source, ordering, quantiles=(0.50, 0.95, 0.99), cache=True
        )
        for group in groups:
            group.pop("saved_cost", None)
        return groups

    def totals(self, filters: Filters = Filters()) -> dict[str, Any]:
        if self.use_rollup and rollup.answers(filters):
            with self.engine.connect() as conn:
                row = rollup.aggregate(conn, [], filters, "", (0.50, 0.95))[0]
        else:
            row = self._aggregate([], filters, calls, (), quantiles=(0.50, 0.95), cache=True)[0]
        return totals_answer(row)

    # ``timeseries`` takes ``latency=False``: ui/query.py asks so for a series it charts no latency of
    SERIES_LATENCY_OPTIONAL = True

    def timeseries(
        self,
        bucket: str,
        filters: Filters = Filters(),
        group_by: str | None = None,
        *,
        latency: bool = True,
    ) -> list[dict[str, Any]]:
        """``base.LogStore.timeseries``; with ``latency=False`` the percentiles are None, not
        computed (a pass over the latencies or the rollup's histogram saved)."""
        quantiles = (0.50, 0.95) if latency else ()
        if bucket not in BUCKETS:
            raise ValueError(f"timeseries: bucket must be one of {', '.join(BUCKETS)}, got {bucket!r}")
        if group_by is not None and group_by not in SERIES_GROUP_BYS:
            raise ValueError(
                f"timeseries: group_by must be one of {', '.join(SERIES_GROUP_BYS)}, got {group_by!r}"
            )
        width = BUCKETS[bucket]
        if (
            self.use_rollup
            and width % rollup.HOUR == 0
            and (group_by is None or group_by in rollup.SERIES_KEYS)
            and rollup.answers(filters)
        ):
            keys_sql = [
                ("bucket_start", f"hour / {width} * {width}"),
                ("group", "NULL" if group_by is None else rollup.SERIES_KEYS[group_by]),
            ]
            with self.engine.connect() as conn:
                found = rollup.aggregate(conn, keys_sql, filters, "1, 2", quantiles)
            return series_rows(found)
        # integer division floors for the non-negative times a store holds
        start = (cast(calls.c.start_time, Integer) // width * width).label("bucket_start")
        if group_by is None:
            keys: list[Any] = [start, literal_column("NULL").label("group")]
            source: Any = calls
        else:
            key, source = _grouping(group_by)
            keys = [start, key.label("group")]
        rows = self._aggregate(keys, filters, source, (keys[0], keys[1]), quantiles=quantiles)
        return series_rows(rows)

    def _aggregate(
        self,
        keys: list[Any],
        filters: Filters,
        source: Any,
        ordering: tuple[Any, ...],
        *,
        quantiles: tuple[float, ...],
        cache: bool = False,
    ) -> list[dict[str, Any]]:
        """One row per distinct ``keys`` (one row in all without keys) with the sums, and the
        latency ``quantiles`` as ``p50_ms`` etc., computed here from each group's sorted
        latencies."""
        c = calls.c
        sums = sum_fields(func.iif)
        if cache:
            sums += [
                func.avg(func.iif(c.cache_hit, 1.0, 0.0)).label("cache_hit_rate"),
                # no column: the payload is parsed for cache hits only, a small share of the rows
                func.coalesce(
                    func.sum(func.iif(c.cache_hit, func.json_extract(c.payload, "$.saved_cache_cost"), 0.0)),
                    0.0,
                ).label("saved_cost"),
            ]
        where = self._conditions(filters)
        statement = select(*keys, *sums).select_from(source).where(*where)
        # unsorted: Python sorts a group's latencies faster than SQLite's sorter orders the rows
        latencies = select(*keys, c.latency_ms).select_from(source).where(*where, c.latency_ms.is_not(None))
        if keys:
            statement = statement.group_by(*keys).order_by(*ordering)
        with self.engine.connect() as conn:
            groups = [{str(k): v for k, v in r._mapping.items()} for r in conn.execute(statement)]
            per_group: dict[tuple[Any, ...], list[float]] = {}
            width = len(keys)
            for found in _raw_rows(conn, latencies) if quantiles else ():
                per_group.setdefault(found[:width], []).append(found[width])
        for values in per_group.values():
            values.sort()
        names = [k.name for k in keys]
        for group in groups:
            values = per_group.get(tuple(group[n] for n in names), [])
            for q in quantiles:
                group[f"p{round(q * 100)}_ms"] = percentile(values, q)
        return groups


def _raw_rows(conn: Any, statement: Any) -> list[tuple[Any, ...]]:
    """The rows of ``statement`` as the driver's plain tuples: the latency lists behind the
    percentiles run to one row per call, and SQLAlchemy's Row objects cost more than the query."""
    compiled = statement.compile(dialect=conn.dialect)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(str(compiled), tuple(compiled.params[name] for name in compiled.positiontup or ()))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; the spool covers a crash before
    cursor.execute("PRAGMA busy_timeout=5000")  # two processes writing wait instead of failing
    cursor.close()


def _grouping(group_by: str) -> tuple[ColumnElement[Any], Any]:
    """The expression a grouping groups on and the FROM it needs: a tag comes from the tags
    list, one row per tag (LEFT JOIN: an untagged call counts once, under None)."""
    if group_by == "tag":
        tag = func.json_each(calls.c.tags).table_valued("value").alias("tag")
        return tag.c.value, calls.outerjoin(tag, true())
    return _group_key(group_by), calls


def _group_key(group_by: str) -> ColumnElement[Any]:
    c = calls.c
    if group_by == "day":
        return func.strftime("%Y-%m-%d", c.start_time, "unixepoch")
    if group_by == "hour":
        return func.strftime("%Y-%m-%d %H:00", c.start_time, "unixepoch")
    return column_key(group_by)
