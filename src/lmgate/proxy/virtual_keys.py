"""Virtual keys: the ``KeyBackend`` over the control plane's key store (``control/store.py``).

The master key still authenticates, as the admin. Any other key is hashed and looked up;
the row (with its team's) becomes the caller's ``UserAPIKeyAuth``. An unknown, expired,
blocked or deleted key, or a key of a blocked team, is a 401. Lookups, found or not, are
cached in memory for ``ttl_s`` seconds: a change made through this instance's admin routes
drops its entry at once (``forget``); with a Redis configured, ``forget`` also publishes the
change on ``INVALIDATE_CHANNEL`` and every instance listening (``listen``) drops it too, so the
entries may live longer (``REDIS_CACHE_TTL_S``); without one another instance sees the change
when its entry expires. An entry in use that expired less than a TTL ago is served while a
background task reads it again with the others in one query (``REFRESH_EVERY_S``): a change
made elsewhere is seen within the TTL plus that moment.

A virtual key's limits (``budgets.KeyLimits``) are computed once per cached row and put on the
request's scope (``LIMITS``) for the LLM routes to enforce.

Which models a key may call is checked by the LLM routes once the body is read
(``auth.check_model``): the key's ``models`` and its team's, each empty meaning every model.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import orjson
from starlette.requests import HTTPConnection

from ..control.store import KeyStore
from .auth import KEY_FORMS, UserAPIKeyAuth, hash_key, unauthorized
from .budgets import LIMITS, KeyLimits, key_limits

try:  # CPython's own SHA-256 (``_sha2`` from 3.12): for a key's few bytes it is ~1,500
    # instructions cheaper than hashlib's OpenSSL object, which every lookup would create
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:  # an interpreter without them: the same digest from OpenSSL
        from hashlib import sha256 as _sha256  # type: ignore[assignment,unused-ignore]

logger = logging.getLogger("lmgate.proxy")

DEFAULT_CACHE_TTL_S = 5.0
REFRESH_EVERY_S = 0.25  # how often expired entries in use are read again, together
REDIS_CACHE_TTL_S = 60.0  # with invalidation pushed over Redis the TTL is only a safety net
INVALIDATE_CHANNEL = "lmgate:keys:invalidate"
_CACHE_LIMIT = 10_000


def iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc).isoformat()


class DatabaseKeyBackend:
    def __init__(
        self,
        store: KeyStore,
        master_key: str,
        *,
        ttl_s: float = DEFAULT_CACHE_TTL_S,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._master = master_key.encode()
        self._master_user = UserAPIKeyAuth(hash_key(master_key), user_role="proxy_admin")
        self.ttl_s = ttl_s
        self.clock = clock
        self.monotonic = monotonic
        # token → (monotonic time the entry expires, the row or None for "no such key", its
        # limits, its identity, whether the row lets every request in: not blocked, its team not
        # blocked, no expiry): the identity is built once per row and shared by the key's
        # requests, as the master key's is (``UserAPIKeyAuth.for_request`` copies it for an end user)
        self._cache: dict[str, _Entry] = {}
        self.redis: Any = None  # set by ``listen``: forget() then tells every instance
        self._pending: set[Any] = set()
        self.invalidations_received = 0
        self._stale: set[str] = set()  # expired entries being served until the refresh reads them
        self._refresher: asyncio.Task[None] | None = None
        self.refresh_every_s = REFRESH_EVERY_S
        self._generation = 0  # bumped by every drop: a refresh that started before it is ignored

    async def authenticate(self, key: str | None, conn: HTTPConnection) -> UserAPIKeyAuth:
        if key is None:
            raise unauthorized(f"missing API key: send {KEY_FORMS}")
        raw = key.encode()
        if hmac.compare_digest(raw, self._master):
            return self._master_user
        token = _sha256(raw).hexdigest()
        cached = self._cache.get(token)
        if cached is not None and cached[0] > self.monotonic():  # the common case, without a coroutine
            if cached[4]:  # a key that can be neither blocked nor expired until its row is read again
                conn.scope[LIMITS] = cached[2]
                return cached[3]  # type: ignore[return-value]
            row, limits, user = cached[1], cached[2], cached[3]
        else:
            row, limits, user = await self._row(token)
        # the lookup is by hash; the hash of an unknown key tells its sender nothing new
        if row is None:
            raise unauthorized("invalid API key: no such key (it may have been deleted)")
        if row["blocked"]:
            raise unauthorized(
                f"key {row['key_name']} is blocked; an admin can unblock it with POST /key/unblock"
            )
        if row.get("team_blocked"):
            raise unauthorized(f"the team {row['team_id']} of key {row['key_name']} is blocked")
        expires = row["expires_at"]
        if expires is not None and expires <= self.clock():
            raise unauthorized(f"key {row['key_name']} expired at {iso(expires)}")
        conn.scope[LIMITS] = limits
        return user  # type: ignore[return-value]

    def _refresh_later(self, token: str) -> None:
        self._stale.add(token)
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        """Read the stale entries again, in bulk, at most every ``REFRESH_EVERY_S``."""
        while self._stale:
            await asyncio.sleep(self.refresh_every_s)  # gathers the keys that go stale meanwhile
            tokens, self._stale = list(self._stale), set()
            generation = self._generation
            try:
                rows = await self.store.keys_by_token(tokens)
            except Exception as error:  # the entries stay stale and are looked up one by one
                logger.error("keys: refreshing %d cached keys failed: %s", len(tokens), error)
                continue
            if generation != self._generation:  # forgotten meanwhile: the read may be older
                continue
            expires = self.monotonic() + self.ttl_s
            for token in tokens:
                row = rows.get(token)
                self._cache[token] = _entry(expires, row)

    async def refreshed(self) -> None:
        """Wait until the stale entries being read again are (tests, shutdown)."""
        if self._refresher is not None:
            await self._refresher

    def forget(self, tokens: Any = None) -> None:
        """Drop cached lookups: of ``tokens``, or every one (after a team changes); with Redis,
        in every instance."""
        tokens = None if tokens is None else list(tokens)
        self._drop(tokens)
        if self.redis is not None:
            message = orjson.dumps(tokens)
            task = asyncio.get_running_loop().create_task(self._publish(message))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _publish(self, message: bytes) -> None:
        try:
            await self.redis.publish(INVALIDATE_CHANNEL, message)
        except Exception as error:  # the other instances' entries still expire within the TTL
            logger.error("keys: publishing a cache invalidation failed: %s", error)

    def _drop(self, tokens: list[str] | None) -> None:
        self._generation += 1
        if tokens is None:
            self._cache.clear()
            return
        for token in tokens:
            self._cache.pop(token, None)

    async def listen(self, client: Any, ready: asyncio.Event | None = None) -> None:
        """Drop the entries other instances' admin routes change (runs until cancelled)."""
        self.redis = client
        while True:
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(INVALIDATE_CHANNEL)
                    self._cache.clear()  # anything may have changed while not listening
                    self.ttl_s = max(self.ttl_s, REDIS_CACHE_TTL_S)
                    if ready is not None:
                        ready.set()
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        self.invalidations_received += 1
                        try:
                            tokens = orjson.loads(message["data"])
                        except orjson.JSONDecodeError:
                            tokens = None
                        self._drop(tokens if isinstance(tokens, list) else None)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # while not subscribed, changes elsewhere would go unseen: fall back to the short TTL
                self.ttl_s = DEFAULT_CACHE_TTL_S
                logger.error("keys: the invalidation channel failed (%s); listening again in 1s", error)
                await asyncio.sleep(1.0)

    async def _row(self, token: str) -> tuple[dict[str, Any] | None, KeyLimits | None, UserAPIKeyAuth | None]:
        now = self.monotonic()
        cached = self._cache.get(token)
        if cached is not None:
            if cached[0] > now:
                return cached[1], cached[2], cached[3]
            if cached[1] is not None and cached[0] + self.ttl_s > now:
                # expired a moment ago: served while a batch reads it again (refresh-ahead), so a
                # busy key costs one row of a bulk query per TTL instead of a lookup of its own
                self._refresh_later(token)
                return cached[1], cached[2], cached[3]
        row = await self.store.key(token)
        if len(self._cache) >= _CACHE_LIMIT:  # bounded: unknown keys are cached too
            self._cache.clear()
        entry = self._cache[token] = _entry(now + self.ttl_s, row)
        return entry[1], entry[2], entry[3]


_Entry = tuple[float, dict[str, Any] | None, KeyLimits | None, UserAPIKeyAuth | None, bool]


def _entry(expires: float, row: dict[str, Any] | None) -> _Entry:
    if row is None:
        return expires, None, None, None, False
    always = not row["blocked"] and not row.get("team_blocked") and row["expires_at"] is None
    return expires, row, key_limits(row), identity_of(row), always


def identity_of(row: dict[str, Any]) -> UserAPIKeyAuth:
    user = UserAPIKeyAuth(
        row["token"],
        user_role="internal_user",
        key_alias=row["key_alias"],
        key_name=row["key_name"],
        user_id=row["user_id"],
        team_id=row["team_id"],
        team_alias=row.get("team_alias"),
        models=list(row["models"] or []),
        team_models=list(row.get("team_models") or []),
        spend=row["spend"],
        max_budget=row["max_budget"],
        expires=iso(row["expires_at"]),
        tpm_limit=row["tpm_limit"],
        rpm_limit=row["rpm_limit"],
        max_parallel_requests=row["max_parallel_requests"],
        metadata=dict(row["metadata"] or {}),
        team_metadata=dict(row.get("team_metadata") or {}),
        user_email=row.get("user_email"),
    )
    # the rest of who the key is (keysadmin): read with .get, a row from an older query lacks them
    user.budget_duration = row.get("budget_duration")
    user.tags = list(row.get("tags") or [])
    user.team_spend = row.get("team_spend")
    user.team_max_budget = row.get("team_max_budget")
    user.team_rpm_limit = row.get("team_rpm_limit")
    user.team_tpm_limit = row.get("team_tpm_limit")
    user.user_spend = row.get("user_spend")
    user.user_max_budget = row.get("user_max_budget")
    user.user_rpm_limit = row.get("user_rpm_limit")
    user.user_tpm_limit = row.get("user_tpm_limit")
    return user


__all__ = [
    "DEFAULT_CACHE_TTL_S",
    "INVALIDATE_CHANNEL",
    "LIMITS",
    "REDIS_CACHE_TTL_S",
    "DatabaseKeyBackend",
    "identity_of",
    "iso",
]
