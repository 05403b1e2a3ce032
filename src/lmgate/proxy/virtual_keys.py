"""Virtual keys: the ``KeyBackend`` over the control plane's key store (``control/store.py``).

The master key still authenticates, as the admin. Any other key is hashed and looked up;
the row (with its team's) becomes the caller's ``UserAPIKeyAuth``. An unknown, expired,
blocked or deleted key, or a key of a blocked team, is a 401. Lookups, found or not, are
cached in memory for ``ttl_s`` seconds (``cache_ttl_s``): a change made through this
instance's admin routes drops its entry at once (``forget``); another instance sees it when
the entry expires (invalidation over Redis pub/sub is a later step, docs/keys.md).

Which models a key may call is checked by the LLM routes once the body is read
(``auth.check_model``): the key's ``models`` and its team's, each empty meaning every model.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from starlette.requests import HTTPConnection

from ..control.store import KeyStore
from .auth import KEY_FORMS, UserAPIKeyAuth, hash_key, unauthorized

DEFAULT_CACHE_TTL_S = 5.0
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
        # token → (monotonic time the entry expires, the row or None for "no such key")
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def authenticate(self, key: str | None, conn: HTTPConnection) -> UserAPIKeyAuth:
        if key is None:
            raise unauthorized(f"missing API key: send {KEY_FORMS}")
        if hmac.compare_digest(key.encode(), self._master):
            return self._master_user
        token = hashlib.sha256(key.encode()).hexdigest()
        row = await self._row(token)
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
        return identity_of(row)

    def forget(self, tokens: Any = None) -> None:
        """Drop cached lookups: of ``tokens``, or every one (after a team changes)."""
        if tokens is None:
            self._cache.clear()
            return
        for token in tokens:
            self._cache.pop(token, None)

    async def _row(self, token: str) -> dict[str, Any] | None:
        now = self.monotonic()
        cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self.store.key(token)
        if len(self._cache) >= _CACHE_LIMIT:  # bounded: unknown keys are cached too
            self._cache.clear()
        self._cache[token] = (now + self.ttl_s, row)
        return row


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


__all__ = ["DEFAULT_CACHE_TTL_S", "DatabaseKeyBackend", "identity_of", "iso"]
