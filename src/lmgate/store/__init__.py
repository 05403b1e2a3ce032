"""The log store: every finished call as a row with the columns pages filter and group on, plus
its full standard logging payload.

One interface (``base.LogStore``): ``sqlite.SQLiteStore`` (SQLAlchemy Core on one SQLite file in
WAL mode, the default), ``clickhouse.ClickHouseStore`` (its HTTP interface) and
``postgres.PostgresStore`` (SQLAlchemy Core, shared table definition). Written by the ``"store"`` logger (``lmgate.loggers.store``), read by
``lmgate logs`` (``lmgate.logs_cli``). SQLAlchemy is imported only when a store is opened.
"""

from __future__ import annotations

from .base import Filters, LogStore, Page, default_path

__all__ = ["Filters", "LogStore", "Page", "default_path", "open_store"]


def open_store(
    path: str | None = None, *, type: str = "sqlite", url: str | None = None, **options: object
) -> LogStore:
    """The store of ``type``: SQLite at ``path`` (default: ``default_path()``), ClickHouse or
    PostgreSQL at ``url``; created and migrated if needed."""
    if type == "clickhouse":
        from .clickhouse import ClickHouseStore

        if not url:
            raise ValueError("store: type clickhouse needs a url (http://host:8123/database)")
        return ClickHouseStore(url, **options)  # type: ignore[arg-type]
    if type in ("postgres", "postgresql"):
        from .postgres import PostgresStore

        if not url:
            raise ValueError("store: type postgres needs a url (postgresql://user:password@host/db)")
        return PostgresStore(url, **options)  # type: ignore[arg-type]
    if type != "sqlite":
        raise ValueError(f"store: type must be sqlite, clickhouse or postgres, got {type!r}")
    from .sqlite import SQLiteStore

    return SQLiteStore(path or default_path(), **options)  # type: ignore[arg-type]
