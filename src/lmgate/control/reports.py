"""Spend, read back: the rows and sums behind ``/spend/logs``, ``/global/spend/report``, an end
user's spend and ``lmgate spend``.

Everything here reads the spend ledger, ``lmgate_spend_ledger``: one row per request that
reached a provider, written off the request path by the limits' spend writer (``ledger.py``,
migration 2). This module only reads it, through ``LEDGER`` below: the columns it reads,
declared on their own so the reports do not depend on how the writer is built. Until a
database has the ledger (a store created before migration 2) every report is empty.

Times are Unix seconds in the ledger; filters take them as floats (``parse_when`` turns the
API's ``YYYY-MM-DD`` or ISO 8601 text into them).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

LEDGER = sa.Table(
    "lmgate_spend_ledger",
    sa.MetaData(),
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("token", sa.String(64)),
    sa.Column("team_id", sa.String(128)),
    sa.Column("user_id", sa.String(128)),
    sa.Column("end_user", sa.String(256)),
    sa.Column("model", sa.String(256)),
    sa.Column("cost", sa.Float),
    sa.Column("prompt_tokens", sa.Integer),
    sa.Column("completion_tokens", sa.Integer),
    sa.Column("started_at", sa.Float),
    sa.Column("ended_at", sa.Float),
)

#: what ``/global/spend/report`` and ``lmgate spend --by`` group by → the ledger column
GROUP_COLUMNS = {
    "api_key": "token",
    "team": "team_id",
    "user": "user_id",
    "customer": "end_user",
    "model": "model",
}


def parse_when(value: str, name: str, *, end: bool = False) -> float:
    """Unix seconds of ``YYYY-MM-DD`` (UTC midnight; with ``end`` the next midnight, so an end
    date includes its whole day) or of an ISO 8601 time (UTC when it names no zone)."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            # a day's seconds added to the timestamp, not to the date: 9999-12-31 (the far end
            # scripts send for "no end") has no next date
            return day.timestamp() + (86_400.0 if end else 0.0)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} must be a date (YYYY-MM-DD) or an ISO 8601 time, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc).isoformat()


@dataclass(frozen=True)
class SpendFilters:
    """Which ledger rows a report reads; None matches everything. ``start`` ≤ started_at < ``end``."""

    token: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    end_user: str | None = None
    request_id: str | None = None
    model: str | None = None
    start: float | None = None
    end: float | None = None

    def where(self) -> list[Any]:
        c = LEDGER.c
        out: list[Any] = []
        for value, column in (
            (self.token, c.token),
            (self.team_id, c.team_id),
            (self.user_id, c.user_id),
            (self.end_user, c.end_user),
            (self.request_id, c.request_id),
            (self.model, c.model),
        ):
            if value is not None:
                out.append(column == value)
        if self.start is not None:
            out.append(c.started_at >= self.start)
        if self.end is not None:
            out.append(c.started_at < self.end)
        return out


class SpendReports:
    """Reads of the ledger over a store's engine; an engine without the ledger reads as empty."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._ledger_seen = False

    async def has_ledger(self) -> bool:
        if not self._ledger_seen:  # once there, it stays: migrations never drop it
            async with self.engine.connect() as conn:
                self._ledger_seen = await conn.run_sync(lambda c: sa.inspect(c).has_table(LEDGER.name))
        return self._ledger_seen

    async def logs(self, filters: SpendFilters, limit: int = 1000) -> list[dict[str, Any]]:
        """Ledger rows, newest first, as the reference's spend logs name them."""
        if not await self.has_ledger():
            return []
        c = LEDGER.c
        query = (
            sa.select(LEDGER).where(*filters.where()).order_by(c.started_at.desc(), c.request_id).limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_log_row(r) for r in rows]

    async def totals(self, group_by: str, filters: SpendFilters) -> list[dict[str, Any]]:
        """Spend per group (``GROUP_COLUMNS``) and, in each, per model: biggest first.

        ``[{"group": value, "spend", "requests", "prompt_tokens", "completion_tokens",
        "models": [{"model", "spend", "requests", "prompt_tokens", "completion_tokens"}]}]``
        """
        if not await self.has_ledger():
            return []
        column = LEDGER.c[GROUP_COLUMNS[group_by]]
        c = LEDGER.c
        query = (
            sa.select(
                column.label("grp"),
                c.model,
                sa.func.sum(c.cost).label("spend"),
                sa.func.count().label("requests"),
                sa.func.sum(c.prompt_tokens).label("prompt_tokens"),
                sa.func.sum(c.completion_tokens).label("completion_tokens"),
            )
            .where(*filters.where())
            .group_by(column, c.model)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        groups: dict[Any, dict[str, Any]] = {}
        for r in rows:
            g = groups.setdefault(
                r["grp"],
                {
                    "group": r["grp"],
                    "spend": 0.0,
                    "requests": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "models": [],
                },
            )
            detail = {
                "model": r["model"],
                "spend": float(r["spend"] or 0.0),
                "requests": int(r["requests"]),
                "prompt_tokens": int(r["prompt_tokens"] or 0),
                "completion_tokens": int(r["completion_tokens"] or 0),
            }
            g["models"].append(detail)
            for name in ("spend", "requests", "prompt_tokens", "completion_tokens"):
                g[name] += detail[name]
        out = sorted(groups.values(), key=lambda g: (-g["spend"], str(g["group"])))
        for g in out:
            g["models"].sort(key=lambda m: (-m["spend"], str(m["model"])))
        return out

    async def daily(self, group_by: str, filters: SpendFilters) -> list[dict[str, Any]]:
        """Spend per UTC day, per group, per (model, key): the rows of the reference's
        ``group_by=team|customer`` report, ``[{"day", "group", "model", "token", "spend", "total_tokens"}]``."""
        if not await self.has_ledger():
            return []
        c = LEDGER.c
        column = c[GROUP_COLUMNS[group_by]]
        query = sa.select(
            c.started_at, column.label("grp"), c.model, c.token, c.cost, c.prompt_tokens, c.completion_tokens
        ).where(*filters.where())
        sums: dict[tuple[str, Any, Any, Any], list[float]] = defaultdict(lambda: [0.0, 0])
        async with self.engine.connect() as conn:
            # summed here rather than in SQL: a day of a float timestamp is spelled differently
            # by SQLite and PostgreSQL, and a report's rows are few compared with requests
            for r in (await conn.execute(query)).mappings():
                day = datetime.fromtimestamp(r["started_at"], timezone.utc).date().isoformat()
                entry = sums[(day, r["grp"], r["model"], r["token"])]
                entry[0] += float(r["cost"] or 0.0)
                entry[1] += int(r["prompt_tokens"] or 0) + int(r["completion_tokens"] or 0)
        return [
            {"day": day, "group": grp, "model": model, "token": token, "spend": s, "total_tokens": int(t)}
            for (day, grp, model, token), (s, t) in sorted(
                sums.items(), key=lambda kv: tuple(map(str, kv[0]))
            )
        ]

    async def spend_of(self, column: str, values: list[str]) -> dict[str, float]:
        """Total spend per value of ``column`` (e.g. ``end_user``); values with no rows are 0."""
        out = dict.fromkeys(values, 0.0)
        if not values or not await self.has_ledger():
            return out
        col = LEDGER.c[column]
        query = sa.select(col, sa.func.sum(LEDGER.c.cost)).where(col.in_(values)).group_by(col)
        async with self.engine.connect() as conn:
            for value, total in (await conn.execute(query)).all():
                out[value] = float(total or 0.0)
        return out


def _log_row(r: Any) -> dict[str, Any]:
    prompt = int(r["prompt_tokens"] or 0)
    completion = int(r["completion_tokens"] or 0)
    return {
        "request_id": r["request_id"],
        "api_key": r["token"],  # the key's SHA-256, as the reference stores it
        "spend": float(r["cost"] or 0.0),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "startTime": iso(r["started_at"]),
        "endTime": iso(r["ended_at"]),
        "model": r["model"],
        "user": r["user_id"],
        "team_id": r["team_id"],
        "end_user": r["end_user"],
    }


__all__ = ["GROUP_COLUMNS", "LEDGER", "SpendFilters", "SpendReports", "iso", "parse_when"]
