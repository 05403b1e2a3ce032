"""Counters for rate limits and budgets: one atomic check-and-take per request, one settle.

A request brings a list of ``Check``s (its key's, its team's, its user's limits) and is
admitted only if every one of them passes, in one step: nothing is taken unless everything
fits, and two requests can never both take the last unit. Two backends, the same rules:

- ``MemoryCounters``: dicts in this process (no Redis configured): limits per process.
- ``RedisCounters``: one Lua script per admission and one per settlement, so the check and
  the take are atomic across every proxy instance sharing the Redis, in one round trip each.

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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

NANO = 1_000_000_000  # budget counters count nano-dollars: integers add exactly in Redis and here
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

    async def settle(
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

    async def settle(
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


# KEYS: one counter per check. ARGV: now, request id, stale-before, amount, then 3 per check:
# kind (r t p b), limit, seconds to keep. Returns 0, or {check (1-based), used, reserved,
# need_seed}. Every check is read before anything is taken.
_ADMIT = """
local now = tonumber(ARGV[1])
local rid = ARGV[2]
local stale = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local n = #KEYS
for i = 1, n do
  local key = KEYS[i]
  local base = 4 + (i - 1) * 3
  local kind = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
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
for i = 1, n do
  local key = KEYS[i]
  local base = 4 + (i - 1) * 3
  local kind = ARGV[base + 1]
  local ttl = tonumber(ARGV[base + 3])
  if kind == 'r' then
    redis.call('INCR', key)
    redis.call('EXPIRE', key, ttl)
  elseif kind == 'p' then
    redis.call('ZADD', key, now, rid)
    redis.call('EXPIRE', key, ttl)
  elseif kind == 'b' then
    redis.call('HINCRBY', key, 'r', amount)
  end
end
return 0
"""

# KEYS: the counters; ARGV: request id, cost, tokens, reserved, then 2 per check: kind, seconds
# to keep. A budget counter that is gone (Redis restarted) is left alone: the ledger has it.
_SETTLE = """
local rid = ARGV[1]
local cost = ARGV[2]
local tokens = ARGV[3]
local reserved = tonumber(ARGV[4])
for i = 1, #KEYS do
  local key = KEYS[i]
  local base = 4 + (i - 1) * 2
  local kind = ARGV[base + 1]
  if kind == 'p' then
    redis.call('ZREM', key, rid)
  elseif kind == 't' then
    redis.call('INCRBY', key, tokens)
    redis.call('EXPIRE', key, tonumber(ARGV[base + 2]))
  elseif kind == 'b' then
    if redis.call('EXISTS', key) == 1 then
      redis.call('HINCRBY', key, 's', cost)
      redis.call('HINCRBY', key, 'r', -reserved)
    end
  end
end
return 0
"""

_SEED = """
if redis.call('HSETNX', KEYS[1], 's', ARGV[1]) == 1 then
  redis.call('HSETNX', KEYS[1], 'r', 0)
  if tonumber(ARGV[2]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
end
return 0
"""

_KIND = {"rpm": "r", "tpm": "t", "parallel": "p", "budget": "b"}
PREFIX = "lmgate:limits:"


def _ttl(check: Check, now: float) -> int:
    if check.kind == "parallel":
        return int(STALE_S) * 2
    if not check.expires_at:
        return 0
    return max(1, int(check.expires_at - now) + 1)


class _Coalescer:
    """Scripts called by concurrent requests go to Redis together: each caller queues its call
    and awaits its own answer; the first one schedules a task that sends everything queued by
    then in one pipeline (one round trip). Each script stays atomic on its own; under load the
    client's CPU per call falls with the batch, and alone a call costs one round trip as before."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._queue: list[tuple[Any, list[str], list[Any], asyncio.Future[Any]]] = []

    def call(self, script: Any, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.create_task(self._send())
        self._queue.append((script, keys, args, future))
        return future

    async def _send(self) -> None:
        batch, self._queue = self._queue, []
        try:
            if len(batch) == 1:
                script, keys, args, future = batch[0]
                results = [await script(keys=keys, args=args)]
            else:
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
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


class RedisCounters:
    """The counters in a Redis every instance shares (``redis.asyncio``; scripts by EVALSHA,
    concurrent calls pipelined together)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._admit = client.register_script(_ADMIT)
        self._settle = client.register_script(_SETTLE)
        self._seed = client.register_script(_SEED)
        self._batch = _Coalescer(client)

    async def admit(
        self, request_id: str, checks: Sequence[Check], amount: int, now: float
    ) -> Refusal | None:
        keys = [PREFIX + c.name for c in checks]
        args: list[Any] = [repr(now), request_id, repr(now - STALE_S), amount]
        for c in checks:
            args += (_KIND[c.kind], c.limit, _ttl(c, now))
        got = await self._batch.call(self._admit, keys, args)
        if got == 0:
            return None
        index, used, reserved, seed = (int(v) for v in got)
        return Refusal(index - 1, used, reserved, bool(seed))

    async def settle(
        self, request_id: str, checks: Sequence[Check], reserved: int, cost: int, tokens: int, now: float
    ) -> None:
        settled = [c for c in checks if c.kind != "rpm"]
        if not settled:
            return
        args: list[Any] = [request_id, cost, tokens, reserved]
        for c in settled:
            args += (_KIND[c.kind], _ttl(c, now))
        await self._batch.call(self._settle, [PREFIX + c.name for c in settled], args)

    async def seed(self, check: Check, spent: int) -> None:
        ttl = _ttl(check, time.time()) if check.expires_at else 0
        await self._seed(keys=[PREFIX + check.name], args=[spent, ttl])

    async def close(self) -> None:
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
