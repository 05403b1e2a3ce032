"""Counters for rate limits and budgets: one atomic check-and-take per request, one settle.

A request brings a list of ``Check``s (its key's, its team's, its user's limits) and is
admitted only if every one of them passes, in one step: nothing is taken unless everything
fits, and two requests can never both take the last unit. Two backends, the same rules:

- ``MemoryCounters``: dicts in this process (no Redis configured): limits per process.
- ``RedisCounters``: a Lua script, so the check and the take are atomic across every proxy
  instance sharing the Redis. The admissions and settlements of the requests of one moment go
  together, in one script call (one round trip for many requests under load; a settlement
  rides with the next admission): the batching rule is in its text.

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
MAX_IN_FLIGHT = 1  # Redis batches sent and not answered yet, per process (see RedisCounters)
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


# One script runs a whole batch: the settlements and admissions of every request of this process
# that reached the limits in the same moment (``RedisCounters``). KEYS: every operation's
# counters, in order. ARGV[1]: now (Unix seconds); then 7 values per operation: its kind ('s'
# settle, 'a' admit), its number of KEYS, the request id, then for an admission the amount
# (nano-dollars) and two zeros, for a settlement the cost, the tokens and minus the amount
# reserved; last the checks' spec (per check: kind r/t/p/b, limit, expiry as Unix seconds;
# comma-separated, in KEYS' order — the same bytes for every request of a key within a minute).
# Returns 4 integers per admission, in order: 0,0,0,0 when admitted, else the refused check
# (1-based), what its counter held, the budget's reserved amount and whether the budget's window
# must be seeded first. Every admission reads all its checks before it takes anything; numbers
# go to HINCRBY/INCRBY as the strings they came in (Lua's doubles would round nano-dollars).
_BATCH = r"""
local now = tonumber(ARGV[1])
local stale = now - STALE_S
local out = {}
local k = 0
local a = 2
while a <= #ARGV do
  local op, n, rid = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  local x, tokens, back = ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local spec = {}
  for kind, limit, expiry in string.gmatch(ARGV[a + 6], '(%a),([%d.]+),([%d.]+)') do
    spec[#spec + 1] = {kind, tonumber(limit), tonumber(expiry)}
  end
  a = a + 7
  if op == 'a' then
    local amount = tonumber(x)
    local refused = nil
    for i = 1, n do
      local key, kind, limit = KEYS[k + i], spec[i][1], spec[i][2]
      if kind == 'b' then
        if redis.call('EXISTS', key) == 0 then refused = {i, 0, 0, 1} break end
        local spent = tonumber(redis.call('HGET', key, 's') or '0')
        local reserved = tonumber(redis.call('HGET', key, 'r') or '0')
        if spent >= limit or spent + reserved + amount > limit then
          refused = {i, spent, reserved, 0} break
        end
      elseif kind == 'p' then
        redis.call('ZREMRANGEBYSCORE', key, '-inf', stale)
        local used = redis.call('ZCARD', key)
        if used >= limit then refused = {i, used, 0, 0} break end
      else
        local used = tonumber(redis.call('GET', key) or '0')
        if used >= limit then refused = {i, used, 0, 0} break end
      end
    end
    if refused then
      for j = 1, 4 do out[#out + 1] = refused[j] end
    else
      for i = 1, n do
        local key, kind, expiry = KEYS[k + i], spec[i][1], spec[i][3]
        if kind == 'r' then
          redis.call('INCR', key)
          redis.call('EXPIREAT', key, math.ceil(expiry))
        elseif kind == 'p' then
          redis.call('ZADD', key, now, rid)
          redis.call('EXPIRE', key, KEEP_S)
        elseif kind == 'b' then
          redis.call('HINCRBY', key, 'r', x)
        end
      end
      for j = 1, 4 do out[#out + 1] = 0 end
    end
  else
    -- a budget counter that is gone (Redis restarted) is left alone: the ledger has the cost
    for i = 1, n do
      local key, kind, expiry = KEYS[k + i], spec[i][1], spec[i][3]
      if kind == 'p' then
        redis.call('ZREM', key, rid)
      elseif kind == 't' then
        redis.call('INCRBY', key, tokens)
        redis.call('EXPIREAT', key, math.ceil(expiry))
      elseif kind == 'b' then
        if redis.call('EXISTS', key) == 1 then
          redis.call('HINCRBY', key, 's', x)
          redis.call('HINCRBY', key, 'r', back)
        end
      end
    end
  end
  k = k + n
end
return out
""".replace("STALE_S", str(int(STALE_S))).replace("KEEP_S", str(int(STALE_S) * 2))

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
    """The counters' names and the spec argument of a list of checks (see the script)."""
    keys = [(PREFIX + c.name).encode() for c in checks]
    spec = ",".join(f"{_KIND[c.kind]},{c.limit},{c.expires_at:.0f}" for c in checks)
    return keys, spec.encode()


# an operation waiting for the next batch: its KEYS, its 7 arguments, and for an admission the
# future its request awaits (None for a settlement)
_Op = tuple[list[bytes], tuple[Any, ...], "asyncio.Future[Any] | None"]


class RedisCounters:
    """The counters in a Redis every instance shares.

    The batching rule: a request's admission is not sent on its own. The first admission of a
    moment schedules a send for the end of the event loop's current step (``call_soon``); every
    admission and settlement made until then joins it, and all of them go in one EVALSHA of one
    script (``_BATCH``), settlements first. While a batch is in flight the next one gathers, and
    goes the moment the reply is in: one batch in flight per process, so this process's
    operations reach Redis in the order they were made. A settlement alone waits up to
    ``SETTLE_DELAY_S`` for an admission to ride with. Each admission stays all-or-nothing on
    its own (and the whole batch is atomic), so limits and budgets hold across every instance
    exactly as with one script per request; under load one round trip carries many requests.

    The batches go over a lean connection (``resp.RespConnection``: hiredis, no pool); seeding a
    budget window (rare) and pub/sub use the redis-py ``client``.
    """

    def __init__(self, client: Any, timeout_s: float = 2.0) -> None:
        from hashlib import sha1

        from .resp import RespConnection

        self.client = client
        self._conn = RespConnection(client, timeout_s)
        self.timeout_s = timeout_s
        self._sha = sha1(_BATCH.encode()).hexdigest().encode()
        self._seed = client.register_script(_SEED)
        self._specs: dict[int, tuple[Sequence[Check], list[bytes], bytes]] = {}
        self._settles: list[_Op] = []
        self._admits: list[_Op] = []
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight = 0  # batches sent and not answered yet
        self._idle: asyncio.Future[None] | None = None  # done when none is (``flush``)
        self._now = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self.settle_failures = 0  # settlements Redis refused or never got (logged; the ledger has the spend)
        self.batches = 0  # round trips made (admissions and settlements per batch: ``operations / batches``)
        self.operations = 0

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
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._admits.append((keys, (b"a", len(keys), request_id, amount, 0, 0, spec), future))
        self._now = now  # the batch's clock: its admissions' (they are of one moment)
        if not self._scheduled and self._in_flight < MAX_IN_FLIGHT:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send)
        got = await future
        if got[0] == 0:
            return None
        index, used, reserved, seed = got
        return Refusal(index - 1, used, reserved, bool(seed))

    def settle(
        self, request_id: str, checks: Sequence[Check], reserved: int, cost: int, tokens: int, now: float
    ) -> None:
        if all(c.kind == "rpm" for c in checks):
            return
        keys, spec = self._encoded(checks)
        self._settles.append((keys, (b"s", len(keys), request_id, cost, tokens, -reserved, spec), None))
        if not self._scheduled and self._in_flight < MAX_IN_FLIGHT and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SETTLE_DELAY_S, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._scheduled and self._in_flight < MAX_IN_FLIGHT:
            self._send()

    def _send(self) -> None:
        """Send everything waiting as one batch (unless one is in flight: it follows that one)."""
        self._scheduled = False
        if self._in_flight >= MAX_IN_FLIGHT:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ops = self._settles + self._admits
        if not ops:
            return
        self._settles, self._admits = [], []
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        keys: list[bytes] = []
        args: list[Any] = [repr(self._now)]
        for op_keys, op_args, _ in ops:
            keys += op_keys
            args += op_args
        command = (b"EVALSHA", self._sha, len(keys), *keys, *args)
        self.batches += 1
        self.operations += len(ops)
        if self._conn.ready:
            self._write(ops, command, loop)
        else:  # (re)connect first: only the first batch, or after the connection dropped
            task = loop.create_task(self._connect_then_write(ops, command))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connect_then_write(self, ops: list[_Op], command: tuple[Any, ...]) -> None:
        try:
            await self._conn.connect()
        except Exception as error:
            self._finish(ops, error)
            return
        self._write(ops, command, asyncio.get_running_loop())

    def _write(self, ops: list[_Op], command: tuple[Any, ...], loop: asyncio.AbstractEventLoop) -> None:
        from .resp import pack

        try:
            reply = self._conn.send(pack(command))
        except Exception as error:
            self._finish(ops, error)
            return
        late = loop.call_later(self.timeout_s, self._conn.drop, TimeoutError("redis: no reply in time"))
        reply.add_done_callback(lambda done: self._answered(done, ops, command, late))

    def _answered(
        self, done: asyncio.Future[Any], ops: list[_Op], command: tuple[Any, ...], late: asyncio.TimerHandle
    ) -> None:
        late.cancel()
        error = done.exception()
        if error is not None:
            self._finish(ops, error)
            return
        reply = done.result()
        from .resp import ReplyError

        if isinstance(reply, ReplyError):
            if str(reply).startswith("NOSCRIPT"):  # Redis restarted or flushed its scripts: send the body
                self._write(ops, (b"EVAL", _BATCH, *command[2:]), asyncio.get_running_loop())
                return
            self._finish(ops, RuntimeError(f"redis: {reply}"))
            return
        i = 0
        for keys, args, future in ops:
            if future is not None:
                got = reply[i : i + 4]
                if not future.done():
                    future.set_result(got)
                elif got[0] == 0:  # admitted, but its request is gone (cancelled): give it back
                    self._settles.append((keys, (b"s", args[1], args[2], 0, 0, -args[3], args[6]), None))
                i += 4
        self._finish(ops, None)

    def _finish(self, ops: list[_Op], error: BaseException | None) -> None:
        """The batch is over: fail its waiters on ``error``, then send what gathered meanwhile."""
        if error is not None:
            failed = 0
            for _, _, future in ops:
                if future is None:
                    failed += 1
                elif not future.done():
                    future.set_exception(error)
            if failed:
                self.settle_failures += failed
                logger.error("limits: %d settlements could not reach Redis: %s", failed, error)
        self._in_flight -= 1
        if self._in_flight == 0 and self._idle is not None:
            if not self._idle.done():
                self._idle.set_result(None)
            self._idle = None
        if self._admits:
            self._send()
        elif self._settles and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SETTLE_DELAY_S, self._on_timer)

    async def flush(self) -> None:
        """Send the settlements waiting now, and wait until Redis has them."""
        while True:
            if self._settles or self._admits:
                self._send()
            if self._in_flight == 0:
                return
            if self._idle is None:
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)

    async def seed(self, check: Check, spent: int) -> None:
        await self._seed(keys=[PREFIX + check.name], args=[spent, math.ceil(check.expires_at)])

    async def close(self) -> None:
        try:
            await self.flush()
        finally:
            self._conn.close()
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
