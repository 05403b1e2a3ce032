"""DatabaseKeyBackend over a real key store (SQLite and PostgreSQL), on injected clocks: expiry, and how long a
change made elsewhere (another proxy instance) takes to be seen through the lookup cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import HTTPConnection

from lmgate.control import migrations
from lmgate.control.store import KeyStore
from lmgate.proxy.errors import ProxyError
from lmgate.proxy.virtual_keys import DatabaseKeyBackend

MASTER = "sk-master-backend-000000"
CONN = HTTPConnection({"type": "http", "headers": [], "path": "/v1/chat/completions"})


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


ALL_VERSIONS = [version for version, _what, _step in migrations.MIGRATIONS]


def database_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'dir' / 'keys.db'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request.param, tmp_path, request)


@pytest.fixture
async def store(url: str) -> AsyncIterator[KeyStore]:
    store = KeyStore(url)
    assert await store.start() == ALL_VERSIONS
    try:
        yield store
    finally:
        await store.close()


async def refusal(backend: DatabaseKeyBackend, key: str) -> ProxyError:
    with pytest.raises(ProxyError) as caught:
        await backend.authenticate(key, CONN)
    return caught.value


def columns(**values: Any) -> dict[str, Any]:
    return {"models": [], "metadata": {}, "tags": [], "blocked": False, **values}


async def test_a_key_expires_on_the_clock(store: KeyStore) -> None:
    clock = Clock()
    store.clock = clock
    backend = DatabaseKeyBackend(store, MASTER, clock=clock, ttl_s=0)
    key, row = await store.create_key(columns(key_alias="short"), expires_in=60)
    user = await backend.authenticate(key, CONN)
    assert (user.token, user.key_alias, user.user_role) == (row["token"], "short", "internal_user")
    clock.now += 59.9
    await backend.authenticate(key, CONN)
    clock.now += 0.1
    error = await refusal(backend, key)
    assert error.status == 401 and "expired" in error.message
    assert (await backend.authenticate(MASTER, CONN)).user_role == "proxy_admin"


async def test_a_change_elsewhere_is_seen_when_the_cached_lookup_expires(store: KeyStore) -> None:
    monotonic = Clock()
    backend = DatabaseKeyBackend(store, MASTER, ttl_s=5, monotonic=monotonic)
    key, row = await store.create_key(columns(), expires_in=None)
    await backend.authenticate(key, CONN)
    await store.update_key(row["token"], {"blocked": True})  # as another instance would
    monotonic.now += 4.9
    await backend.authenticate(key, CONN)  # still the cached row
    monotonic.now += 0.1
    backend.refresh_every_s = 0.0
    await backend.authenticate(key, CONN)  # expired a moment ago: served while read again…
    await backend.refreshed()
    assert (await refusal(backend, key)).status == 401  # …and the fresh read refuses it
    await store.update_key(row["token"], {"blocked": False})
    monotonic.now += 10.0  # unused for two TTLs: looked up at once, never served stale
    await store.update_key(row["token"], {"blocked": True})
    assert (await refusal(backend, key)).status == 401
    backend.forget([row["token"]])
    await store.update_key(row["token"], {"blocked": False})
    await backend.authenticate(key, CONN)  # this instance's own change is seen at once


async def test_migrations_run_once(url: str) -> None:
    first = KeyStore(url)
    assert await first.start() == ALL_VERSIONS
    await first.close()
    again = KeyStore(url)
    assert await again.start() == []
    await again.close()


async def test_migration_3_upgrades_a_version_1_database(url: str) -> None:
    """A store written by schema version 1 gains the user fields and the end users' table, and
    keeps its rows."""
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    from lmgate.control.store import async_url

    old = sa.MetaData()
    sa.Table(
        "lmgate_users",
        old,
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("user_email", sa.String(256)),
        sa.Column("max_budget", sa.Float),
        sa.Column("budget_duration", sa.String(32)),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("spend", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    version = sa.Table("lmgate_schema_version", old, sa.Column("version", sa.Integer, nullable=False))
    target = sa.make_url(async_url(url))
    if target.get_backend_name() == "sqlite":
        Path(str(target.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(target)
    async with engine.begin() as conn:
        await conn.run_sync(old.create_all)
        await conn.execute(version.insert().values(version=1))
        await conn.execute(
            old.tables["lmgate_users"]
            .insert()
            .values(
                user_id="old",
                user_email="o@example.com",
                metadata={},
                spend=1.5,
                created_at=1.0,
                updated_at=1.0,
            )
        )
        # the other tables of version 1, as its step made them
        await conn.run_sync(lambda c: migrations.schema.metadata.create_all(
            c, tables=[migrations.schema.teams, migrations.schema.keys]))  # fmt: skip
    await engine.dispose()

    store = KeyStore(url)
    try:
        assert await store.start() == [v for v in ALL_VERSIONS if v > 1]
        kept = await store.user("old")
        assert kept is not None and (kept["spend"], kept["user_email"], kept["user_alias"]) == (
            1.5,
            "o@example.com",
            None,
        )
        await store.update_user("old", {"user_alias": "Old", "rpm_limit": 5})
        assert (await store.user("old") or {})["user_alias"] == "Old"
        await store.create_customer({"alias": "A", "blocked": False, "metadata": {}}, "c-1")
        assert (await store.customer("c-1") or {})["alias"] == "A"
    finally:
        await store.close()
