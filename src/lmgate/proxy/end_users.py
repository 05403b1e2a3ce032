"""End users (the ``user`` a request body names) as the LLM routes see them: blocked ones are
refused, and an end user's budget goes on the caller's identity (``end_user_max_budget``, the
``user_api_end_user_max_budget`` of the log payload) for the budget check and the hooks.

Rows come from the key store's ``lmgate_customers`` (``/customer/*``), cached in memory like
key lookups: found or not, for ``ttl_s`` seconds; a change through this instance's admin
routes drops the entry at once (``forget``), another instance sees it when its entry expires.
An end user the store does not know is allowed (most are never registered).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from ..control.store import KeyStore
from .errors import ProxyError

DEFAULT_TTL_S = 5.0
_CACHE_LIMIT = 10_000


class EndUsers:
    def __init__(
        self,
        store: KeyStore,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.monotonic = monotonic
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def check(self, end_user: str) -> dict[str, Any] | None:
        """The end user's row (None when unknown); refuses a blocked one with a 401, as the
        reference does (``auth_error``)."""
        row = await self._row(end_user)
        if row is not None and row.get("blocked"):
            raise ProxyError(
                401,
                f"end user {end_user!r} is blocked; an admin can unblock it with POST /customer/unblock",
                type="auth_error",
                param="user",
                code="401",
            )
        return row

    def forget(self, user_ids: Iterable[str] | None = None) -> None:
        if user_ids is None:
            self._cache.clear()
            return
        for user_id in user_ids:
            self._cache.pop(user_id, None)

    async def _row(self, end_user: str) -> dict[str, Any] | None:
        now = self.monotonic()
        cached = self._cache.get(end_user)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self.store.customer(end_user)
        if len(self._cache) >= _CACHE_LIMIT:  # bounded: any client may name any end user
            self._cache.clear()
        self._cache[end_user] = (now + self.ttl_s, row)
        return row


_of_store: weakref.WeakKeyDictionary[KeyStore, EndUsers] = weakref.WeakKeyDictionary()


def end_users_of(store: KeyStore) -> EndUsers:
    """The one ``EndUsers`` of a store: the LLM routes read it, the admin routes drop its entries."""
    found = _of_store.get(store)
    if found is None:
        found = _of_store[store] = EndUsers(store)
    return found


__all__ = ["DEFAULT_TTL_S", "EndUsers", "end_users_of"]
