"""The disk store: one SQLite file (stdlib ``sqlite3``), shared by every process on the machine.

WAL journaling lets readers and a writer work at once, across processes. Expired rows are
skipped on read and deleted now and then on write. The async twins run the same statements
inline: a local SQLite read takes microseconds, less than a hop to a worker thread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable

from .local import SyncStoreAsyncTwins

DISK_FILE_NAME = "lmgate-cache.sqlite3"
DISK_BUSY_TIMEOUT_S = 2.0
# delete expired rows once every this many writes
_PRUNE_EVERY_WRITES = 256


class DiskStore(SyncStoreAsyncTwins):
    """Entries in ``<directory>/lmgate-cache.sqlite3``; see the module docstring."""

    remote = False

    def __init__(self, directory: str, clock: Callable[[], float]) -> None:
        self._clock = clock
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as error:
            raise ValueError(f"disk_cache_dir: cannot create {directory!r}: {error}") from error
        self.path = os.path.join(directory, DISK_FILE_NAME)
        # one connection, serialised by a lock: statements take microseconds
        self._db = sqlite3.connect(
            self.path, timeout=DISK_BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
        )
        self._lock = threading.Lock()
        self._writes = 0
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires REAL)"
            )

    def get(self, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT value, expires FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= self._clock()):
            return None
        return bytes(row[0])

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    def set_many(self, items: list[tuple[str, bytes]], ttl_s: float | None) -> None:
        now = self._clock()
        expires = None if ttl_s is None else now + ttl_s
        with self._lock:
            with self._db:  # one transaction
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO entries (key, value, expires) VALUES (?, ?, ?)",
                    [(key, value, expires) for key, value in items],
                )
            self._writes += 1
            if self._writes % _PRUNE_EVERY_WRITES == 0:
                self._db.execute("DELETE FROM entries WHERE expires IS NOT NULL AND expires <= ?", (now,))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def clear(self, prefix: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM entries WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))

    def close(self) -> None:
        with self._lock:
            self._db.close()

