"""The Redis store: entries every process sharing the server sees.

``redis`` is imported when the first operation runs, not when ``Cache`` is built. Every
operation is bounded by one socket timeout and never retried here: the facade decides what a
failure means (count it, warn once, go on uncached). The sync path uses one thread-safe
client; the async path one ``redis.asyncio`` client per event loop, because an asyncio
connection belongs to the loop that opened it. Each async client is closed when its loop
shuts down its async generators (``asyncio.run`` does), so nothing is left open.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator
from typing import Any

DEFAULT_REDIS_TIMEOUT_S = 0.5


class RedisStore:
    """Entries in Redis; see the module docstring."""

    remote = True

    def __init__(
        self,
        *,
        url: str | None,
        host: str,
        port: int,
        password: str | None,
        username: str | None,
        db: int,
        ssl: bool,
        timeout_s: float,
    ) -> None:
        self._url = url
        self._options: dict[str, Any] = {
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
        }
        if url is None:
            self._options.update(host=host, port=port, password=password, username=username, db=db, ssl=ssl)
        elif password is not None:
            self._options["password"] = password
        self._client: Any = None
        self._lock = threading.Lock()
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )

    # ---- clients ----
    def _sync(self) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    import redis
                    from redis.backoff import NoBackoff
                    from redis.retry import Retry

                    # no retries: one bounded attempt, the facade handles failure
                    options = dict(self._options, retry=Retry(NoBackoff(), 0))
                    if self._url is not None:
                        self._client = redis.Redis.from_url(self._url, **options)
                    else:
                        self._client = redis.Redis(**options)
                client = self._client
        return client

    async def _async(self) -> Any:
        loop = asyncio.get_running_loop()
        entry = self._aclients.get(loop)
        if entry is not None:
            return entry[0]
        import redis.asyncio as aredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        options = dict(self._options, retry=Retry(NoBackoff(), 0))
        if self._url is not None:
            client = aredis.Redis.from_url(self._url, **options)
        else:
            client = aredis.Redis(**options)
        guard = self._close_with_loop(loop, client)
        await guard.__anext__()  # the loop now tracks the guard and closes it at shutdown
        self._aclients[loop] = (client, guard)
        return client

    async def _close_with_loop(self, loop: asyncio.AbstractEventLoop, client: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if self._aclients.get(loop, (None,))[0] is client:
                del self._aclients[loop]
            try:
                await client.aclose()
            except Exception:  # the server may be gone; the sockets close either way
                pass

    # ---- sync ----
    def get(self, key: str) -> bytes | None:
        return self._sync().get(key)  # type: ignore[no-any-return]

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return self._sync().mget(keys)  # type: ignore[no-any-return]

    def set_many(self, items: list[tuple[str, bytes]], ttl_s: float | None) -> None:
        px = None if ttl_s is None else max(1, int(ttl_s * 1000))
        client = self._sync()
        if len(items) == 1:
            client.set(items[0][0], items[0][1], px=px)
            return
        pipe = client.pipeline(transaction=False)
        for key, value in items:
            pipe.set(key, value, px=px)
        pipe.execute()

    def clear(self, prefix: str) -> None:
        client = self._sync()
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
        keys = list(client.scan_iter(match=escaped + "*", count=500))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # ---- async ----
    async def aget(self, key: str) -> bytes | None:
        return await (await self._async()).get(key)  # type: ignore[no-any-return]

    async def aget_many(self, keys: list[str]) -> list[bytes | None]:
        return await (await self._async()).mget(keys)  # type: ignore[no-any-return]

    async def aset_many(self, items: list[tuple[str, bytes]], ttl_s: float | None) -> None:
        px = None if ttl_s is None else max(1, int(ttl_s * 1000))
        client = await self._async()
        if len(items) == 1:
            await client.set(items[0][0], items[0][1], px=px)
            return
        pipe = client.pipeline(transaction=False)
        for key, value in items:
            pipe.set(key, value, px=px)
        await pipe.execute()

    async def aclose(self) -> None:
        """Close this loop's client (others close with their loops) and the sync client."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - called from sync code by mistake
            loop = None
        entry = self._aclients.pop(loop, None) if loop is not None else None
        if entry is not None:
            client, guard = entry
            try:
                await client.aclose()
            finally:
                await guard.aclose()
        self.close()
