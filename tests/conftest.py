"""Shared fixtures: real local servers (fake provider, log receiver, redis, PostgreSQL) and a loopback-only guard."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes import FakeBedrock, FakeGemini, FakeProvider, LogReceiver, RedisServer, install_loopback_guard
from pg import PostgresServer


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    """Any connect to an address outside 127.0.0.0/8, ::1, localhost or a unix socket raises RuntimeError."""
    uninstall = install_loopback_guard()
    yield
    uninstall()


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fp:
        yield fp


@pytest.fixture(scope="session")
def fake_provider_session() -> Iterator[FakeProvider]:
    """One provider for the whole run: call .reset() before relying on its state."""
    with FakeProvider() as fp:
        yield fp


@pytest.fixture(scope="session")
def fake_gemini_session() -> Iterator[FakeGemini]:
    """One fake Gemini API for the whole run: call .reset() before relying on its state."""
    with FakeGemini() as fg:
        yield fg


@pytest.fixture(scope="session")
def fake_bedrock_session() -> Iterator[FakeBedrock]:
    """One fake Bedrock Runtime for the whole run: call .reset() before relying on its state."""
    with FakeBedrock() as fb:
        yield fb


@pytest.fixture
def log_receiver() -> Iterator[LogReceiver]:
    with LogReceiver() as rx:
        yield rx


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Shared by the run: call .flushall() first if a test needs an empty store."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server_with_password() -> Iterator[RedisServer]:
    with RedisServer(password="s3cret-pw") as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the run (tests/pg.py), started at the first test that asks."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """A database shared by the run: ``postgresql+asyncpg://postgres@127.0.0.1:<port>/<db>``."""
    return postgres_server.create_database("lmgate_session")


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database for this test alone (its async SQLAlchemy URL)."""
    return postgres_server.create_database()


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory):
    """Spools, disk caches and log stores of every test (and of every process a test starts) live in a fresh directory,
    so no run inherits records spooled by an earlier one."""
    import os

    saved = {name: os.environ.get(name) for name in ("LMGATE_CACHE_DIR", "LMGATE_DATA_DIR")}
    os.environ["LMGATE_CACHE_DIR"] = str(tmp_path_factory.mktemp("lmgate-cache"))
    # the log store's default file lives in the data directory
    os.environ["LMGATE_DATA_DIR"] = str(tmp_path_factory.mktemp("lmgate-data"))
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _reset_lmgate_settings():
    """Every test starts with lmgate's module-level settings at their defaults, and leaves nothing pending."""
    import lmgate

    lmgate.reset_settings()
    yield
    try:
        lmgate.flush_callbacks(10)
    finally:
        lmgate.reset_settings()  # loggers built from callback names too
        from lmgate.loggers.exit import live_loggers

        for logger in live_loggers():  # loggers a test left open: their HTTP clients hold sockets
            logger.close(5)
