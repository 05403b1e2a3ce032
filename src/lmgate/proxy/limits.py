"""Counters for rate limits and budgets: one atomic check-and-take per request, one settle.

A request brings a list of ``Check``s (its key's, its team's, its user's limits) and is
admitted only if every one of them passes, in one step: nothing is taken unless everything
fits, and two requests can never both take the last unit. Two backends, the same rules:

- ``MemoryCounters``: dicts in this process (no Redis configured): limits per process.
- ``RedisCounters``: one Lua script per admission and one per settlement, so the check and
  the take are atomic across every proxy instance sharing the Redis. A settlement is not sent
  on its own: it rides in the pipeline of this process's next admission (or goes after
  ``SETTLE_DELAY_S``), so a request costs one round trip under load; calls made while one is
  in flight are pipelined together.

The rules (``docs/keys.md`` "Rate limits", "Budgets"):

- ``rpm``: requests started in the current minute (a fixed window: the count starts again at
  every minute boundary); admitted while the count is below the limit.
- ``tpm``: tokens of the requests settled in the current minute; admitted while they are below
  the limit (a request's tokens are known only at its end, so the request that crosses the
  limit is let through and the next ones wait for the next minute).
- ``parallel``: requests admitted and not yet settled. In Redis each is a member of a sorted
  set scored by its start, so a request whose instance died is dropped after ``stale_s``.
- ``budget``: integer nano-dollars per budget window, ``spent`` (settled) and ``reserved``
  (admitted, not settled). Admitted only if ``spent + reserved + amount <= limit``: the
  request's worst case must fit beside every request in flight. A window's counter starts
  from the ledger's sum (``need_seed``): the caller reads the database and calls ``seed``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger("lmgate.proxy")

NANO = 1_000_000_000  # budget counters count nano-dollars: integers add exactly in Redis and here
SETTLE_DELAY_S = 0.002  # a settlement waits at most this long for an admission to ride with
STALE_S = 600.0  # a parallel slot held longer than this is dropped (its instance died)


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


# Both scripts take the request's counters as KEYS and, as the last ARGV, the checks' "spec"
# (per check: kind r/t/p/b, limit, expiry as Unix seconds; comma-separated, in KEYS' order),
# the same bytes for every request of a key within a minute: built once, sent as one argument.
_SPEC = """
local spec = {}
for kind, limit, expiry in string.gmatch(ARGV[#ARGV], '(%a),([%d.]+),([%d.]+)') do
  spec[#spec + 1] = {kind, tonumber(limit), tonumber(expiry)}
end
"""

# ARGV: now, request id, amount (nano-dollars), spec. Returns 0, or {check (1-based), used,
# reserved, need_seed}. Every check is read before anything is taken.
_ADMIT = (
    (
        _SPEC
        + """
local now = tonumber(ARGV[1])
local rid = ARGV[2]
local amount = tonumber(ARGV[3])
local stale = now - STALE_S
for i = 1, #KEYS do
  local key, kind, limit = KEYS[i], spec[i][1], spec[i][2]
  if kind == 'b' then
    if redis.call('EXISTS', key) == 0 then return {i, 0, 0, 1} end
    local spent = tonumber(redis.call('HGET', key, 's') or '0')
    local reserved = tonumber(redis.call('HGET', key, 'r') or '0')
    if spent >= limit or spent + reserved + amount > limit then
      return {i, spent, reserved, 0}
    end
  elseif kind == 'p' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', stale)
    local used = redis.call('ZCARD', key)
    if used >= limit then return {i, used, 0, 0} end
  else
    local used = tonumber(redis.call('GET', key) or '0')
    if used >= limit then return {i, used, 0, 0} end
  end
end
for i = 1, #KEYS do
  local key, kind, expiry = KEYS[i], spec[i][1], spec[i][3]
  if kind == 'r' then
    redis.call('INCR', key)
    redis.call('EXPIREAT', key, math.ceil(expiry))
  elseif kind == 'p' then
    redis.call('ZADD', key, now, rid)
    redis.call('EXPIRE', key, KEEP_S)
  elseif kind == 'b' then
    redis.call('HINCRBY', key, 'r', amount)
  end
end
return 0
"""
    )
    .replace("STALE_S", str(int(STALE_S)))
    .replace("KEEP_S", str(int(STALE_S) * 2))
)

# ARGV: request id, cost, tokens, reserved, spec. A budget counter that is gone (Redis
# restarted) is left alone: the ledger has the cost.
_SETTLE = (
    _SPEC
    + """
local rid = ARGV[1]
local cost = ARGV[2]
local tokens = ARGV[3]
local reserved = tonumber(ARGV[4])
for i = 1, #KEYS do
  local key, kind, expiry = KEYS[i], spec[i][1], spec[i][3]
  if kind == 'p' then
    redis.call('ZREM', key, rid)
  elseif kind == 't' then
    redis.call('INCRBY', key, tokens)
    redis.call('EXPIREAT', key, math.ceil(expiry))
  elseif kind == 'b' then
    if redis.call('EXISTS', key) == 1 then
      redis.call('HINCRBY', key, 's', cost)
      redis.call('HINCRBY', key, 'r', -reserved)
    end
  end
end
return 0
"""
)

_SEED = """
if redis.call('HSETNX', KEYS[1], 's', ARGV[1]) == 1 then
  redis.call('HSETNX', KEYS[1], 'r', 0)
  if tonumber(ARGV[2]) > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[2]) end
end
return 0
"""

_KIND = {"rpm": "r", "tpm": "t", "parallel": "p", "budget": "b"}
PREFIX = "lmgate:limits:"


def _spec(checks: Sequence[Check]) -> tuple[list[bytes], bytes]:
    """The counters' names and the spec argument of a list of checks (see the scripts)."""
    keys = [(PREFIX + c.name).encode() for c in checks]
    spec = ",".join(f"{_KIND[c.kind]},{c.limit},{c.expires_at:.0f}" for c in checks)
    return keys, spec.encode()


class _Coalescer:
    """Scripts called by concurrent requests go to Redis together. A call made while none is
    in flight is sent at once by its caller (no extra task: the common case at low load); calls
    made meanwhile queue, and when the one in flight returns, everything queued by then goes in
    one pipeline (one round trip). Each script stays atomic on its own; under load the client's
    CPU per call falls with the batch."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._queue: list[tuple[Any, list[bytes], list[Any], asyncio.Future[Any]]] = []
        self._busy = False

    async def call(self, script: Any, keys: list[bytes], args: list[Any]) -> Any:
        if self._busy:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._queue.append((script, keys, args, future))
            return await future
        self._busy = True
        try:
            return await script(keys=keys, args=args)
        finally:
            self._next()

    def _next(self) -> None:
        if self._queue:
            asyncio.get_running_loop().create_task(self._drain())
        else:
            self._busy = False

    async def _drain(self) -> None:
        batch, self._queue = self._queue, []
        try:
            pipe = self.client.pipeline(transaction=False)
            for script, keys, args, _ in batch:
                await script(keys=keys, args=args, client=pipe)  # queued, not sent
            results = await pipe.execute(raise_on_error=False)
        except BaseException as error:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(error if isinstance(error, Exception) else RuntimeError(str(error)))
            if not isinstance(error, Exception):
                raise
        else:
            for (*_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self._next()


class RedisCounters:
    """The counters in a Redis every instance shares (``redis.asyncio``; scripts by EVALSHA,
    concurrent calls pipelined together)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._admit = client.register_script(_ADMIT)
        self._settle = client.register_script(_SETTLE)
        self._seed = client.register_script(_SEED)
        self._batch = _Coalescer(client)
        self._specs: dict[int, tuple[Sequence[Check], list[bytes], bytes]] = {}
        self._settles: list[tuple[list[bytes], list[Any]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.settle_failures = 0  # settlements Redis refused or never got (logged; the ledger has the spend)

    def _encoded(self, checks: Sequence[Check]) -> tuple[list[bytes], bytes]:
        """The checks' names and spec, encoded once per checks list (budgets.py caches the list)."""
        cached = self._specs.get(id(checks))
        if cached is not None and cached[0] is checks:
            return cached[1], cached[2]
        keys, spec = _spec(checks)
        if len(self._specs) >= 10_000:
            self._specs.clear()
        self._specs[id(checks)] = (checks, keys, spec)
        return keys, spec

    async def admit(
        self, request_id: str, checks: Sequence[Check], amount: int, now: float
    ) -> Refusal | None:
        keys, spec = self._encoded(checks)
        args = [repr(now), request_id, amount, spec]
        if self._settles:  # the settlements waiting go first, in the same round trip
            settles, self._settles = self._settles, []
            pipe = self.client.pipeline(transaction=False)
            for settle_keys, settle_args in settles:
                await self._settle(keys=settle_keys, args=settle_args, client=pipe)
            await self._admit(keys=keys, args=args, client=pipe)
            results = await pipe.execute(raise_on_error=False)
            self._count_failures(results[:-1])
            got = results[-1]
            if isinstance(got, Exception):
                raise got
        else:
            got = await self._batch.call(self._admit, keys, args)
        if got == 0:
            return None
        index, used, reserved, seed = (int(v) for v in got)
        return Refusal(index - 1, used, reserved, bool(seed))

    def settle(
        self, request_id: str, checks: Sequence[Check], reserved: int, cost: int, tokens: int, now: float
    ) -> None:
        if all(c.kind == "rpm" for c in checks):
            return
        keys, spec = self._encoded(checks)
        # not sent on its own: it rides with this process's next admission, or goes after
        # SETTLE_DELAY_S when none comes (one round trip per request under load, not two)
        self._settles.append((keys, [request_id, cost, tokens, reserved, spec]))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SETTLE_DELAY_S, self._settle_soon)

    def _settle_soon(self) -> None:
        self._timer = None
        if self._settles:
            task = asyncio.get_running_loop().create_task(self.flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Send the settlements waiting now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        settles, self._settles = self._settles, []
        if not settles:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for keys, args in settles:
                await self._settle(keys=keys, args=args, client=pipe)
            self._count_failures(await pipe.execute(raise_on_error=False))
        except Exception as error:
            self.settle_failures += len(settles)
            logger.error("limits: %d settlements could not reach Redis: %s", len(settles), error)

    def _count_failures(self, results: list[Any]) -> None:
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            self.settle_failures += len(failed)
            logger.error("limits: %d settlements failed in Redis: %s", len(failed), failed[0])

    async def seed(self, check: Check, spent: int) -> None:
        await self._seed(keys=[PREFIX + check.name], args=[spent, math.ceil(check.expires_at)])

    async def close(self) -> None:
        await self.flush()
        await self.client.aclose()


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
    "STALE_S",
    "Check",
    "Counters",
    "MemoryCounters",
    "RedisCounters",
    "Refusal",
    "redis_client",
]
