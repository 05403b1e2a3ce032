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
from typing import Any, NamedTuple, Protocol

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

    def admit_now(self, checks: Sequence[Check], amount: int, now: float) -> bool:
        """Admit without waiting when that can be decided here (True: taken); False: nothing
        was taken, and ``admit`` decides (a refusal, a window to seed, a round trip)."""
        ...

    def settle(
        self, request_id: str, checks: Sequence[Check], reserved: int, cost: int, tokens: int, now: float
    ) -> None: ...

    async def seed(self, check: Check, spent: int) -> None: ...

    async def close(self) -> None: ...


class _Plan(NamedTuple):
    """A checks list bound to its cells, by what a request does to each (``MemoryCounters``)."""

    tests: tuple[tuple[list[Any] | None, int, bool], ...]  # (cell, limit, is a budget) per check
    counts: tuple[tuple[list[Any], int], ...]  # (cell, limit): rpm, tpm, parallel (full at limit)
    budget_tests: tuple[tuple[list[Any], int], ...]  # (cell, limit): the seeded budgets
    unseeded: bool  # a budget whose window has no cell yet: ``admit`` asks for a seed
    ones: tuple[list[Any], ...]  # rpm and parallel cells: one unit each at admission
    slots: tuple[list[Any], ...]  # parallel cells: the unit back at settlement
    tpms: tuple[list[Any], ...]  # tpm cells: the tokens at settlement
    budgets: tuple[list[Any], ...]  # seeded budget cells: reserved at admission, spent at settlement


class MemoryCounters:
    """The counters of one process (no Redis): the same rules as ``leases.RedisCounters``.

    Each counter is a small list (a *cell*): rpm and tpm ``[count, expires_at]``, parallel
    ``[count, 0]``, a budget ``[spent, reserved, expires_at]`` (only once seeded). A checks
    list (``budgets.py`` keeps one per key and minute) is turned once into its cells, so a
    request's check-and-take and its settlement touch them directly, no lookup by name.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._cells: dict[str, list[Any]] = {}
        # id(checks) → (checks, its _Plan, the generation)
        self._plans: dict[int, tuple[Sequence[Check], _Plan, int]] = {}
        self._generation = 0  # bumped when cells are forgotten or seeded: plans are redone
        self._sweep_at = 0.0

    def _plan(self, checks: Sequence[Check]) -> _Plan:
        cached = self._plans.get(id(checks))
        if cached is not None and cached[0] is checks and cached[2] == self._generation:
            return cached[1]
        tests: list[tuple[list[Any] | None, int, bool]] = []
        ones: list[list[Any]] = []  # rpm and parallel: one unit taken at admission
        slots: list[list[Any]] = []  # parallel: given back at settlement
        tpms: list[list[Any]] = []  # tpm: the tokens added at settlement
        budgets: list[list[Any]] = []
        for check in checks:
            cell = self._cells.get(check.name)
            kind = check.kind
            if cell is None and kind != "budget":  # a budget's starts from the ledger (seed)
                cell = self._cells[check.name] = [0, check.expires_at]
            tests.append((cell, check.limit, kind == "budget"))
            if cell is None:
                continue
            if kind == "rpm" or kind == "parallel":
                ones.append(cell)
            if kind == "parallel":
                slots.append(cell)
            elif kind == "tpm":
                tpms.append(cell)
            elif kind == "budget":
                budgets.append(cell)
        plan = _Plan(
            tuple(tests),
            tuple((c, lim) for c, lim, budget in tests if not budget),  # type: ignore[misc]
            tuple((c, lim) for c, lim, budget in tests if budget and c is not None),
            any(budget and c is None for c, _, budget in tests),
            tuple(ones),
            tuple(slots),
            tuple(tpms),
            tuple(budgets),
        )
        if len(self._plans) >= 10_000:
            self._plans.clear()
        self._plans[id(checks)] = (checks, plan, self._generation)
        return plan

    def admit_now(self, checks: Sequence[Check], amount: int, now: float) -> bool:
        if now >= self._sweep_at:
            self._sweep(now)
        cached = self._plans.get(id(checks))  # ``_plan``, inline: once per request
        if cached is not None and cached[0] is checks and cached[2] == self._generation:
            plan = cached[1]
        else:
            plan = self._plan(checks)
        _, counts, budget_tests, unseeded, ones, _, _, budgets = plan  # one unpacking, no lookups
        for cell, limit in counts:
            if cell[0] >= limit:
                return False
        if unseeded:
            return False
        for cell, limit in budget_tests:
            spent = cell[0]
            if spent >= limit or spent + cell[1] + amount > limit:
                return False
        for cell in ones:  # everything fits: take it (no await between check and take)
            cell[0] += 1
        if amount:
            for cell in budgets:
                cell[1] += amount
        return True

    async def admit(
        self, request_id: str, checks: Sequence[Check], amount: int, now: float
    ) -> Refusal | None:
        if self.admit_now(checks, amount, now):
            return None
        return self._refusal(self._plan(checks), amount)

    @staticmethod
    def _refusal(plan: _Plan, amount: int) -> Refusal:
        """The first check that does not fit (the refused path only: the counter is kept apart
        from the admission's loop)."""
        for i, (cell, limit, budget) in enumerate(plan.tests):
            if budget:
                if cell is None:
                    return Refusal(i, 0, need_seed=True)
                if cell[0] >= limit or cell[0] + cell[1] + amount > limit:
                    return Refusal(i, cell[0], cell[1])
            elif cell[0] >= limit:  # type: ignore[index]
                return Refusal(i, cell[0])  # type: ignore[index]
        raise AssertionError("a refusal without a check that refuses")

    def settle(
        self, request_id: str, checks: Sequence[Check], reserved: int, cost: int, tokens: int, now: float
    ) -> None:
        cached = self._plans.get(id(checks))  # ``_plan``, inline: once per request
        if cached is not None and cached[0] is checks and cached[2] == self._generation:
            plan = cached[1]
        else:
            plan = self._plan(checks)
        _, _, _, _, _, slots, tpms, budgets = plan
        for cell in slots:
            cell[0] -= 1
        if tokens:
            for cell in tpms:
                cell[0] += tokens
        # a budget whose cell is gone (its window ended an hour ago) is not in the plan
        for cell in budgets:
            cell[0] += cost
            cell[1] -= reserved

    async def seed(self, check: Check, spent: int) -> None:
        if check.name not in self._cells:
            self._cells[check.name] = [spent, 0, check.expires_at]
            self._generation += 1

    async def close(self) -> None:
        return None

    def _sweep(self, now: float) -> None:
        """Forget windows that are over (once a minute)."""
        self._sweep_at = now + 60.0
        over = [n for n, cell in self._cells.items() if cell[-1] and cell[-1] <= now]
        for name in over:
            del self._cells[name]
        if over:
            self._generation += 1


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
