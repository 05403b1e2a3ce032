"""The spend ledger: one row per request that reached a provider, written in batches.

``write`` adds a batch in one transaction together with the sums it changes (``spend`` of the
keys, teams and users named), skipping request ids already there, so the same batch written
twice (a journal replayed after a crash) counts once. ``spent`` is what a budget window's
counter starts from: the sum of the rows of one key, team or user started since a time.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from .schema import budget_alerts, keys, spend_ledger, teams, users
from .store import KeyStore

_COLUMNS = {c.name for c in spend_ledger.columns}
_SCOPES = {
    "key": spend_ledger.c.token,
    "team": spend_ledger.c.team_id,
    "user": spend_ledger.c.user_id,
    "end_user": spend_ledger.c.end_user,
}
_CHUNK = 500
_DEFAULTS = {"prompt_tokens": 0, "completion_tokens": 0}
_NULLABLE = ("team_id", "user_id", "end_user")  # the columns a row often leaves empty
# (dialect name, the nullable columns a group of rows leaves out) → the INSERT's SQL, a row's values
_INSERTS: dict[tuple[str, tuple[str, ...]], tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]]]] = {}
_UPDATES: dict[tuple[str, str], tuple[str, bool]] = {}  # (dialect, table) → ``_spend_update``


def _insert_groups(dialect: Any, rows: list[dict[str, Any]]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The rows as driver-level ``executemany`` calls: the dialect's own SQL (compiled once)
    and each row's values as a tuple.

    Rows are grouped by which of ``_NULLABLE`` they leave empty, and an empty column is left out
    of its group's INSERT (NULL by default) rather than sent as None: Python's sqlite3 module
    runs its adaptation protocol for every None parameter (an AttributeError raised and caught
    per value), which cost more than the insert of the row itself."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        empty = tuple(c for c in _NULLABLE if row.get(c) is None)
        groups.setdefault(empty, []).append(row)
    out = []
    for empty, members in groups.items():
        found = _INSERTS.get((dialect.name, empty))
        if found is None:
            columns = sorted(_COLUMNS - set(empty))
            compiled = spend_ledger.insert().compile(dialect=dialect, column_keys=columns)
            found = (str(compiled), _values_of(tuple(compiled.positiontup or ())))
            _INSERTS[(dialect.name, empty)] = found
        sql, values = found
        out.append((sql, [values(row) for row in members]))
    return out


def _spend_update(dialect: Any, table: sa.Table, column: sa.Column[Any]) -> tuple[str, bool]:
    """``UPDATE <table> SET spend = spend + :add WHERE <id> = :id`` in the dialect's own SQL,
    compiled once, and whether its parameters come as (add, id) (else (id, add)): run as a
    driver-level ``executemany``, like the INSERT (SQLAlchemy's per-row handling of an
    executemany cost ~20,000 instructions a row)."""
    found = _UPDATES.get((dialect.name, table.name))
    if found is None:
        compiled = (
            table.update()
            .where(column == sa.bindparam("_id"))
            .values(spend=table.c.spend + sa.bindparam("_add"))
            .compile(dialect=dialect)
        )
        found = _UPDATES[(dialect.name, table.name)] = (
            str(compiled),
            tuple(compiled.positiontup or ()) == ("_add", "_id"),
        )
    return found


def _values_of(order: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row's values in ``order``; a token count the row lacks (a journal line from an older
    version) is 0."""
    every = operator.itemgetter(*order)

    def values(row: dict[str, Any]) -> tuple[Any, ...]:
        try:
            return every(row)  # type: ignore[no-any-return]
        except KeyError:
            return tuple(row.get(c, _DEFAULTS.get(c)) for c in order)

    return values


class Ledger:
    def __init__(self, store: KeyStore) -> None:
        self.store = store

    async def write(self, rows: Sequence[dict[str, Any]]) -> int:
        """Add ``rows`` (dicts of the ledger's columns) not already there; how many were new.

        A live writer's rows are new (request ids are unique), so the batch is first inserted
        as is, in one driver-level ``executemany`` (SQLAlchemy's per-row parameter handling
        cost more CPU than the database's insert). Only when the database refuses a duplicate
        (a journal replayed after a crash, a batch retried after a commit whose answer was
        lost) is it written again without the rows the ledger has."""
        unique = {r["request_id"]: r for r in rows}
        if not unique:
            return 0
        try:
            return await self._write(unique, probe=False)
        except sa.exc.IntegrityError:
            return await self._write(unique, probe=True)

    async def _write(self, unique: dict[str, dict[str, Any]], probe: bool) -> int:
        async with self.store.engine.begin() as conn:
            if probe:
                ids = list(unique)
                for start in range(0, len(ids), _CHUNK):
                    found = await conn.execute(
                        sa.select(spend_ledger.c.request_id).where(
                            spend_ledger.c.request_id.in_(ids[start : start + _CHUNK])
                        )
                    )
                    for (request_id,) in found:
                        unique.pop(request_id, None)
            new = list(unique.values())
            if not new:
                return 0
            for sql, values in _insert_groups(conn.dialect, new):
                await conn.exec_driver_sql(sql, values)
            for table, column, field in (
                (keys, keys.c.token, "token"),
                (teams, teams.c.team_id, "team_id"),
                (users, users.c.user_id, "user_id"),
            ):
                sums: dict[str, float] = defaultdict(float)
                for row in new:
                    if row.get(field) is not None:
                        sums[row[field]] += row["cost"]
                if sums:
                    sql, add_first = _spend_update(conn.dialect, table, column)
                    pairs = [(v, k) for k, v in sums.items()] if add_first else list(sums.items())
                    await conn.exec_driver_sql(sql, pairs)
        return len(new)

    async def spent(self, scope: str, scope_id: str, since: float, until: float | None = None) -> float:
        """The spend of one key (by token), team, user or end user in rows started at ``since`` or
        later (and before ``until``, when given: one budget window's own spend)."""
        column = _SCOPES[scope]
        where = [column == scope_id, spend_ledger.c.started_at >= since]
        if until is not None:
            where.append(spend_ledger.c.started_at < until)
        query = sa.select(sa.func.coalesce(sa.func.sum(spend_ledger.c.cost), 0.0)).where(*where)
        async with self.store.engine.connect() as conn:
            return float((await conn.execute(query)).scalar() or 0.0)

    async def record_alert(
        self,
        scope: str,
        scope_id: str,
        window_start: float,
        soft_budget: float,
        spend: float,
        now: float,
        alert: dict[str, Any] | None = None,
    ) -> bool:
        """Record that a soft budget's window crossed it; False when an alert for that window is
        already recorded (by this instance or another): so each window alerts once.

        The row is the alert's outbox entry too (migration 5): ``alert`` is kept with it and it
        stays undelivered until ``mark_alert_delivered``."""
        row = {
            "scope": scope,
            "scope_id": scope_id,
            "window_start": window_start,
            "soft_budget": soft_budget,
            "spend": spend,
            "fired_at": now,
            "alert": alert,
            "delivered_at": None,
            "claimed_at": now,  # the insert is the claim: only one instance makes the row
        }
        try:
            async with self.store.engine.begin() as conn:
                await conn.execute(budget_alerts.insert(), [row])
        except sa.exc.IntegrityError:
            return False
        return True

    async def claim_alert(
        self, scope: str, scope_id: str, window_start: float, now: float, lease_s: float
    ) -> bool:
        """Take an undelivered alert to hand it over; True for the one instance that wins it (an
        UPDATE the database serialises: of two instances claiming at once, the second finds it
        claimed). A claim older than ``lease_s`` is taken again: its claimer died before the
        hand-off, or after it and before the mark (the alert's stable Idempotency-Key,
        ``proxy/alerts.py``, lets the receiver see the second delivery as a repeat)."""
        c = budget_alerts.c
        query = (
            budget_alerts.update()
            .where(
                *_undelivered(scope, scope_id, window_start),
                sa.or_(c.claimed_at.is_(None), c.claimed_at <= now - lease_s),
            )
            .values(claimed_at=now)
        )
        async with self.store.engine.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def mark_alert_delivered(self, scope: str, scope_id: str, window_start: float, now: float) -> bool:
        """Mark an alert delivered (its hand-off is durable); False when it already was (so of two
        processes delivering one alert, one learns it was second)."""
        query = (
            budget_alerts.update()
            .where(*_undelivered(scope, scope_id, window_start))
            .values(delivered_at=now)
        )
        async with self.store.engine.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def undelivered_alerts(self) -> list[tuple[tuple[str, str, float], dict[str, Any]]]:
        """The alerts recorded but never marked delivered (their process died between the two),
        oldest first: each row's (scope, scope_id, window_start) and the alert as its
        subscribers get it. A row without its alert is an older lmgate's (an instance not yet
        upgraded, sharing the database), which delivers its alerts itself: never one of these."""
        c = budget_alerts.c
        query = (
            sa.select(c.scope, c.scope_id, c.window_start, c.alert)
            .where(c.delivered_at.is_(None), c.alert.is_not(None))
            .order_by(c.fired_at)
        )
        async with self.store.engine.connect() as conn:
            found = (await conn.execute(query)).all()
        return [
            ((scope, scope_id, window_start), alert)
            for scope, scope_id, window_start, alert in found
            if alert
        ]

    async def total(self, scope: str, scope_id: str) -> tuple[float, int]:
        """All the spend of one key, team, user or end user, and its number of rows."""
        column = _SCOPES[scope]
        query = sa.select(sa.func.coalesce(sa.func.sum(spend_ledger.c.cost), 0.0), sa.func.count()).where(
            column == scope_id
        )
        async with self.store.engine.connect() as conn:
            cost, count = (await conn.execute(query)).one()
        return float(cost or 0.0), int(count)


def _undelivered(scope: str, scope_id: str, window_start: float) -> tuple[Any, ...]:
    """The conditions naming one alert's outbox row while it is not marked delivered."""
    c = budget_alerts.c
    return (
        c.scope == scope,
        c.scope_id == scope_id,
        c.window_start == window_start,
        c.delivered_at.is_(None),
    )


__all__ = ["Ledger"]
