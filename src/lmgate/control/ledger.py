"""The spend ledger: one row per request that reached a provider, written in batches.

``write`` adds a batch in one transaction together with the sums it changes (``spend`` of the
keys, teams and users named), skipping request ids already there, so the same batch written
twice (a journal replayed after a crash) counts once. ``spent`` is what a budget window's
counter starts from: the sum of the rows of one key, team or user started since a time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from .schema import keys, spend_ledger, teams, users
from .store import KeyStore

_COLUMNS = {c.name for c in spend_ledger.columns}
_SCOPES = {
    "key": spend_ledger.c.token,
    "team": spend_ledger.c.team_id,
    "user": spend_ledger.c.user_id,
    "end_user": spend_ledger.c.end_user,
}
_CHUNK = 500


class Ledger:
    def __init__(self, store: KeyStore) -> None:
        self.store = store

    async def write(self, rows: Sequence[dict[str, Any]]) -> int:
        """Add ``rows`` (dicts of the ledger's columns) not already there; how many were new."""
        unique = {r["request_id"]: {k: v for k, v in r.items() if k in _COLUMNS} for r in rows}
        if not unique:
            return 0
        async with self.store.engine.begin() as conn:
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
            await conn.execute(spend_ledger.insert(), new)
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
                    await conn.execute(
                        table.update()
                        .where(column == sa.bindparam("_id"))
                        .values(spend=table.c.spend + sa.bindparam("_add")),
                        [{"_id": k, "_add": v} for k, v in sums.items()],
                    )
        return len(new)

    async def spent(self, scope: str, scope_id: str, since: float) -> float:
        """The spend of one key (by token), team, user or end user in rows started at ``since`` or later."""
        column = _SCOPES[scope]
        query = sa.select(sa.func.coalesce(sa.func.sum(spend_ledger.c.cost), 0.0)).where(
            column == scope_id, spend_ledger.c.started_at >= since
        )
        async with self.store.engine.connect() as conn:
            return float((await conn.execute(query)).scalar() or 0.0)

    async def total(self, scope: str, scope_id: str) -> tuple[float, int]:
        """All the spend of one key, team, user or end user, and its number of rows."""
        column = _SCOPES[scope]
        query = sa.select(sa.func.coalesce(sa.func.sum(spend_ledger.c.cost), 0.0), sa.func.count()).where(
            column == scope_id
        )
        async with self.store.engine.connect() as conn:
            cost, count = (await conn.execute(query)).one()
        return float(cost or 0.0), int(count)


__all__ = ["Ledger"]
