"""The PostgreSQL harness (tests/pg.py) works, and the control store's migrations run on it."""

from __future__ import annotations

import os

import sqlalchemy as sa
from pg import PostgresServer

from lmgate.control import migrations
from lmgate.control.store import KeyStore


def test_the_server_answers_on_loopback_as_an_unprivileged_user(postgres_server: PostgresServer) -> None:
    assert postgres_server.host == "127.0.0.1" and postgres_server.port > 0
    assert postgres_server.psql("SELECT 40 + 2").strip() == "42"
    owner = postgres_server.psql("SELECT pg_catalog.current_setting('data_directory')").strip()
    assert owner.startswith("/tmp/lmgate-pg-")
    if os.geteuid() == 0:  # PostgreSQL refuses root: the harness must have changed user
        uid = os.stat(owner).st_uid
        assert uid != 0


def test_each_fresh_database_is_empty_and_separate(postgres_server: PostgresServer) -> None:
    first = postgres_server.create_database()
    second = postgres_server.create_database()
    assert first != second and first.startswith("postgresql+asyncpg://postgres@127.0.0.1:")
    name = first.rsplit("/", 1)[1]
    postgres_server.psql("CREATE TABLE marker (x int)", database=name)
    other = second.rsplit("/", 1)[1]
    assert (
        postgres_server.psql(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'marker'", database=other
        ).strip()
        == "0"
    )
    postgres_server.drop_database(name)
    postgres_server.drop_database(other)


async def test_control_store_migrations_run_on_postgresql(fresh_postgres_url: str) -> None:
    store = KeyStore(fresh_postgres_url)
    assert await store.start() == [version for version, _what, _step in migrations.MIGRATIONS]
    try:
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
            version = await conn.run_sync(migrations.current_version)
        assert {"lmgate_keys", "lmgate_teams", "lmgate_users", "lmgate_schema_version"} <= tables
        assert version == migrations.LATEST
    finally:
        await store.close()
    again = KeyStore(fresh_postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    assert await again.start() == []  # already at the latest version: nothing to apply
    await again.close()
