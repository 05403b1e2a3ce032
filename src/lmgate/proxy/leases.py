"""The limits' counters in a Redis every instance shares, taken through per-instance leases.

Without leases every request of a keyed call waits for a round trip to Redis before it may go
to a provider. With them an instance takes a *slice* of each counter it uses — a share of a
budget (nano-dollars), of a minute's requests or tokens, of a key's parallel slots — in one
round trip, and admits its requests against that slice in memory, no round trip, until the
slice is used up; then (and, for a counter in use, every ``RATE_S``) one batch reports what
was used and sizes the slice again. Limits and budgets still hold globally: Redis counts every slice as taken, so the
sum of what the instances hold and what was used never exceeds a limit.

Per counter (a Redis hash ``lmgate:limits:<name>``):

- ``u``: used — a budget's settled spend, a minute's requests or settled tokens (a parallel
  limit uses nothing: a slot is held, then given back);
- ``h:<instance>``: what an instance holds — its requests in flight (their reservations, their
  parallel slots), what it used and has not reported yet, and the free part of its slice;
- ``H``: the sum of every ``h:*`` (so a check reads two fields, whatever the instances);
- ``x:<instance>``: when the instance's hold expires, on Redis's clock. A live instance renews it (every lease
  operation does, and the timer before half of ``LEASE_TTL_S`` has passed); the hold of an
  instance that died (SIGKILL, lost host) is dropped ``LEASE_TTL_S`` after its last renewal by
  the next instance that finds too little room. That bounds the capacity a crash can strand;
  the units it used and had not reported (at most ``RATE_S`` worth) are missing from the
  counter, not from the ledger.

A request is admitted in memory when every one of its checks has room in this instance's free
slice: budget ``amount`` ≤ free, rpm and parallel one unit, tpm a free slice above zero (tokens
are known at the end: a settlement takes them). Otherwise it goes to Redis in the next batch
(the batching rule: every admission of one event-loop moment in one script call, one batch in
flight per process) with a *lease operation* for each of its counters: report what was used,
keep what is in flight, ask for a new free slice. Redis admits it from the slice just granted
or from the room nobody holds, all-or-nothing over its checks — exactly the old per-request rule
when no slice is held.

Lease size (``want``): the units this counter took here per second over the last ``RATE_S``,
times ``AHEAD_S`` — the next two seconds' worth at the current rate — and at least
``MIN_SLICE`` of its last request's units, so a key used now and then also skips most round
trips. Redis grants at most ``1/SHARE`` of the room nobody holds, in whole requests, so near a
limit slices shrink to nothing and the instances fall back to per-request admission, exact.
The trade-off (docs/keys.md "Several instances"): while one instance holds an unused slice,
another may be refused for want of the room that slice holds — at most ``1/SHARE`` of what was
left, for at most ``RATE_S + SYNC_S`` (an idle slice is given back once its rate window is
over; every slice at ``close``, which SIGTERM runs).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from .limits import PREFIX, Check, Refusal

logger = logging.getLogger("lmgate.proxy")

SYNC_S = 0.5  # how often the timer looks at the leases (``_tick``)
LEASE_TTL_S = 10.0  # an instance's hold expires this long after its last sync (a crash)
AHEAD_S = 2.0  # a slice covers this long of the counter's recent rate
RATE_S = 2.0  # the rate is measured over this long (at least)
MIN_SLICE = 32  # the least a slice asks for: this many of the counter's last request's units
SHARE = 4  # a slice is at most 1/SHARE of the room nobody holds
MAX_IN_FLIGHT = 1  # batches sent and not answered yet, per process
KEEP_S = 1200  # a parallel counter (no window) is forgotten this long after its last use

_KIND = {"rpm": "r", "tpm": "t", "parallel": "p", "budget": "b"}

# One script runs a whole batch. ARGV[1] now (Unix seconds; unread), ARGV[2] this instance's id,
# ARGV[3] its hold's time to live; then one argument per operation, its values comma-separated
# (one argument, not eight: packing a command costs ~1,000 instructions per argument).
# - a lease operation (1 key) "l,kind,limit,expiry,report,keep,want,unit": kind r/t/p/b, the
#   counter's expiry (Unix seconds, 0: none), report (used units to move into 'u'), keep (units
#   in flight here), want (the free slice asked for), unit (the last request's units: a slice is
#   a whole number of them). Sets the instance's hold to keep + the slice granted: at most
#   1/SHARE of the room nobody holds.
# - an admission (n keys: every counter of the request; those with something to report, return
#   or ask for have a lease operation earlier in the batch) "a,n,amount,spec": the amount in
#   nano-dollars (for budgets), the spec per check: kind, limit, expiry. Taken from the slice
#   this batch granted, then from the room nobody holds, all-or-nothing.
# Returns 4 integers per admission, in order (0,0,0,0 admitted; else the refused check, 1-based,
# a budget's spent and held by every instance, or a count's used and held together, and whether
# a budget's window must be seeded), then per lease operation, in order, the free slice left
# after the batch's admissions took theirs. Reports go to HINCRBY as the strings they came in;
# what Lua computes (holds, slices) stays far below 2^53, where its doubles are exact.
_BATCH = r"""
-- the holds' expiry on Redis's own clock, never an instance's: an instance whose clock runs
-- ahead (by more than half the TTL) would take a live instance's hold for a dead one's and
-- sweep it, admitting beside its requests in flight (ARGV[1], the instance's time, is not read)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local me_h, me_x = 'h:' .. ARGV[2], 'x:' .. ARGV[2]
local hold_until = math.ceil(now + tonumber(ARGV[3]))
local free, leased, out = {}, {}, {}
local function num(key, f) return tonumber(redis.call('HGET', key, f) or '0') end
local function sweep(key)
  -- drop the holds of instances that stopped renewing them (they died): their room returns
  local all, dropped = redis.call('HGETALL', key), 0
  for i = 1, #all, 2 do
    local f = all[i]
    if string.sub(f, 1, 2) == 'x:' and f ~= me_x and tonumber(all[i + 1]) < now then
      local h = 'h:' .. string.sub(f, 3)
      dropped = dropped + num(key, h)
      redis.call('HDEL', key, f, h)
    end
  end
  if dropped ~= 0 then redis.call('HINCRBY', key, 'H', -dropped) end
  return dropped
end
local function touch(key, kind, expiry)
  if kind == 'p' then redis.call('EXPIRE', key, KEEP_S)
  elseif expiry > 0 then redis.call('EXPIREAT', key, math.ceil(expiry)) end
end
local k, a = 0, 4
while a <= #ARGV do
  local op = ARGV[a]
  if string.byte(op) == 108 then  -- 'l'
    k = k + 1
    local kind, limit, expiry, report, keep, want, unit =
      string.match(op, '^l,(%a),(%d+),(%d+),(%-?%d+),(%-?%d+),(%d+),(%d+)$')
    local key = KEYS[k]
    limit, expiry, keep, want = tonumber(limit), tonumber(expiry), tonumber(keep), tonumber(want)
    local give = 0
    if kind ~= 'b' or redis.call('EXISTS', key) == 1 then
      if report ~= '0' then redis.call('HINCRBY', key, 'u', report) end
      local h = num(key, me_h)
      if want > 0 then
        local room = limit - num(key, 'u') - (num(key, 'H') - h) - keep
        if room < want * SHARE then room = room + sweep(key) end
        unit = math.max(1, tonumber(unit))
        give = math.max(0, math.min(want, math.floor(room / SHARE)))
        give = give - give % unit  -- whole requests: a part of one would be room nobody can use
      end
      local held = keep + give
      if held ~= h then redis.call('HINCRBY', key, 'H', held - h) end
      if held ~= 0 then
        redis.call('HSET', key, me_h, held, me_x, hold_until)
      elseif h ~= 0 then
        redis.call('HDEL', key, me_h, me_x)
      end
      touch(key, kind, expiry)
    end
    free[key] = give
    leased[#leased + 1] = key
  else
    local n, amount, checks = string.match(op, '^a,(%d+),(%d+),(.*)$')
    n, amount = tonumber(n), tonumber(amount)
    local spec = {}
    for kind, limit, expiry in string.gmatch(checks, '(%a),([%d.]+),([%d.]+)') do
      spec[#spec + 1] = {kind, tonumber(limit), tonumber(expiry)}
    end
    local refused = nil
    for i = 1, n do
      local key, kind, limit = KEYS[k + i], spec[i][1], spec[i][2]
      local need = 1
      if kind == 'b' then need = amount end
      if kind == 'b' and redis.call('EXISTS', key) == 0 then refused = {i, 0, 0, 1} break end
      local used = num(key, 'u')
      local f = free[key] or 0
      if kind == 'b' and used >= limit then refused = {i, used, num(key, 'H'), 0} break end
      if f < need then
        local room = limit - used - num(key, 'H')
        if f + room < need then room = room + sweep(key) end
        if f + room < need then
          if kind == 'b' then refused = {i, used, num(key, 'H'), 0}
          else refused = {i, used + num(key, 'H'), 0, 0} end  -- a count: what every instance holds too
          break
        end
      end
    end
    if refused then
      for j = 1, 4 do out[#out + 1] = refused[j] end
    else
      for i = 1, n do
        local key, kind = KEYS[k + i], spec[i][1]
        if kind ~= 't' then
          local need = 1
          if kind == 'b' then need = amount end
          local f = free[key] or 0
          local from_free = math.min(f, need)
          free[key] = f - from_free
          if need > from_free then
            redis.call('HINCRBY', key, me_h, need - from_free)
            redis.call('HINCRBY', key, 'H', need - from_free)
            redis.call('HSET', key, me_x, hold_until)
            touch(key, kind, spec[i][3])
          end
        end
      end
      for j = 1, 4 do out[#out + 1] = 0 end
    end
    k = k + n
  end
  a = a + 1
end
for i = 1, #leased do out[#out + 1] = free[leased[i]] end
return out
""".replace("KEEP_S", str(KEEP_S)).replace("SHARE", str(SHARE))

_SEED = """
if redis.call('HSETNX', KEYS[1], 'u', ARGV[1]) == 1 then
  redis.call('HSETNX', KEYS[1], 'H', 0)
  if tonumber(ARGV[2]) > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[2]) end
end
return 0
"""


class Lease:
    """This instance's hold on one counter. ``held`` is what Redis counts as ours; of it,
    ``free`` is not in use, ``used`` was used and is not reported yet, the rest is in flight."""

    __slots__ = (
        "head",
        "name",
        "kind",
        "key",
        "limit",
        "expiry",
        "held",
        "free",
        "used",
        "taken",
        "unit",
        "count",
        "since",
        "until",
        "bounds",
    )

    def __init__(self, check: Check, now: float) -> None:
        self.name = check.name
        self.kind = _KIND[check.kind]
        self.key = (PREFIX + check.name).encode()
        self.limit = check.limit
        # a lease operation's first arguments, packed often: made once
        self.head = b"l,%b,%d,%.0f" % (self.kind.encode(), check.limit, check.expires_at)
        self.expiry = check.expires_at
        self.held = 0
        self.free = 0
        self.used = 0
        self.taken = 0  # units taken since ``since`` (the rate that sizes the next slice)
        self.unit = 1  # the units of the last request (a slice is a multiple of it)
        self.count = 0  # requests that took them
        self.since = now
        self.until = 0.0  # when Redis drops our hold unless a sync renews it
        self.bounds: dict[int, _Bound] = {}  # the checks lists that may hold a part of its free slice


SLICE = 16  # the requests' worth a checks list takes from its leases' free slices at once
_NONE = 1 << 62  # a list's free units of a kind it has no lease of: never runs out


class _Bound:
    """A checks list's leases by what a request does to each (``RedisCounters``), and the part
    of their free slices it took ahead of its requests (``SLICE`` requests' worth, never more
    than is free), so that a request admitted from it touches the list only: one test and one
    take per kind. What its requests used and took is added to the leases when the list gives
    its part back (``flush``): before anything reads them (a sync, a batch, a report) and
    before a request is sent to Redis for want of it."""

    __slots__ = (
        "budgets",
        "counts",
        "rpms",
        "slots",
        "tpms",
        "sliced",
        "until",
        "rfree",
        "pfree",
        "bfree",
        "n",
        "amount",
        "last",
        "spent",
    )

    def __init__(self, leases: list[Lease]) -> None:
        self.budgets = tuple(x for x in leases if x.kind == "b")  # the amount, from the free slice
        self.counts = tuple(x for x in leases if x.kind != "b")  # rpm, parallel and tpm: room for one unit
        self.rpms = tuple(x for x in leases if x.kind == "r")  # one unit taken and used
        self.slots = tuple(x for x in leases if x.kind == "p")  # one unit taken, given back at settlement
        self.tpms = tuple(x for x in leases if x.kind == "t")  # the tokens, at settlement (never sliced)
        self.sliced = self.budgets + self.rpms + self.slots
        self.until = 0.0  # the earliest hold of its leases: a slice is used only while they hold
        self.rfree = 0 if self.rpms else _NONE
        self.pfree = 0 if self.slots else _NONE
        self.bfree = 0 if self.budgets else _NONE
        self.n = 0  # requests admitted from the slice since the last flush
        self.amount = 0  # the nano-dollars they reserved
        self.last = 0  # the last one's
        self.spent = 0  # settled spend not yet added to the budget leases' used

    def flush(self) -> None:
        """The free part back to the leases, with what its requests took and used."""
        n = self.n
        if self.rpms:
            for lease in self.rpms:
                lease.free += self.rfree
                lease.used += n
                lease.taken += n
                lease.count += n
            self.rfree = 0
        if self.slots:
            for lease in self.slots:
                lease.free += self.pfree
                lease.taken += n
                lease.count += n
            self.pfree = 0
        if self.budgets:
            for lease in self.budgets:
                lease.free += self.bfree
                lease.used += self.spent
                lease.taken += self.amount
                if n:
                    lease.unit = self.last or 1
                lease.count += n
            self.bfree = 0
        self.n = self.amount = self.spent = 0
        self.until = 0.0  # the next request takes a new part (``RedisCounters._admit_slow``)


# a batch's operations: (lease, report, keep) per lease operation; (leases, keys, args, amount,
# future) per admission (future None for one whose request has gone)
_LeaseOp = tuple[Lease, int, int, int]


class RedisCounters:
    """The counters in a Redis every instance shares, admitted against per-instance leases
    (the module's text). The batches go over a lean connection (``resp.RespConnection``:
    hiredis, no pool); seeding a budget window (rare) and pub/sub use the redis-py ``client``."""

    def __init__(
        self,
        client: Any,
        timeout_s: float = 2.0,
        instance: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from hashlib import sha1

        from .resp import RespConnection

        self.client = client
        self._conn = RespConnection(client, timeout_s)
        self.timeout_s = timeout_s
        self.instance = instance or os.urandom(6).hex()
        self._sha = sha1(_BATCH.encode()).hexdigest().encode()
        self._seed = client.register_script(_SEED)
        self._leases: dict[str, Lease] = {}
        # id(checks) → (checks, their leases, the admission's spec, the generation, the leases
        # by what a request does to each: ``_Bound``)
        self._lists: dict[int, tuple[Sequence[Check], list[Lease], bytes, int, _Bound]] = {}
        self._generation = 0  # bumped when a lease is forgotten (the cached lists may name it)
        self._due: dict[str, Lease] = {}  # leases the next batch carries a lease operation for
        self._admits: list[tuple[list[Lease], int, bytes, asyncio.Future[Any]]] = []
        self._returning = False  # the next batch gives every free slice back (flush, close)
        self._scheduled = False
        self._ticker: asyncio.TimerHandle | None = None
        self._in_flight = 0
        self._idle: asyncio.Future[None] | None = None
        self._clock = clock  # Unix seconds (the enforcer's): the holds' expiry, the rates
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # round trips made
        self.operations = 0  # lease operations and admissions they carried
        self.local = 0  # admissions made against a slice in memory (no round trip)
        self.settle_failures = 0  # used units whose report failed (kept, sent again)

    def use_clock(self, clock: Callable[[], float]) -> None:
        """Run on the enforcer's clock (an injected one in tests)."""
        self._clock = clock

    # ---- admission ----
    def _of(self, checks: Sequence[Check], now: float) -> tuple[list[Lease], bytes]:
        """The checks' leases and spec (cached per checks list: budgets.py keeps one per key
        and minute)."""
        cached = self._lists.get(id(checks))
        if cached is not None:
            if cached[0] is checks and cached[3] == self._generation:
                return cached[1], cached[2]
            self._drop(cached[4])  # replaced: its part of the slices back first
        leases = []
        for c in checks:
            lease = self._leases.get(c.name)
            if lease is None:
                lease = self._leases[c.name] = Lease(c, now)
            if lease.limit != c.limit:  # the key's limits changed (a new checks list)
                lease.limit = c.limit
                lease.head = b"l,%b,%d,%.0f" % (lease.kind.encode(), c.limit, c.expires_at)
                # its free slice was granted under the old limit: the next admission goes to
                # Redis, whose lease operation gives it back and sizes a new one by the new
                # limit (a lowered budget or rate binds at once, slices held or not)
                lease.until = 0.0
            leases.append(lease)
        spec = ",".join(f"{_KIND[c.kind]},{c.limit},{c.expires_at:.0f}" for c in checks).encode()
        if len(self._lists) >= 10_000:
            self._flush_lists()
            for lease in self._leases.values():
                lease.bounds.clear()
            self._lists.clear()
        bound = _Bound(leases)
        for lease in bound.sliced:
            lease.bounds[id(bound)] = bound
        self._lists[id(checks)] = (checks, leases, spec, self._generation, bound)
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().call_later(SYNC_S, self._tick)
        return leases, spec

    def admit_now(self, checks: Sequence[Check], amount: int, now: float) -> bool:
        """Admitted against this instance's slices, in memory, when every check has room in
        its lease's free slice (True); else nothing is taken and ``admit`` goes to Redis. The
        checks list's own part of those slices first (``_Bound``), else the leases'."""
        cached = self._lists.get(id(checks))  # ``_of``, inline: once per request
        if cached is None or cached[0] is not checks or cached[3] != self._generation:
            self._of(checks, now)
            cached = self._lists[id(checks)]
        bound = cached[4]
        if bound.rfree and bound.pfree and bound.bfree >= amount and now < bound.until:
            for lease in bound.tpms:  # tpm needs a free slice above zero (its settlement takes it)
                if now >= lease.until or lease.free < 1:
                    break
            else:
                bound.rfree -= 1
                bound.pfree -= 1
                bound.bfree -= amount
                bound.n += 1
                bound.amount += amount
                bound.last = amount
                self.local += 1
                return True
        return self._admit_slow(bound, amount, now)

    def _fits(self, bound: _Bound, amount: int, now: float) -> bool:
        for lease in bound.budgets:
            if now >= lease.until or lease.free < amount:
                return False
        for lease in bound.counts:  # rpm and parallel take one unit; tpm needs a free slice above zero
            if now >= lease.until or lease.free < 1:
                return False
        return True

    def _admit_slow(self, bound: _Bound, amount: int, now: float) -> bool:
        """The list's part back in the leases; if they cannot admit the request, every other
        list's part of them too; then a new part for the list, the request taken from it."""
        bound.flush()
        if not self._fits(bound, amount, now):
            for lease in bound.sliced:
                for other in lease.bounds.values():
                    other.flush()
            if not self._fits(bound, amount, now):
                return False
        n = SLICE
        until = _NONE * 1.0
        for lease in bound.rpms + bound.slots:
            if lease.free < n:
                n = lease.free
            if lease.until < until:
                until = lease.until
        grant = max(amount, 1) * SLICE
        for lease in bound.budgets:
            if lease.free < grant:
                grant = lease.free
            if lease.until < until:
                until = lease.until
        grant = max(grant, amount)
        for lease in bound.rpms:
            lease.free -= n
        for lease in bound.slots:
            lease.free -= n
        for lease in bound.budgets:
            lease.free -= grant
        if bound.rpms:
            bound.rfree = n - 1
        if bound.slots:
            bound.pfree = n - 1
        if bound.budgets:
            bound.bfree = grant - amount
        bound.until = until
        bound.n += 1
        bound.amount += amount
        bound.last = amount
        self.local += 1
        return True

    def _flush_lists(self) -> None:
        """Every list's part of the slices back in the leases (before they are read)."""
        for entry in self._lists.values():
            entry[4].flush()

    def _drop(self, bound: _Bound) -> None:
        bound.flush()
        for lease in bound.sliced:
            lease.bounds.pop(id(bound), None)

    async def admit(
        self, request_id: str, checks: Sequence[Check], amount: int, now: float
    ) -> Refusal | None:
        if self.admit_now(checks, amount, now):
            return None
        leases, spec = self._of(checks, now)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._admits.append((leases, amount, spec, future))
        for c, lease in zip(checks, leases, strict=True):
            self._due[c.name] = lease
        self._schedule()
        got = await future
        if got[0] == 0:
            return None
        index, used, reserved, seed = got
        return Refusal(index - 1, used, reserved, bool(seed))

    def settle(
        self, request_id: str, checks: Sequence[Check], reserved: int, cost: int, tokens: int, now: float
    ) -> None:
        cached = self._lists.get(id(checks))
        if cached is None or cached[0] is not checks or cached[3] != self._generation:
            self._settle_each(checks, reserved, cost, tokens, now)
            return
        # no lease was forgotten since the list was bound: its leases are the live ones; the
        # slot and the budget's unused reservation go back to the list's part of the slices
        bound = cached[4]
        bound.pfree += 1
        bound.bfree += reserved - cost
        bound.spent += cost
        short = False
        if bound.bfree < 0:  # more than the list's part: the leases must count it now
            bound.flush()
            for lease in bound.budgets:
                if lease.free < 0:
                    short = True
        for lease in bound.tpms:
            lease.free -= tokens
            lease.used += tokens
            lease.taken += tokens
            lease.unit = tokens or 1
            lease.count += 1
            if lease.free < 0:
                short = True
        if short:
            self._report_short(cached[1])

    def _settle_each(
        self, checks: Sequence[Check], reserved: int, cost: int, tokens: int, now: float
    ) -> None:
        """``settle`` when a lease of the list may have been forgotten while its request ran."""
        for c in checks:
            lease = self._leases.get(c.name)
            if lease is None:
                if c.kind not in ("tpm", "budget"):  # a slot, an rpm unit: held in flight, never forgotten
                    continue
                # forgotten while its request ran, holding nothing (a tpm lease takes its tokens
                # only at the end; a budget reservation of 0): what it used must still reach Redis
                lease = self._leases[c.name] = Lease(c, now)
            kind = lease.kind
            if kind == "b":
                lease.free += reserved - cost
                lease.used += cost
            elif kind == "p":
                lease.free += 1
            elif kind == "t":
                lease.free -= tokens
                lease.used += tokens
                lease.taken += tokens
                lease.unit = tokens or 1
                lease.count += 1
        self._report_short(self._leases.get(c.name) for c in checks)

    def _report_short(self, leases: Any) -> None:
        """Leases that used more than their slice held (tokens, a cost above its reservation):
        Redis must count it before the others admit more. Sent at once, not at the end of this
        moment (``_schedule``): settlement runs before the request's answer is written, so the
        report's bytes reach Redis before the client can turn to another instance, and Redis
        runs commands in the order their bytes arrive (a report sent on the next turn of a busy
        event loop could reach it after that instance's admission: over the tpm limit)."""
        short = False
        for lease in leases:
            if lease is not None and lease.free < 0:
                self._due[lease.name] = lease
                short = True
        if short:
            self._send()  # or, with a batch in flight, with the next one (its reply schedules it)

    # ---- batches ----
    def _schedule(self) -> None:
        if not self._scheduled and self._in_flight < MAX_IN_FLIGHT:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send)

    def _tick(self) -> None:
        """Every ``SYNC_S``: the leases whose rate window is over report what they used and are
        sized again; holds about to expire are renewed; leases that hold nothing are forgotten.

        Reporting moves units from what an instance holds to what was used: Redis counts them
        either way, so limits hold without it; it bounds what a crash loses (``RATE_S`` worth
        of used units, gone from the counter with the dead instance's hold, kept by the ledger)."""
        self._ticker = None
        now = self._clock()
        self._flush_lists()  # what the lists took and used, in their leases
        for name, lease in list(self._leases.items()):
            if now - lease.since >= RATE_S and (lease.used or lease.free or lease.count):
                self._due[name] = lease  # the rate's window is over: report, size the slice again
            elif lease.held and lease.until - now < LEASE_TTL_S / 2:
                self._due[name] = lease  # renew the hold
            elif not lease.held and now - lease.since >= RATE_S:
                del self._leases[name]  # idle, holding nothing
                self._generation += 1
        if self._due:
            self._schedule()
        if self._leases:
            self._ticker = asyncio.get_running_loop().call_later(SYNC_S, self._tick)

    def _send(self) -> None:
        self._scheduled = False
        if self._in_flight >= MAX_IN_FLIGHT or not (self._due or self._admits):
            return
        due, admits, returning = self._due, self._admits, self._returning
        self._due, self._admits, self._returning = {}, [], False
        for lease in due.values():  # what the lists took and used of it, in it
            for bound in lease.bounds.values():
                bound.flush()
        now = self._clock()
        keys: list[bytes] = []
        args: list[Any] = [repr(now), self.instance, LEASE_TTL_S]
        ops: list[_LeaseOp] = []
        # a lease with no rate yet (a cold key) that an admission of this batch takes from asks
        # for a slice sized by that request, so the key's next requests need no round trip of
        # their own (its rate sizes the slices from then on)
        first: dict[int, int] = {}
        if not returning:
            for leases, amount, _, _ in admits:
                for lease in leases:
                    if not lease.count:  # tpm: its last request's tokens, 1 until one settled
                        first[id(lease)] = (
                            amount if lease.kind == "b" else lease.unit if lease.kind == "t" else 1
                        )
        for lease in due.values():
            report, free = lease.used, lease.free
            keep = lease.held - report - free
            want = 0
            elapsed = now - lease.since
            if not returning and lease.count:
                rate = lease.taken * AHEAD_S / max(elapsed, RATE_S)
                want = max(int(rate), MIN_SLICE * lease.unit)
            elif first and id(lease) in first:
                lease.unit = first[id(lease)] or 1
                want = MIN_SLICE * lease.unit
            if elapsed >= RATE_S:  # the rate is measured over RATE_S at least
                lease.taken = lease.count = 0
                lease.since = now
            if not (report or free or want) and lease.until - now >= LEASE_TTL_S / 2:
                continue  # nothing to report, return, ask for or renew: no operation
            lease.used = lease.free = 0  # surrendered: Redis has them now
            lease.held = keep
            lease.until = now + LEASE_TTL_S
            keys.append(lease.key)
            args.append(b"%b,%d,%d,%d,%d" % (lease.head, report, keep, want, lease.unit))
            ops.append((lease, report, keep, want))
        for leases, amount, spec, _ in admits:
            for lease in leases:  # what it takes is held until this batch's time + the TTL
                lease.until = max(lease.until, now + LEASE_TTL_S)
            keys += [lease.key for lease in leases]
            args.append(b"a,%d,%d,%b" % (len(leases), amount, spec))
        command = (b"EVALSHA", self._sha, len(keys), *keys, *args)
        self._in_flight += 1
        self.batches += 1
        self.operations += len(ops) + len(admits)
        loop = asyncio.get_running_loop()
        if self._conn.ready:
            self._write(ops, admits, command, loop)
        else:
            task = loop.create_task(self._connect_then_write(ops, admits, command))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connect_then_write(self, ops: Any, admits: Any, command: tuple[Any, ...]) -> None:
        try:
            await self._conn.connect()
        except Exception as error:
            self._finish(ops, admits, error)
            return
        self._write(ops, admits, command, asyncio.get_running_loop())

    def _write(
        self, ops: Any, admits: Any, command: tuple[Any, ...], loop: asyncio.AbstractEventLoop
    ) -> None:
        from .resp import pack

        try:
            reply = self._conn.send(pack(command))
        except Exception as error:
            self._finish(ops, admits, error)
            return
        late = loop.call_later(self.timeout_s, self._conn.drop, TimeoutError("redis: no reply in time"))
        reply.add_done_callback(lambda done: self._answered(done, ops, admits, command, late))

    def _answered(
        self, done: asyncio.Future[Any], ops: Any, admits: Any, command: tuple[Any, ...], late: Any
    ) -> None:
        late.cancel()
        error = done.exception()
        if error is not None:
            self._finish(ops, admits, error)
            return
        reply = done.result()
        from .resp import ReplyError

        if isinstance(reply, ReplyError):
            if str(reply).startswith("NOSCRIPT"):  # Redis restarted or flushed its scripts
                self._write(ops, admits, (b"EVAL", _BATCH, *command[2:]), asyncio.get_running_loop())
                return
            self._finish(ops, admits, RuntimeError(f"redis: {reply}"))
            return
        # the admissions admitted took their units from our slice or from the room: ours now
        i = 0
        for leases, amount, _, future in admits:
            got = reply[i : i + 4]
            i += 4
            if got[0] != 0:
                if not future.done():
                    future.set_result(got)
                continue
            _took(leases, amount)
            if not future.done():
                future.set_result(got)
            else:  # admitted, but its request is gone (cancelled): give it back
                _give_back(leases, amount)
        for (lease, _, _, _), free in zip(ops, reply[i:], strict=True):
            lease.held += free
            lease.free += free
        self._finish(ops, admits, None)

    def _finish(self, ops: Any, admits: Any, error: BaseException | None) -> None:
        if error is not None:
            # unknown whether the script ran: count the report as still ours to send (counted
            # twice at worst: a limit then errs on the side of refusing), the slice as not granted
            for lease, report, _, _ in ops:
                lease.used += report
                lease.held += report
            if any(report for _, report, _, _ in ops):
                self.settle_failures += 1
                logger.error("limits: a report of used units could not reach Redis (kept): %s", error)
            for _, _, _, future in admits:
                if not future.done():
                    future.set_exception(error)
        self._in_flight -= 1
        if self._in_flight == 0 and self._idle is not None:
            if not self._idle.done():
                self._idle.set_result(None)
            self._idle = None
        if self._admits or self._due:
            self._schedule()

    async def sync(self) -> None:
        """What the timer does every ``SYNC_S``, now: report what was used, size every slice
        by its counter's rate since the last sync; and wait until Redis has answered."""
        self._flush_lists()
        for name, lease in self._leases.items():
            if lease.held or lease.used or lease.count:
                self._due[name] = lease
        await self._sent()

    async def flush(self) -> None:
        """Report everything used, give every free slice back, and wait until Redis has it."""
        self._flush_lists()
        for name, lease in self._leases.items():
            if lease.held or lease.used:
                self._due[name] = lease
        self._returning = True
        await self._sent()

    async def _sent(self) -> None:
        while True:
            if (self._due or self._admits) and self._in_flight == 0:
                self._send()
            if self._in_flight == 0:
                return
            if self._idle is None:
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)

    async def seed(self, check: Check, spent: int) -> None:
        import math

        await self._seed(keys=[PREFIX + check.name], args=[spent, math.ceil(check.expires_at)])

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        try:
            await self.flush()
        finally:
            self._conn.close()
            await self.client.aclose()


def _took(leases: list[Lease], amount: int) -> None:
    """An admission Redis granted: its units came from the slice it granted or from the room,
    so they join what we hold (in flight; an rpm unit used) and the free slice is untouched."""
    for lease in leases:
        kind = lease.kind
        if kind == "t":
            continue
        need = amount if kind == "b" else 1
        lease.held += need
        lease.taken += need
        lease.unit = need or 1
        lease.count += 1
        if kind == "r":
            lease.used += 1


def _give_back(leases: list[Lease], amount: int) -> None:
    """An admission undone (its request is gone): its units free again (an rpm unit stays used)."""
    for lease in leases:
        if lease.kind == "b":
            lease.free += amount
        elif lease.kind == "p":
            lease.free += 1


__all__ = ["LEASE_TTL_S", "RATE_S", "SYNC_S", "Lease", "RedisCounters"]
