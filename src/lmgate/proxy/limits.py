"""Counters for rate limits and budgets: one atomic check-and-take per request, one settle.

A request brings a list of ``Check``s (its key's, its team's, its user's limits) and is
admitted only if every one of them passes, in one step: nothing is taken unless everything
fits, and two requests can never both take the last unit. Two backends, the same rules:

- ``MemoryCounters``: dicts in this process (no Redis configured): limits per process.
- ``leases.RedisCounters``: the counters in a Redis every proxy instance shares, each
  instance admitting against a slice of every counter it leased there (one round trip per
  slice, not per request); the check and the take stay atomic across instances.

The rules (``docs/keys.md`` "Rate limits", "Budgets"):

- ``rpm``: requests started in the current minute (a fixed window: the count starts again at
  every minute boundary); admitted while the count is below the limit.
- ``tpm``: tokens of the requests settled in the current minute; admitted while they are below
  the limit (a request's tokens are known only at its end, so the request that crosses the
  limit is let through and the next ones wait for the next minute).
- ``parallel``: requests admitted and not yet settled (in Redis, held by an instance's lease,
  which expires when the instance dies).
- ``budget``: integer nano-dollars per budget window, ``spent`` (settled) and ``reserved``
  (admitted, not settled). Admitted only if ``spent + reserved + amount <= limit``: the
  request's worst case must fit beside every request in flight. A window's counter starts
  from the ledger's sum (``need_seed``): the caller reads the database and calls ``seed``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger("lmgate.proxy")

NANO = 1_000_000_000  # budget counters count nano-dollars: integers add exactly in Redis and here


@dataclass(slots=True)
class Check:
    """One limit a request must pass. ``name`` identifies the counter (its scope and, for rpm,
    tpm and budgets, its window); ``expires_at`` is when the counter may be forgotten."""

    kind: str  # "rpm" | "tpm" | "parallel" | "budget"
    name: str
    limit: int
    expires_at: float = 0.0


@dataclass(slots=True)
class Refusal:
    """Why a request was not admitted: ``check`` (an index into the checks) and what its counter
    held (for a budget, spent and reserved nano-dollars; else the count)."""

    check: int
    used: int
    reserved: int = 0
    need_seed: bool = False


class Counters(Protocol):
    """``amount``/``reserved``: the nano-dollars the request reserves in every budget it passes."""

    async def admit(
        self, request_id: str, checks: Sequence[Check], amount: int, now: float
    ) -> Refusal | None: ...

    def settle(
        self, request_id: str, checks: Sequence[Check], reserved: int, cost: int, tokens: int, now: float
    ) -> None: ...

    async def seed(self, check: Check, spent: int) -> None: ...

    async def close(self) -> None: ...


class MemoryCounters:
    """The counters of one process (no Redis): the same rules as ``RedisCounters``."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._counts: dict[str, list[Any]] = {}  # name → [value, expires_at]
        self._budgets: dict[str, list[Any]] = {}  # name → [spent, reserved, expires_at]
        self._parallel: dict[str, int] = {}
        self._sweep_at = 0.0

    async def admit(
        self, request_id: str, checks: Sequence[Check], amount: int, now: float
    ) -> Refusal | None:
        counts, budgets, parallel = self._counts, self._budgets, self._parallel
        if now >= self._sweep_at:
            self._sweep(now)
        for i, check in enumerate(checks):
            kind = check.kind
            if kind == "budget":
                held = budgets.get(check.name)
                if held is None:
                    return Refusal(i, 0, need_seed=True)
                if held[0] >= check.limit or held[0] + held[1] + amount > check.limit:
                    return Refusal(i, held[0], held[1])
            elif kind == "parallel":
                used = parallel.get(check.name, 0)
                if used >= check.limit:
                    return Refusal(i, used)
            else:
                entry = counts.get(check.name)
                used = entry[0] if entry is not None else 0
                if used >= check.limit:
                    return Refusal(i, used)
        for check in checks:  # everything fits: take it (no await between check and take)
            kind = check.kind
            if kind == "rpm":
                entry = counts.get(check.name)
                if entry is None:
                    counts[check.name] = [1, check.expires_at]
                else:
                    entry[0] += 1
            elif kind == "parallel":
                parallel[check.name] = parallel.get(check.name, 0) + 1
            elif kind == "budget":
                budgets[check.name][1] += amount
        return None

    def settle(
        self, request_id: str, checks: Sequence[Check], reserved: int, cost: int, tokens: int, now: float
    ) -> None:
        for check in checks:
            kind = check.kind
            if kind == "parallel":
                left = self._parallel.get(check.name, 0) - 1
                if left > 0:
                    self._parallel[check.name] = left
                else:
                    self._parallel.pop(check.name, None)
            elif kind == "tpm":
                entry = self._counts.get(check.name)
                if entry is None:
                    self._counts[check.name] = [tokens, check.expires_at]
                else:
                    entry[0] += tokens
            elif kind == "budget":
                held = self._budgets.get(check.name)
                if held is not None:
                    held[0] += cost
                    held[1] -= reserved

    async def seed(self, check: Check, spent: int) -> None:
        self._budgets.setdefault(check.name, [spent, 0, check.expires_at])

    async def close(self) -> None:
        return None

    def _sweep(self, now: float) -> None:
        """Forget windows that are over (once a minute)."""
        self._sweep_at = now + 60.0
        for table in (self._counts, self._budgets):
            for name in [n for n, v in table.items() if v[-1] and v[-1] <= now]:
                del table[name]


PREFIX = "lmgate:limits:"  # the counters' names in Redis (``leases.RedisCounters``)


def redis_client(settings: Mapping[str, Any]) -> Any:
    """An async Redis client from ``router_settings``' ``redis_url`` or ``redis_host``/``port``/``password``."""
    import redis.asyncio as aioredis

    url = settings.get("redis_url")
    if url:
        return aioredis.Redis.from_url(url, socket_timeout=2.0)
    return aioredis.Redis(
        host=settings["redis_host"],
        port=int(settings.get("redis_port") or 6379),
        password=settings.get("redis_password"),
        socket_timeout=2.0,
    )


__all__ = [
    "NANO",
    "PREFIX",
    "Check",
    "Counters",
    "MemoryCounters",
    "Refusal",
    "redis_client",
]
