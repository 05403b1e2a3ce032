"""The in-memory store: a bounded dict of encoded entries, oldest dropped first.

Values are the encoded bytes, never live objects, so every hit decodes a fresh response and
no caller can change what another caller gets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_LOCAL_MAX_ITEMS = 10_000

_FOREVER = float("inf")


class SyncStoreAsyncTwins:
    """The async methods of a store whose work is quick and local: they call the sync ones."""

    def get(self, key: str) -> bytes | None:  # pragma: no cover - provided by the store
        raise NotImplementedError

    def get_many(self, keys: list[str]) -> list[bytes | None]:  # pragma: no cover
        raise NotImplementedError

    def set_many(self, items: list[tuple[str, bytes]], ttl_s: float | None) -> None:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover
        raise NotImplementedError

    async def aget(self, key: str) -> bytes | None:
        return self.get(key)

    async def aget_many(self, keys: list[str]) -> list[bytes | None]:
        return self.get_many(keys)

    async def aset_many(self, items: list[tuple[str, bytes]], ttl_s: float | None) -> None:
        self.set_many(items, ttl_s)

    async def aclose(self) -> None:
        self.close()


class LocalStore(SyncStoreAsyncTwins):
    """Entries in this process only; see the module docstring."""

    remote = False

    def __init__(self, clock: Callable[[], float], max_items: int = DEFAULT_LOCAL_MAX_ITEMS) -> None:
        self._clock = clock
        self._max_items = max_items
        # key -> (expires at, value); insertion order is age order, reads refresh it (LRU)
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return entry[1]

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    def set_many(self, items: list[tuple[str, bytes]], ttl_s: float | None) -> None:
        expires = _FOREVER if ttl_s is None else self._clock() + ttl_s
        with self._lock:
            for key, value in items:
                self._data[key] = (expires, value)
                self._data.move_to_end(key)
            while len(self._data) > self._max_items:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._data if k.startswith(prefix)]:
                del self._data[key]

    def close(self) -> None:
        pass  # nothing to release: the async twins come from SyncStoreAsyncTwins
