"""The log store: every finished call as a row with the columns pages filter and group on, plus
its full standard logging payload.

One interface (``base.LogStore``), one implementation so far (``sqlite.SQLiteStore``, SQLAlchemy
Core on one SQLite file in WAL mode). ClickHouse and PostgreSQL are later implementations of the
same Protocol. Written by the ``"store"`` logger (``lmgate.loggers.store``), read by
``lmgate logs`` (``lmgate.logs_cli``). SQLAlchemy is imported only when a store is opened.
"""

from __future__ import annotations

from .base import Filters, LogStore, Page, default_path

__all__ = ["Filters", "LogStore", "Page", "default_path", "open_store"]


def open_store(path: str | None = None, **options: object) -> LogStore:
    """The SQLite store at ``path`` (default: ``default_path()``), created and migrated if needed."""
    from .sqlite import SQLiteStore

    return SQLiteStore(path or default_path(), **options)  # type: ignore[arg-type]
