"""The SQL the SQLAlchemy stores share (SQLite ``sqlite.py``, PostgreSQL ``postgres.py``).

Both keep the same ``calls`` table (``schema.py``) and answer the same ``base.LogStore`` reads,
so the statements for listing, fetching, counting and pruning, the filters' WHERE clause, the
grouping columns and the sums are built here once. Where the dialects differ they say so as a
parameter: how a search matches text (``SQLStore.case_insensitive_like``: SQLite's LIKE already
ignores ASCII case, PostgreSQL needs ILIKE) and how a conditional sum is written
(``sum_fields(when)``: ``iif`` on SQLite, ``CASE`` on PostgreSQL). What stays in each module is
its own: writing, percentiles (computed in Python on SQLite, ``percentile_disc`` on PostgreSQL),
time buckets and the per-tag join.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import orjson
from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from .base import TOTALS_FIELDS, Filters, Page
from .schema import calls

# the columns a listing shows (everything but the payload)
LIST_COLUMNS = [c for c in calls.columns if c.name != "payload"]


def check_retention(retention_days: float | None) -> None:
    if retention_days is not None and retention_days <= 0:
        raise ValueError(f"store: retention_days must be above 0, got {retention_days!r}")


def conditions(f: Filters, *, case_insensitive_like: bool) -> list[ColumnElement[bool]]:
    """The WHERE clause of ``f`` (one AND of its parts, or nothing). ``Filters.search`` matches
    the payload's text case-insensitively: with ILIKE when ``case_insensitive_like`` (the
    dialect's LIKE minds case), else with LIKE."""
    c = calls.c
    out: list[ColumnElement[bool]] = []
    start = c.start_time
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
        out.append(start >= f.since)
    if f.until is not None:
        out.append(start < f.until)
    if f.trace_id:
        out.append(c.trace_id == f.trace_id)
    if f.search:
        escaped = f.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        if case_insensitive_like:
            out.append(c.payload.ilike(f"%{escaped}%", escape="\\"))
        else:
            out.append(c.payload.like(f"%{escaped}%", escape="\\"))
    return [and_(*out)] if out else []


def column_key(group_by: str) -> ColumnElement[Any]:
    """What a grouping by a column groups on (``model``, ``provider``, ``key``, ``team``, ``user``):
    an alias where the row has one, else the id beside it."""
    c = calls.c
    column = {
        "model": c.model,
        "provider": c.provider,
        "key": func.coalesce(c.key_alias, c.key_hash),
        "team": func.coalesce(c.team_alias, c.team_id),
        "user": func.coalesce(c.user_id, c.end_user),
    }
    return column[group_by]  # type: ignore[return-value]


#: a dialect's conditional value: ``when(condition, then, otherwise)``
When = Callable[[ColumnElement[bool], Any, Any], ColumnElement[Any]]


def sum_fields(when: When) -> list[Any]:
    """The sums every aggregate has: requests, errors, tokens and cost (0, not NULL, when empty)."""
    c = calls.c
    return [
        func.count().label("requests"),
        func.coalesce(func.sum(when(c.status != "success", 1, 0)), 0).label("errors"),
        func.coalesce(func.sum(c.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(c.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(c.total_tokens), 0).label("total_tokens"),
        func.coalesce(func.sum(c.cost), 0.0).label("cost"),
    ]


def totals_answer(row: dict[str, Any]) -> dict[str, Any]:
    """``base.LogStore.totals`` from an aggregate's one row (zeros and Nones when it counted none)."""
    if not row["requests"]:
        return {name: (0 if name in ("requests", "errors") else None) for name in TOTALS_FIELDS}
    row["error_rate"] = row["errors"] / row["requests"]
    return {name: row.get(name) for name in TOTALS_FIELDS}


def listed(mapping: Any) -> dict[str, Any]:
    """A row as the store's reads give it: plain str keys (SQLAlchemy's are a str subclass
    orjson refuses) and ``tags`` as a list."""
    row = {str(name): value for name, value in mapping.items()}
    row["tags"] = orjson.loads(row["tags"]) if row.get("tags") else []
    return row


class SQLStore:
    """The reads and the retention both SQLAlchemy stores have, over ``self.engine``."""

    engine: Engine
    retention_days: float | None
    _clock: Callable[[], float]
    _pruned_at: float
    #: whether ``Filters.search`` needs ILIKE (the dialect's LIKE minds case)
    case_insensitive_like: ClassVar[bool] = False

    def _conditions(self, filters: Filters) -> list[ColumnElement[bool]]:
        return conditions(filters, case_insensitive_like=self.case_insensitive_like)

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

    def query(self, filters: Filters = Filters(), page: Page = Page()) -> list[dict[str, Any]]:
        statement = (
            select(*LIST_COLUMNS)
            .where(*self._conditions(filters))
            .order_by(calls.c.start_time.desc(), calls.c.call_id.desc())
            .limit(page.limit)
            .offset(page.offset)
        )
        with self.engine.connect() as conn:
            return [listed(r._mapping) for r in conn.execute(statement)]

    def get(self, call_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            found = conn.execute(select(calls).where(calls.c.call_id == call_id)).first()
        if found is None:
            return None
        row = listed(found._mapping)
        row["payload"] = orjson.loads(row["payload"])
        return row

    def count(self, filters: Filters = Filters()) -> int:
        with self.engine.connect() as conn:
            statement = select(func.count()).select_from(calls).where(*self._conditions(filters))
            return int(conn.execute(statement).scalar() or 0)

    def close(self) -> None:
        self.engine.dispose()


__all__ = [
    "LIST_COLUMNS",
    "SQLStore",
    "When",
    "check_retention",
    "column_key",
    "conditions",
    "listed",
    "sum_fields",
    "totals_answer",
]
