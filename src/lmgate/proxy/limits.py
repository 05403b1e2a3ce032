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

    def admit_now(self, checks: Sequence[Check], amount: int, now: float) -> bool:
        """Admit without waiting when that can be decided here (True: taken); False: nothing
        was taken, and ``admit`` decides (a refusal, a window to seed, a round trip)."""
        ...

    def settle(
        self, request_id: str, checks: Sequence[Check], reserved: int, cost: int, tokens: int, now: float
    ) -> None: ...

    async def seed(self, check: Check, spent: int) -> None: ...

    async def close(self) -> None: ...


SLICE = 16  # the requests' worth of units a key's plan takes from its counters at once (memory)
_NONE = 1 << 62  # a plan's free units of a kind it has no counter of: never runs out


class _Plan:
    """A checks list bound to its cells (``MemoryCounters``), and the *slice* it holds of them.

    The slice: units taken from the rpm, parallel and budget cells ahead of the key's requests
    (``SLICE`` requests' worth, never more than the room left), so that a request admitted
    from it touches the plan only: one test and one take per kind, not per counter. The cells
    count a slice as taken, so nobody else can take it; it is given back (``flush``) before
    anyone is refused for want of it, which keeps every limit exact in this process."""

    __slots__ = (
        "tests",
        "counts",
        "budget_tests",
        "unseeded",
        "rpms",
        "slots",
        "tpm_tests",
        "tpms",
        "budgets",
        "names",
        "rfree",
        "pfree",
        "bfree",
        "spent",
        "tfree",
        "tgrant",
    )

    def __init__(self, checks: Sequence[Check], cells: dict[str, list[Any]]) -> None:
        tests: list[tuple[list[Any] | None, int, bool]] = []  # (cell, limit, is a budget) per check
        rpms: list[list[Any]] = []  # one unit at admission
        slots: list[list[Any]] = []  # parallel: one unit at admission, back at settlement
        tpm_tests: list[tuple[list[Any], int]] = []  # tokens: granted room, taken at settlement
        budgets: list[list[Any]] = []  # seeded budget cells: reserved at admission, spent at settlement
        for check in checks:
            cell = cells.get(check.name)
            kind = check.kind
            if cell is None and kind != "budget":  # a budget's starts from the ledger (seed)
                # tpm ``[used, granted, expires_at]``: its room granted to plans, as a budget's
                cell = cells[check.name] = (
                    [0, 0, check.expires_at] if kind == "tpm" else [0, check.expires_at]
                )
            tests.append((cell, check.limit, kind == "budget"))
            if cell is None:
                continue
            if kind == "rpm":
                rpms.append(cell)
            elif kind == "parallel":
                slots.append(cell)
            elif kind == "tpm":
                tpm_tests.append((cell, check.limit))
            else:
                budgets.append(cell)
        self.tests = tuple(tests)
        # (cell, limit): rpm, tpm, parallel (full at limit); a count's cell is never None
        self.counts = tuple((c, lim) for c, lim, budget in tests if not budget and c is not None)
        self.budget_tests = tuple((c, lim) for c, lim, budget in tests if budget and c is not None)
        self.unseeded = any(budget and c is None for c, _, budget in tests)
        self.rpms = tuple(rpms)
        self.slots = tuple(slots)
        self.tpm_tests = tuple(tpm_tests)
        self.tpms = tuple(c for c, _ in tpm_tests)
        self.budgets = tuple(budgets)
        # the cells it may hold a slice of (``MemoryCounters._holders``)
        self.names = tuple(
            c.name
            for c in checks
            if c.kind in ("rpm", "parallel", "tpm") or (c.kind == "budget" and c.name in cells)
        )
        # the slice: free rpm units, free parallel slots, free nano-dollars, and the spend of
        # settled requests not yet moved from the budget cells' reserved to their spent
        self.rfree = 0 if rpms else _NONE
        self.pfree = 0 if slots else _NONE
        self.bfree = 0 if budgets or self.unseeded else _NONE  # unseeded: the slow way, which seeds
        self.spent = 0
        # tpm: the tokens of the room granted to this plan (``tgrant``, counted in every tpm
        # cell's granted) not yet used by its settled requests; below zero it is given back at once
        self.tfree = 0 if tpm_tests else _NONE
        self.tgrant = 0

    def flush(self) -> None:
        """Give the free slice back to the cells, and move the settled spend into them: the
        cells then hold exactly what is in flight and used."""
        if self.rpms:
            for cell in self.rpms:
                cell[0] -= self.rfree
            self.rfree = 0
        if self.slots:
            for cell in self.slots:
                cell[0] -= self.pfree
            self.pfree = 0
        if self.budgets:
            spent = self.spent
            for cell in self.budgets:
                cell[0] += spent
                cell[1] -= spent + self.bfree
            self.bfree = 0
        self.spent = 0
        if self.tpms:
            grant = self.tgrant
            used = grant - self.tfree
            for cell in self.tpms:
                cell[0] += used
                cell[1] -= grant
            self.tfree = self.tgrant = 0

    def fits(self, amount: int) -> bool:
        """The rule, on the cells (after ``flush``): every count below its limit, every budget's
        spent below its limit and its spent, reserved and ``amount`` within it."""
        for cell, limit in self.counts:
            if cell[0] >= limit:
                return False
        if self.unseeded:
            return False
        for cell, limit in self.budget_tests:
            spent = cell[0]
            if spent >= limit or spent + cell[1] + amount > limit:
                return False
        return True

    def at_edge(self) -> bool:
        """A budget whose spent and reserved reach its limit: whether its spent does (which
        refuses even a request that costs nothing) may hang on spend another plan has settled
        and not moved into the cell yet. So may a tpm whose used and granted reach its limit
        (the tokens other plans' requests used of their grants)."""
        for cell, limit in self.budget_tests:
            if cell[0] + cell[1] >= limit:
                return True
        for cell, limit in self.tpm_tests:
            if cell[0] + cell[1] >= limit:
                return True
        return False


class MemoryCounters:
    """The counters of one process (no Redis): the same rules as ``leases.RedisCounters``.

    Each counter is a small list (a *cell*): rpm ``[count, expires_at]``, tpm ``[used, granted,
    expires_at]``, parallel ``[count, 0]``, a budget ``[spent, reserved, expires_at]`` (only once
    seeded). A checks list (``budgets.py`` keeps one per key and minute) is turned once into a
    ``_Plan`` over its cells, which takes a slice of them and admits the key's requests from
    it: a request's check-and-take and its settlement touch the plan only, no lookup by name.
    A request that does not fit in the plan's slice takes the slow way (``_admit_slow``): the
    slice back, the rule tested on the cells — and, when it does not fit, every other plan's
    slice of those cells given back and the rule tested again — then a new slice taken.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._cells: dict[str, list[Any]] = {}
        # id(checks) → (checks, its _Plan, the generation)
        self._plans: dict[int, tuple[Sequence[Check], _Plan, int]] = {}
        # a cell's name → the plans that may hold a slice of it (by id): given back before a refusal
        self._holders: dict[str, dict[int, _Plan]] = {}
        self._generation = 0  # bumped when cells are forgotten or seeded: plans are redone
        self._sweep_at = 0.0

    def _plan(self, checks: Sequence[Check]) -> _Plan:
        cached = self._plans.get(id(checks))
        if cached is not None:
            if cached[0] is checks and cached[2] == self._generation:
                return cached[1]
            self._drop(cached[1])  # replaced: its slice back to the cells first
        plan = _Plan(checks, self._cells)
        if len(self._plans) >= 10_000:
            for _, old, _ in self._plans.values():
                old.flush()
            self._plans.clear()
            self._holders.clear()
        self._plans[id(checks)] = (checks, plan, self._generation)
        holders = self._holders
        for name in plan.names:
            found = holders.get(name)
            if found is None:
                found = holders[name] = {}
            found[id(plan)] = plan
        return plan

    def _reclaim(self, names: Sequence[str]) -> None:
        """Every plan's slice of these cells back in them, and its settled spend: exact cells."""
        holders = self._holders
        for name in names:
            found = holders.get(name)
            if found:
                for holder in found.values():
                    holder.flush()

    def _drop(self, plan: _Plan) -> None:
        plan.flush()
        for name in plan.names:
            found = self._holders.get(name)
            if found is not None:
                found.pop(id(plan), None)

    def admit_now(self, checks: Sequence[Check], amount: int, now: float) -> bool:
        if now >= self._sweep_at:
            self._sweep(now)
        cached = self._plans.get(id(checks))  # ``_plan``, inline: once per request
        if cached is not None and cached[0] is checks and cached[2] == self._generation:
            plan = cached[1]
        else:
            plan = self._plan(checks)
        # from the plan's slice (no cell touched): a free rpm unit, a free slot, more free
        # nano-dollars than the worst case (more: a budget reached by its spent must refuse even
        # a request that costs nothing) and a free token (every tpm's used is then below its limit)
        if plan.rfree and plan.pfree and plan.bfree > amount and plan.tfree > 0:
            plan.rfree -= 1
            plan.pfree -= 1
            plan.bfree -= amount
            return True
        return self._admit_slow(plan, amount)

    def _admit_slow(self, plan: _Plan, amount: int) -> bool:
        """The rule on the cells themselves, every slice of them given back if it does not fit
        otherwise; then a new slice for the plan (at least this request's units), and the
        request taken from it."""
        plan.flush()
        if not plan.fits(amount) or plan.at_edge():
            self._reclaim(plan.names)
            if not plan.fits(amount):
                return False
        n = SLICE  # requests' worth of rpm units and slots (every cell has room for one: it fits)
        for cell, limit in plan.counts:
            if limit - cell[0] < n:
                n = limit - cell[0]
        if plan.rpms:
            for cell in plan.rpms:
                cell[0] += n
            plan.rfree = n - 1
        if plan.slots:
            for cell in plan.slots:
                cell[0] += n
            plan.pfree = n - 1
        if plan.budgets:
            grant = max(amount, 1) * SLICE
            for cell, limit in plan.budget_tests:
                room = limit - cell[0] - cell[1]
                if room < grant:
                    grant = room
            grant = max(grant, amount)  # the room fits ``amount`` (``fits``)
            for cell in plan.budgets:
                cell[1] += grant
            plan.bfree = grant - amount
        if plan.tpms:
            # a part of the room every tpm cell has left (the room is at least one token: it
            # fits and is not at its edge, or every grant of it was given back); a part, so the
            # keys of a team each hold some of its tpm
            room = _NONE
            for cell, limit in plan.tpm_tests:
                if limit - cell[0] - cell[1] < room:
                    room = limit - cell[0] - cell[1]
            grant = room // SLICE or 1
            for cell in plan.tpms:
                cell[1] += grant
            plan.tfree = plan.tgrant = grant
        return True

    async def admit(
        self, request_id: str, checks: Sequence[Check], amount: int, now: float
    ) -> Refusal | None:
        if self.admit_now(checks, amount, now):
            return None
        return self._refusal(self._plan(checks), amount)

    @staticmethod
    def _refusal(plan: _Plan, amount: int) -> Refusal:
        """The first check that does not fit (the refused path only: the cells hold no slice of
        this plan's or, where it mattered, of any other's)."""
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
        # into the plan's slice (its current plan, if the one that admitted it was redone since:
        # that one gave back only its free units, the cells still count this request's)
        plan.pfree += 1
        plan.tfree -= tokens
        plan.bfree += reserved - cost
        plan.spent += cost
        if (cost > reserved and plan.budgets) or plan.tfree < 0:
            # more than its worst case, or more tokens than its grant: the spend must show in
            # the cells before anyone else is admitted against them (another plan's slice would
            # otherwise hide the overrun)
            self._reclaim(plan.names)

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
