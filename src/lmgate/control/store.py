"""The key store: keys, teams and users in SQLite or PostgreSQL through SQLAlchemy's async engine.

``KeyStore(url).start()`` creates the database (SQLite: the file under the data directory) and
runs the migrations; every method after that is one short transaction. The store knows rows,
not HTTP: the admin routes and the proxy's key backend are its callers.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .._paths import data_dir
from . import migrations
from .requests import BadField
from .schema import customers, keys, teams, users

DATABASE_FILE = "lmgate.db"


def default_data_dir(configured: str | None = None, environ: Any = None) -> Path:
    """The data directory (``lmgate._paths.data_dir``: ``$LMGATE_DATA_DIR``, else
    ``general_settings.data_dir``, else ``$XDG_DATA_HOME/lmgate``, else ``~/.local/share/lmgate``)."""
    return data_dir(configured, environ)


def async_url(url: str) -> str:
    """``url`` with the async driver named: ``sqlite://`` → aiosqlite, ``postgresql://`` → asyncpg."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(
            f"not a database URL: expected sqlite:///path or postgresql://host/db, got {scheme!r}"
        )
    base = scheme.split("+", 1)[0].lower()
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if base in ("postgres", "postgresql"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported database {base!r}: use sqlite:///path or postgresql://…")


def hash_token(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_of(key_or_hash: str) -> str:
    """The stored token for what a caller names a key by: its text (``sk-…``) or its hash."""
    if len(key_or_hash) == 64 and all(c in "0123456789abcdef" for c in key_or_hash):
        return key_or_hash
    return hash_token(key_or_hash)


def _lock_file(database: Path) -> int:
    """An exclusive lock on ``<database>.lock``, waited for (the fd; closing it unlocks)."""
    fd = os.open(f"{database}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _key_query() -> Any:
    """A key's row with its team's and user's columns (``KeyStore.key``, ``keys_by_token``)."""
    return sa.select(
        keys,
        # the identity's spend and user fields (keysadmin: proxy/virtual_keys.identity_of)
        teams.c.spend.label("team_spend"),
        users.c.user_email,
        users.c.spend.label("user_spend"),
        users.c.rpm_limit.label("user_rpm_limit"),
        users.c.tpm_limit.label("user_tpm_limit"),
        teams.c.team_alias,
        teams.c.models.label("team_models"),
        teams.c.blocked.label("team_blocked"),
        teams.c.metadata.label("team_metadata"),
        # what the limits read (proxy/budgets.py): the team's and the user's budgets
        teams.c.max_budget.label("team_max_budget"),
        teams.c.budget_duration.label("team_budget_duration"),
        teams.c.rpm_limit.label("team_rpm_limit"),
        teams.c.tpm_limit.label("team_tpm_limit"),
        teams.c.created_at.label("team_created_at"),
        users.c.max_budget.label("user_max_budget"),
        users.c.budget_duration.label("user_budget_duration"),
        users.c.created_at.label("user_created_at"),
        teams.c.soft_budget.label("team_soft_budget"),
        users.c.soft_budget.label("user_soft_budget"),
    ).select_from(
        keys.outerjoin(teams, keys.c.team_id == teams.c.team_id).outerjoin(
            users, keys.c.user_id == users.c.user_id
        )
    )


def _plain(row: Any) -> dict[str, Any]:
    """A result row as a dict with plain ``str`` names (SQLAlchemy's are a str subclass that
    JSON encoders such as orjson refuse)."""
    return {str(name): value for name, value in row.items()}


def _masked(key: str) -> str:
    return f"{key[:3]}...{key[-4:]}"


class NoSuchTeam(LookupError):
    """A key names a ``team_id`` no team has (``args[0]`` is the id)."""


class KeyStore:
    """Rows of keys and teams. ``clock`` gives Unix seconds (tests pass their own)."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.clock = clock
        self._engine: AsyncEngine | None = None

    @classmethod
    def for_config(cls, database_url: str | None, data_dir: str | None) -> KeyStore:
        url = database_url or os.environ.get("DATABASE_URL")
        if not url:
            directory = default_data_dir(data_dir)
            url = f"sqlite:///{directory / DATABASE_FILE}"
        return cls(url)

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("KeyStore.start() was not awaited")
        return self._engine

    async def start(self) -> list[int]:
        """Connect, create the database if new, migrate; the schema versions applied."""
        url = sa.make_url(async_url(self.url))
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self._engine = create_async_engine(url)
        # instances starting at once migrate one after the other: a file lock beside a SQLite
        # database, an advisory lock in PostgreSQL (migrations.migrate takes it)
        lock = None
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            lock = await asyncio.to_thread(_lock_file, Path(str(url.database)).expanduser())
        try:
            async with self._engine.begin() as conn:
                return await conn.run_sync(migrations.migrate)
        finally:
            if lock is not None:
                os.close(lock)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    # -------------------------------------------------------------------------- keys

    async def create_key(
        self, columns: dict[str, Any], expires_in: float | None, key: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A new key: its text (shown once, never stored) and its row. ``key`` is a text the
        admin chose (``/key/generate``'s ``key``); BadField when another key has it."""
        key = key or "sk-" + secrets.token_urlsafe(24)
        now = self.clock()
        row = dict(
            columns,
            token=hash_token(key),
            key_name=_masked(key),
            expires_at=None if expires_in is None else now + expires_in,
            spend=0.0,
            created_at=now,
            updated_at=now,
        )
        async with self.engine.begin() as conn:
            await self._check_team(conn, row.get("team_id"))
            await self._check_alias(conn, row.get("key_alias"), None)
            taken = await conn.execute(sa.select(keys.c.token).where(keys.c.token == row["token"]))
            if taken.first() is not None:
                raise BadField("key", "a key with this text exists already: choose another")
            await conn.execute(keys.insert().values(**row))
        return key, row

    async def key(self, token: str) -> dict[str, Any] | None:
        """A key's row with its team's (``team_alias``, ``team_models``, ``team_blocked``,
        ``team_metadata``), or None."""
        async with self.engine.connect() as conn:
            found = (await conn.execute(_key_query().where(keys.c.token == token))).mappings().first()
        return _plain(found) if found is not None else None

    async def keys_by_token(self, tokens: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Several keys' rows as ``key`` returns them, by token, in one query (absent: not found)."""
        wanted = list(tokens)
        out: dict[str, dict[str, Any]] = {}
        async with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                query = _key_query().where(keys.c.token.in_(wanted[start : start + 500]))
                for row in (await conn.execute(query)).mappings():
                    out[row["token"]] = _plain(row)
        return out

    async def update_key(
        self, token: str, columns: dict[str, Any], expires_in: float | None = None
    ) -> dict[str, Any] | None:
        values = dict(columns, updated_at=self.clock())
        if expires_in is not None:
            values["expires_at"] = self.clock() + expires_in
        async with self.engine.begin() as conn:
            if "team_id" in values:
                await self._check_team(conn, values["team_id"])
            await self._check_alias(conn, values.get("key_alias"), token)
            done = await conn.execute(keys.update().where(keys.c.token == token).values(**values))
            if done.rowcount == 0:
                return None
        return await self.key(token)

    async def delete_keys(self, tokens: Iterable[str]) -> list[str]:
        wanted = list(dict.fromkeys(tokens))
        async with self.engine.begin() as conn:
            found = (
                (await conn.execute(sa.select(keys.c.token).where(keys.c.token.in_(wanted)))).scalars().all()
            )
            await conn.execute(keys.delete().where(keys.c.token.in_(found)))
        return [t for t in wanted if t in set(found)]

    async def list_keys(self, team_id: str | None = None, user_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(keys).order_by(keys.c.created_at, keys.c.token)
        if team_id is not None:
            query = query.where(keys.c.team_id == team_id)
        if user_id is not None:
            query = query.where(keys.c.user_id == user_id)
        async with self.engine.connect() as conn:
            return [_plain(r) for r in (await conn.execute(query)).mappings()]

    # -------------------------------------------------------------------------- teams

    async def create_team(self, columns: dict[str, Any], team_id: str | None) -> dict[str, Any]:
        now = self.clock()
        row = dict(columns, team_id=team_id or str(uuid.uuid4()), spend=0.0, created_at=now, updated_at=now)
        async with self.engine.begin() as conn:
            exists = await conn.execute(sa.select(teams.c.team_id).where(teams.c.team_id == row["team_id"]))
            if exists.first() is not None:
                raise KeyError(row["team_id"])
            await conn.execute(teams.insert().values(**row))
        return row

    async def team(self, team_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            found = (
                (await conn.execute(sa.select(teams).where(teams.c.team_id == team_id))).mappings().first()
            )
        return _plain(found) if found is not None else None

    async def update_team(self, team_id: str, columns: dict[str, Any]) -> dict[str, Any] | None:
        async with self.engine.begin() as conn:
            done = await conn.execute(
                teams.update().where(teams.c.team_id == team_id).values(**columns, updated_at=self.clock())
            )
            if done.rowcount == 0:
                return None
        return await self.team(team_id)

    async def delete_teams(self, team_ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Delete teams and their keys; (the teams deleted, the key tokens deleted with them)."""
        wanted = list(dict.fromkeys(team_ids))
        async with self.engine.begin() as conn:
            found = set(
                (await conn.execute(sa.select(teams.c.team_id).where(teams.c.team_id.in_(wanted)))).scalars()
            )
            tokens = list(
                (await conn.execute(sa.select(keys.c.token).where(keys.c.team_id.in_(found)))).scalars()
            )
            await conn.execute(keys.delete().where(keys.c.team_id.in_(found)))
            await conn.execute(teams.delete().where(teams.c.team_id.in_(found)))
        return [t for t in wanted if t in found], tokens

    async def list_teams(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            query = sa.select(teams).order_by(teams.c.created_at, teams.c.team_id)
            return [_plain(r) for r in (await conn.execute(query)).mappings()]

    async def regenerate_key(
        self, token: str, columns: dict[str, Any], expires_in: float | None = None
    ) -> tuple[str, dict[str, Any]] | None:
        """A new text for an existing key (the old one stops working at once); its other fields
        and spend stay, ``columns`` change some. None when there is no such key."""
        key = "sk-" + secrets.token_urlsafe(24)
        values = dict(columns, token=hash_token(key), key_name=_masked(key), updated_at=self.clock())
        if expires_in is not None:
            values["expires_at"] = self.clock() + expires_in
        async with self.engine.begin() as conn:
            if "team_id" in values:
                await self._check_team(conn, values["team_id"])
            await self._check_alias(conn, values.get("key_alias"), token)
            done = await conn.execute(keys.update().where(keys.c.token == token).values(**values))
            if done.rowcount == 0:
                return None
        row = await self.key(values["token"])
        return (key, row) if row is not None else None

    # ---------------------------------------------------------- users and end users (customers)
    # One shape for both: rows keyed by ``user_id``. Deleting a user deletes its keys, as the
    # reference does; an end user owns no keys.

    async def create_user(self, columns: dict[str, Any], user_id: str | None) -> dict[str, Any]:
        """A new user (``user_id`` made when None); KeyError when the id is taken."""
        now = self.clock()
        row = dict(columns, user_id=user_id or str(uuid.uuid4()), spend=0.0, created_at=now, updated_at=now)
        return await self._insert_new(users, row)

    async def user(self, user_id: str) -> dict[str, Any] | None:
        return await self._get(users, user_id)

    async def update_user(self, user_id: str, columns: dict[str, Any]) -> dict[str, Any] | None:
        return await self._update(users, user_id, columns)

    async def delete_users(self, user_ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Delete users and their keys; (the users deleted, the key tokens deleted with them)."""
        wanted = list(dict.fromkeys(user_ids))
        async with self.engine.begin() as conn:
            found = set(
                (await conn.execute(sa.select(users.c.user_id).where(users.c.user_id.in_(wanted)))).scalars()
            )
            tokens = list(
                (await conn.execute(sa.select(keys.c.token).where(keys.c.user_id.in_(found)))).scalars()
            )
            await conn.execute(keys.delete().where(keys.c.user_id.in_(found)))
            await conn.execute(users.delete().where(users.c.user_id.in_(found)))
        return [u for u in wanted if u in found], tokens

    async def list_users(self) -> list[dict[str, Any]]:
        return await self._list(users, users.c.user_id)

    async def create_customer(self, columns: dict[str, Any], user_id: str) -> dict[str, Any]:
        now = self.clock()
        return await self._insert_new(
            customers, dict(columns, user_id=user_id, created_at=now, updated_at=now)
        )

    async def customer(self, user_id: str) -> dict[str, Any] | None:
        return await self._get(customers, user_id)

    async def update_customer(self, user_id: str, columns: dict[str, Any]) -> dict[str, Any] | None:
        return await self._update(customers, user_id, columns)

    async def delete_customers(self, user_ids: Iterable[str]) -> list[str]:
        wanted = list(dict.fromkeys(user_ids))
        async with self.engine.begin() as conn:
            found = set(
                (
                    await conn.execute(sa.select(customers.c.user_id).where(customers.c.user_id.in_(wanted)))
                ).scalars()
            )
            await conn.execute(customers.delete().where(customers.c.user_id.in_(found)))
        return [u for u in wanted if u in found]

    async def list_customers(self) -> list[dict[str, Any]]:
        return await self._list(customers, customers.c.user_id)

    async def _insert_new(self, table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
        id_column = table.primary_key.columns[0]
        async with self.engine.begin() as conn:
            exists = await conn.execute(sa.select(id_column).where(id_column == row[id_column.name]))
            if exists.first() is not None:
                raise KeyError(row[id_column.name])
            await conn.execute(table.insert().values(**row))
        return await self._get(table, row[id_column.name]) or row

    async def _get(self, table: sa.Table, ident: str) -> dict[str, Any] | None:
        id_column = table.primary_key.columns[0]
        async with self.engine.connect() as conn:
            found = (await conn.execute(sa.select(table).where(id_column == ident))).mappings().first()
        return _plain(found) if found is not None else None

    async def _update(self, table: sa.Table, ident: str, columns: dict[str, Any]) -> dict[str, Any] | None:
        id_column = table.primary_key.columns[0]
        async with self.engine.begin() as conn:
            done = await conn.execute(
                table.update().where(id_column == ident).values(**columns, updated_at=self.clock())
            )
            if done.rowcount == 0:
                return None
        return await self._get(table, ident)

    async def _list(self, table: sa.Table, id_column: sa.Column[Any]) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            query = sa.select(table).order_by(table.c.created_at, id_column)
            return [_plain(r) for r in (await conn.execute(query)).mappings()]

    async def _check_alias(self, conn: Any, alias: str | None, own_token: str | None) -> None:
        """Refuse a ``key_alias`` another key has (as the reference does): people and the reports
        name keys by alias, and two keys of one name cannot be told apart there."""
        if alias is None:
            return
        query = sa.select(keys.c.token).where(keys.c.key_alias == alias)
        if own_token is not None:
            query = query.where(keys.c.token != own_token)
        if (await conn.execute(query.limit(1))).first() is not None:
            raise BadField("key_alias", f"another key has the key_alias {alias!r}: key aliases are unique")

    async def _check_team(self, conn: Any, team_id: str | None) -> None:
        if team_id is None:
            return
        found = await conn.execute(sa.select(teams.c.team_id).where(teams.c.team_id == team_id))
        if found.first() is None:
            raise NoSuchTeam(team_id)


__all__ = [
    "DATABASE_FILE",
    "KeyStore",
    "NoSuchTeam",
    "async_url",
    "default_data_dir",
    "hash_token",
    "token_of",
]
