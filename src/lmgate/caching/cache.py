"""``Cache``: one facade over the local, Redis and disk stores.

The facade owns what every store shares: the mode, the default TTL, the namespace, the
counters, and what a failing store means. A store that raises or times out never breaks a
call: the call goes on uncached, the error is counted, one warning is logged per outage, and
the store is left alone for a short, growing pause (0.5 s doubling to 30 s) so an outage does
not add a timeout to every call. The first operation after the pause probes it again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

from .. import _conf
from ..exceptions import ConfigError
from .local import DEFAULT_LOCAL_MAX_ITEMS, LocalStore
from .redis_store import DEFAULT_REDIS_TIMEOUT_S

logger = logging.getLogger("lmgate.cache")

DEFAULT_TTL_S = 3600.0
DEFAULT_NAMESPACE = "lmgate"
DOWN_PAUSE_FIRST_S = 0.5
DOWN_PAUSE_MAX_S = 30.0
CACHE_TYPES = ("local", "redis", "disk")
SUPPORTED_CALL_TYPES = ("completion", "acompletion", "embedding", "aembedding")


class CacheMode(str, Enum):
    """When calls use the cache: all of them unless ``caching=False`` (``default_on``, the
    default), or only those that ask with ``caching=True`` (``default_off``)."""

    default_on = "default_on"
    default_off = "default_off"


class Cache:
    """Response cache; assign one to ``lmgate.cache``.

    ``Cache()`` keeps entries in this process; ``Cache(type="redis", host=…, port=…,
    password=…)`` or ``Cache(type="redis", url="redis://…")`` shares them between processes
    and machines; ``Cache(type="disk", disk_cache_dir=…)`` keeps them across restarts.
    See docs/caching.md for the key, the modes and per-call controls.
    """

    def __init__(
        self,
        type: str = "local",
        *,
        mode: str | CacheMode = CacheMode.default_on,
        ttl: float | None = DEFAULT_TTL_S,
        namespace: str | None = None,
        supported_call_types: list[str] | tuple[str, ...] | None = None,
        host: str | None = None,
        port: int | str | None = None,
        password: str | None = None,
        username: str | None = None,
        url: str | None = None,
        db: int = 0,
        ssl: bool = False,
        timeout: float = DEFAULT_REDIS_TIMEOUT_S,
        disk_cache_dir: str | None = None,
        max_items: int = DEFAULT_LOCAL_MAX_ITEMS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        kind = _conf.choice(str(getattr(type, "value", type)), CACHE_TYPES, name="type", where="Cache")
        self.mode = _conf.choice(mode, tuple(CacheMode), name="mode", where="Cache")
        self.type = kind
        self.ttl: float | None = (
            None if ttl is None else _conf.duration_s(ttl, name="ttl", where="Cache", above=0)
        )
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise ConfigError(f"must be a non-empty string, got {namespace!r}", "Cache", "namespace")
        self.namespace = namespace or DEFAULT_NAMESPACE
        types = SUPPORTED_CALL_TYPES if supported_call_types is None else tuple(supported_call_types)
        unknown = [t for t in types if t not in SUPPORTED_CALL_TYPES]
        if unknown:
            raise ConfigError(
                f"has {unknown!r}; lmgate caches {', '.join(SUPPORTED_CALL_TYPES)}",
                "Cache",
                "supported_call_types",
            )
        self.supported_call_types = frozenset(types)
        self._clock = clock
        self._lock = threading.Lock()
        self._counts = {"hits": 0, "misses": 0, "stores": 0, "errors": 0, "bypassed": 0}
        self._pause_s = 0.0
        self._down_until = 0.0
        self._warned = False
        self._where = kind
        self._store: Any
        if kind == "local":
            items = _conf.number(max_items, name="max_items", where="Cache", integer=True, minimum=1)
            self._store = LocalStore(clock, items)
        elif kind == "disk":
            if not disk_cache_dir:
                raise ConfigError(
                    "type='disk' needs disk_cache_dir",
                    "Cache",
                    "disk_cache_dir",
                    fix="name the directory to keep entries in",
                )
            from .disk import DiskStore

            self._store = DiskStore(str(disk_cache_dir), clock)
            self._where = f"disk {self._store.path}"
        else:
            self._store = self._redis(host, port, password, username, url, db, ssl, timeout)

    def _redis(
        self, host: Any, port: Any, password: Any, username: Any, url: Any, db: Any, ssl: Any, timeout: Any
    ) -> Any:
        from .._secrets import remember_secret
        from .redis_store import RedisStore

        # like the reference: unset connection settings come from REDIS_URL / REDIS_HOST / …
        if url is None and host is None:
            url = os.environ.get("REDIS_URL") or None
            host = os.environ.get("REDIS_HOST")
            port = port if port is not None else os.environ.get("REDIS_PORT")
            password = password if password is not None else os.environ.get("REDIS_PASSWORD")
        timeout_s = _conf.duration_s(timeout, name="timeout", where="Cache", above=0)
        if url is not None:
            if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError("must start with redis://, rediss:// or unix://", "Cache", "url")
            from urllib.parse import urlsplit

            parts = urlsplit(url)
            remember_secret(parts.password)
            self._where = f"redis {parts.hostname}:{parts.port or 6379}"
        else:
            host = host or "localhost"
            port = (
                6379
                if port is None
                else _conf.number(port, name="port", where="Cache", integer=True, minimum=1, maximum=65535)
            )
            self._where = f"redis {host}:{port}"
        remember_secret(password)
        return RedisStore(
            url=url,
            host=host,
            port=int(port or 6379),
            password=password,
            username=username,
            db=_conf.number(db, name="db", where="Cache", integer=True, minimum=0),
            ssl=bool(ssl),
            timeout_s=timeout_s,
        )

    def __repr__(self) -> str:  # never the password
        return f"Cache(type={self.type!r}, where={self._where!r}, namespace={self.namespace!r}, mode={self.mode.value!r})"

    @property
    def default_on(self) -> bool:
        return self.mode is CacheMode.default_on

    # ---- stats ----
    def stats(self) -> dict[str, Any]:
        """Counters since this cache was made: hits, misses, stores, errors (store failures,
        timeouts included) and bypassed (operations skipped while the store was paused after
        an error), and whether the store answers now."""
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            out["healthy"] = self._pause_s == 0.0
        out["type"] = self.type
        return out

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    # ---- store operations that never raise ----
    def _available(self) -> bool:
        if self._down_until and self._clock() < self._down_until:
            self._count("bypassed")
            return False
        return True

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            self._counts["errors"] += 1
            self._pause_s = min(DOWN_PAUSE_MAX_S, self._pause_s * 2 or DOWN_PAUSE_FIRST_S)
            self._down_until = self._clock() + self._pause_s
            warn, self._warned = not self._warned, True
        if warn:
            from .._secrets import scrub

            logger.warning(
                "lmgate cache: the %s store failed (%s: %s); calls go on uncached until it answers again",
                self._where,
                type(error).__name__,
                scrub(str(error)),
            )

    def _answered(self) -> None:
        if self._pause_s:
            with self._lock:
                self._pause_s, self._down_until = 0.0, 0.0
                recovered, self._warned = self._warned, False
            if recovered:
                logger.info("lmgate cache: the %s store answers again", self._where)

    def _get(self, keys: list[str]) -> list[bytes | None] | None:
        """The stored values, or None when the store is unavailable."""
        if not self._available():
            return None
        try:
            values = [self._store.get(keys[0])] if len(keys) == 1 else self._store.get_many(keys)
        except Exception as error:
            self._failed(error)
            return None
        self._answered()
        return values

    async def _aget(self, keys: list[str]) -> list[bytes | None] | None:
        if not self._available():
            return None
        try:
            values = (
                [await self._store.aget(keys[0])] if len(keys) == 1 else await self._store.aget_many(keys)
            )
        except Exception as error:
            self._failed(error)
            return None
        self._answered()
        return values

    def _set(self, items: list[tuple[str, bytes]], ttl_s: float | None) -> None:
        if not self._available():
            return
        try:
            self._store.set_many(items, ttl_s)
        except Exception as error:
            self._failed(error)
            return
        self._answered()
        self._count("stores", len(items))

    async def _aset(self, items: list[tuple[str, bytes]], ttl_s: float | None) -> None:
        if not self._available():
            return
        try:
            await self._store.aset_many(items, ttl_s)
        except Exception as error:
            self._failed(error)
            return
        self._answered()
        self._count("stores", len(items))

    # ---- housekeeping ----
    def clear(self) -> None:
        """Delete every entry of this cache's namespace."""
        self._store.clear(self.namespace + ":")

    def close(self) -> None:
        """Release connections and files (sync side)."""
        self._store.close()

    async def aclose(self) -> None:
        """Release connections and files, this event loop's async client included."""
        await self._store.aclose()


__all__ = ["Cache", "CacheMode", "DEFAULT_TTL_S", "DEFAULT_NAMESPACE"]
