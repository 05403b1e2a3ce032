"""The limits' counters and the budget rules, on both backends (this process's memory, a real
``redis-server``), with an injected clock: rpm, tpm, parallel, budgets, the reservation rule,
window resets, and many concurrent reservations that together never overrun a budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakes import RedisServer

from lmgate.proxy.budgets import Enforcer, KeyLimits, Scope, key_limits, window_of
from lmgate.proxy.errors import ProxyError
from lmgate.proxy.leases import RedisCounters
from lmgate.proxy.limits import NANO, MemoryCounters

T0 = 1_800_000_000.0  # a minute boundary (divisible by 60)
PRICES = (1e-6, 2e-6)  # USD per input token, per output token


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryCounters()
        return
    import redis.asyncio as aioredis

    redis_server.flushall()
    made = RedisCounters(aioredis.Redis.from_url(redis_server.url))  # on the enforcer's clock
    try:
        yield made
    finally:
        await made.close()


def limits(**scope: Any) -> KeyLimits:
    key = Scope("key", "tok", "Key=sk-...abcd", **scope)
    return KeyLimits("tok", None, None, (key,), key.max_budget is not None)


def body(max_tokens: int = 10) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": max_tokens}


def enforcer(counters: Any, clock: Clock) -> Enforcer:
    return Enforcer(counters, None, lambda group: PRICES, clock=clock)


async def refused(e: Enforcer, lim: KeyLimits, data: dict[str, Any] | None = None) -> ProxyError:
    with pytest.raises(ProxyError) as caught:
        await e.reserve(lim, data or body(), "m", "chat")
    return caught.value


async def test_rpm_is_a_fixed_minute_window_with_retry_after(counters: Any) -> None:
    clock = Clock(T0 + 45)
    e, lim = enforcer(counters, clock), limits(rpm=2)
    for _ in range(2):
        await e.settle(await e.reserve(lim, body(), "m", "chat"), 0.0, None)
    error = await refused(e, lim)
    assert error.status == 429 and error.headers["retry-after"] == "15"
    assert "rpm_limit: 2" in error.message and "Key=sk-...abcd" in error.message
    clock.now = T0 + 60  # the next minute counts again
    await e.reserve(lim, body(), "m", "chat")


async def test_tpm_counts_settled_tokens_of_the_minute_the_request_started(counters: Any) -> None:
    clock = Clock(T0 + 10)
    e, lim = enforcer(counters, clock), limits(tpm=100)
    first = await e.reserve(lim, body(), "m", "chat")
    await e.settle(first, 0.0, {"prompt_tokens": 60, "completion_tokens": 40, "total_tokens": 100})
    error = await refused(e, lim)
    assert error.status == 429 and "tpm_limit: 100, current tpm: 100" in error.message
    clock.now = T0 + 60
    await e.reserve(lim, body(), "m", "chat")


async def test_parallel_slots_are_given_back_when_a_request_settles(counters: Any) -> None:
    e, lim = enforcer(counters, Clock()), limits(parallel=2)
    a = await e.reserve(lim, body(), "m", "chat")
    await e.reserve(lim, body(), "m", "chat")
    error = await refused(e, lim)
    assert error.status == 429 and error.headers["retry-after"] == "1"
    await e.settle(a, None, None)
    await e.reserve(lim, body(), "m", "chat")


async def test_a_refused_request_takes_nothing(counters: Any) -> None:
    """All or nothing: the rpm slot is not taken when the parallel check refuses."""
    e = enforcer(counters, Clock())
    lim = limits(rpm=2, parallel=1)
    held = await e.reserve(lim, body(), "m", "chat")
    await refused(e, lim)
    await refused(e, lim)
    await e.settle(held, None, None)
    await e.reserve(lim, body(), "m", "chat")  # the refused ones used no rpm: 2 of 2 now


async def test_the_worst_case_is_reserved_and_the_exact_cost_settled(counters: Any) -> None:
    e = enforcer(counters, Clock())
    data = body(max_tokens=100)
    worst = e.worst_case(data, "m", "chat")
    # the messages' bytes at the input price, max_tokens at the output price
    assert worst == pytest.approx(len(b'[[{"role":"user","content":"Hi"}],null,null]') * 1e-6 + 100 * 2e-6)
    lim = limits(max_budget=worst * 2.5)
    a = await e.reserve(lim, data, "m", "chat")
    b = await e.reserve(lim, data, "m", "chat")
    error = await refused(e, lim, data)  # two in flight: a third worst case does not fit
    assert (
        error.status == 400
        and error.type == "budget_exceeded"
        and "reserved by requests in flight" in error.message
    )
    await e.settle(a, worst / 10, None)  # the real cost is far below the worst case
    await e.reserve(lim, data, "m", "chat")
    await e.settle(b, worst, None)
    error = await refused(e, lim, data)
    assert error.type == "budget_exceeded"


async def test_an_exhausted_budget_refuses_even_a_free_request(counters: Any) -> None:
    e = enforcer(counters, Clock())
    lim = limits(max_budget=0.001)
    res = await e.reserve(lim, body(), "m", "chat")
    await e.settle(res, 0.001, None)
    error = await refused(e, lim, {"model": "m", "input": ""})
    assert error.type == "budget_exceeded" and "Current cost: 0.001, Max budget: 0.001" in error.message


def team_keys(**team: Any) -> tuple[KeyLimits, KeyLimits]:
    """Two keys of one team whose only limits are the team's: each key has its own checks list
    (its own plan, its own slice of the team's counters), the counters are the team's."""
    scope = Scope("team", "team-1", "Team=team-1", **team)
    budgeted = scope.max_budget is not None
    return KeyLimits("tok-a", "team-1", None, (scope,), budgeted), KeyLimits(
        "tok-b", "team-1", None, (scope,), budgeted
    )


async def test_keys_of_one_team_share_its_limits_exactly_whatever_slices_each_holds(counters: Any) -> None:
    """Each key's requests are admitted from a slice of the team's counters taken ahead; one
    key's slice is given back before the other key is refused for want of it."""
    e = enforcer(counters, Clock())
    a, b = team_keys(rpm=5, tpm=10_000)
    for lim in (a, b, a, b, b):  # 5 of 5, however the slices were cut
        await e.settle(await e.reserve(lim, body(), "m", "chat"), 0.0, None)
    for lim in (a, b):
        error = await refused(e, lim)
        assert error.status == 429 and "rpm_limit: 5, current rpm: 5" in error.message
    worst = e.worst_case(body(), "m", "chat")
    a, b = team_keys(max_budget=worst * 3)  # room for exactly three worst cases in flight
    held = [await e.reserve(a, body(), "m", "chat"), await e.reserve(b, body(), "m", "chat")]
    held.append(await e.reserve(b, body(), "m", "chat"))
    for lim in (a, b):
        error = await refused(e, lim)
        in_flight = f"Current cost: 0 (+{worst * 3:.6f}".rstrip("0") + " reserved by requests in flight"
        assert error.type == "budget_exceeded" and in_flight in error.message
    await e.settle(held[0], 0.0, None)  # key A's request ends: key B may use its room
    await e.reserve(b, body(), "m", "chat")


async def test_a_budget_another_key_of_the_team_spent_refuses_even_a_free_request() -> None:
    """The spend one key settled within its slice counts at once for the other key: with the
    team's budget spent exactly, even a request that costs nothing is refused (in memory; with
    Redis, spend is counted there once this instance reports it, ``leases.py``)."""
    e = Enforcer(MemoryCounters(), None, lambda group: PRICES if group == "m" else (0.0, 0.0), clock=Clock())
    worst = e.worst_case(body(), "m", "chat")
    a, b = team_keys(max_budget=worst * 2)
    await e.settle(await e.reserve(a, body(), "m", "chat"), worst, None)
    await e.settle(await e.reserve(b, body(), "m", "chat"), worst, None)  # spent: the whole budget
    for lim in (a, b):
        with pytest.raises(ProxyError) as caught:
            await e.reserve(lim, body(), "free", "chat")  # a worst case of 0
        assert caught.value.type == "budget_exceeded"


async def test_a_cost_above_the_worst_case_counts_before_another_key_is_admitted(counters: Any) -> None:
    """A request that cost more than it reserved (a price that rose meanwhile, a provider's
    surcharge): its spend reaches the team's budget before the other key's slice admits more."""
    e = enforcer(counters, Clock())
    worst = e.worst_case(body(), "m", "chat")
    a, b = team_keys(max_budget=worst * 100)
    in_flight = await e.reserve(b, body(), "m", "chat")  # key B holds a slice of the budget
    await e.settle(await e.reserve(a, body(), "m", "chat"), worst * 99, None)
    # spent 99 worst cases, one in flight: a 101st does not fit
    error = await refused(e, b)
    assert error.type == "budget_exceeded"
    await e.settle(in_flight, 0.0, None)
    await e.settle(await e.reserve(b, body(), "m", "chat"), 0.0, None)  # 99 + 1: fits exactly


async def test_a_budget_window_resets_at_its_boundary_and_a_request_pays_in_the_window_it_started(
    counters: Any,
) -> None:
    clock = Clock()
    created = T0 - 100.0
    lim = limits(max_budget=1.0, window_s=3600.0, anchor=created)
    assert window_of(lim.scopes[0], T0) == (created, created + 3600.0)
    e = enforcer(counters, clock)
    spend = await e.reserve(lim, body(), "m", "chat")
    await e.settle(spend, 1.0, None)
    assert (await refused(e, lim)).type == "budget_exceeded"
    late = None
    clock.now = created + 3599.0  # still the first window
    assert "resets at" in (await refused(e, lim)).message
    clock.now = created + 3600.0  # the boundary: a new window, nothing spent in it
    late = await e.reserve(lim, body(), "m", "chat")
    # a request that started in the second window and ends in the third is charged to the second
    clock.now = created + 7200.0 + 5
    await e.settle(late, 1.0, None)
    await e.settle(await e.reserve(lim, body(), "m", "chat"), 0.5, None)
    clock.now = created + 3600.0 + 10
    assert (await refused(e, lim)).type == "budget_exceeded"


async def test_concurrent_reservations_never_overrun_the_budget(redis_server: RedisServer) -> None:
    """Two enforcers (two instances) on one Redis, 200 requests at once, each costing at most
    its reservation: the spend settled never passes the budget, and the budget is used."""
    import redis.asyncio as aioredis

    redis_server.flushall()
    clock = Clock()
    a = enforcer(RedisCounters(aioredis.Redis.from_url(redis_server.url), clock=clock), clock)
    b = enforcer(RedisCounters(aioredis.Redis.from_url(redis_server.url), clock=clock), clock)
    data = body(max_tokens=100)
    worst = a.worst_case(data, "m", "chat")
    budget = worst * 20.5
    lim = limits(max_budget=budget)
    spent = 0.0
    admitted = 0

    async def one(e: Enforcer) -> None:
        nonlocal spent, admitted
        try:
            res = await e.reserve(lim, data, "m", "chat")
        except ProxyError as error:
            assert error.type == "budget_exceeded"
            return
        admitted += 1
        await asyncio.sleep(0)  # let the others reserve while this one is in flight
        spent += worst
        await e.settle(res, worst, None)

    await asyncio.gather(*(one(a if i % 2 else b) for i in range(200)))
    assert admitted == 20 and spent <= budget
    for e in (a, b):  # settlements ride with the next admission, or go within 2 ms: send them now
        await e.counters.flush()  # type: ignore[attr-defined]
    held = await a.counters.client.hgetall("lmgate:limits:bud:key:tok:0")  # type: ignore[attr-defined]
    assert int(held[b"u"]) <= budget * NANO and int(held[b"H"]) == 0
    await a.close()
    await b.close()


async def test_one_batch_of_concurrent_admissions_takes_exactly_what_fits_across_two_instances(
    redis_server: RedisServer,
) -> None:
    """Two instances, 40 requests reaching the limits at the same moment: each instance sends
    its 20 in one script call (one round trip), and across both exactly the 7 whose worst case
    fits the budget are admitted, whichever batch Redis runs first."""
    import redis.asyncio as aioredis

    redis_server.flushall()
    clock = Clock()
    a = enforcer(RedisCounters(aioredis.Redis.from_url(redis_server.url), clock=clock), clock)
    b = enforcer(RedisCounters(aioredis.Redis.from_url(redis_server.url), clock=clock), clock)
    data = body(max_tokens=100)
    worst = a.worst_case(data, "m", "chat")
    lim = limits(max_budget=worst * 7.5, parallel=1000, rpm=1000)
    first = await a.reserve(lim, data, "m", "chat")  # starts the budget's window (seeded once)
    a.settle_now(first, 0.0, None)
    await a.counters.flush()  # type: ignore[attr-defined]
    before = {e: e.counters.batches for e in (a, b)}  # type: ignore[attr-defined]

    got = await asyncio.gather(
        *(e.reserve(lim, data, "m", "chat") for e in [a, b] * 20), return_exceptions=True
    )

    admitted = [r for r in got if not isinstance(r, BaseException)]
    refusals = [r for r in got if isinstance(r, BaseException)]
    assert len(admitted) == 7 and len(refusals) == 33
    assert all(isinstance(r, ProxyError) and r.type == "budget_exceeded" for r in refusals)
    assert [e.counters.batches - before[e] for e in (a, b)] == [1, 1]  # type: ignore[attr-defined]
    key = "lmgate:limits:bud:key:tok:0"
    held = await a.counters.client.hgetall(key)  # type: ignore[attr-defined]
    assert int(held[b"u"]) == 0 and int(held[b"H"]) == 7 * admitted[0].reserved
    par = "lmgate:limits:par:key:tok"
    # 7 slots in flight, and the parallel slices the instances hold beside them (limit 1000)
    assert int(await a.counters.client.hget(par, "H")) >= 7  # type: ignore[attr-defined]
    for e, res in zip([a, b] * 20, got, strict=True):  # each costs half its worst case
        if not isinstance(res, BaseException):  # settled by the instance that admitted it
            e.settle_now(res, worst / 2, None)
    for e in (a, b):
        await e.counters.flush()  # type: ignore[attr-defined]
    held = await a.counters.client.hgetall(key)  # type: ignore[attr-defined]
    assert int(held[b"H"]) == 0 and int(held[b"u"]) == 7 * round(worst / 2 * NANO)
    assert int(await a.counters.client.hget(par, "H")) == 0  # type: ignore[attr-defined]
    await a.close()
    await b.close()


async def test_the_limits_connection_authenticates_and_survives_a_script_flush_and_a_restart() -> None:
    """The limits' own connection (resp.py) logs in with the URL's password, uses its database,
    sends the script's body when Redis forgot it, and connects again after Redis restarted
    (the one admission caught by the restart is refused with a 503, never admitted blindly)."""
    import redis.asyncio as aioredis

    with RedisServer(password="s3cret pass") as server:
        counters = RedisCounters(aioredis.Redis.from_url(server.url.replace("/0", "/3")))
        e = enforcer(counters, Clock())
        lim = limits(rpm=100)

        async def admitted() -> None:
            e.settle_now(await e.reserve(lim, body(), "m", "chat"), 0.0, None)

        rpm = "lmgate:limits:rpm:key:tok:30000000"
        await admitted()
        assert counters.client.connection_pool.connection_kwargs["db"] == 3
        # read through redis-py on database 3: the lean connection selected it too
        await counters.flush()
        assert await counters.client.hget(rpm, "u") == b"1"
        server.command("SCRIPT", "FLUSH")
        await admitted()  # NOSCRIPT: the body is sent
        await counters.flush()
        assert await counters.client.hget(rpm, "u") == b"2"
        server.restart()
        outcomes = []
        for _ in range(3):
            try:
                await admitted()
                outcomes.append(200)
            except ProxyError as error:
                outcomes.append(error.status)
        assert outcomes in ([200, 200, 200], [503, 200, 200]), outcomes
        await counters.close()


def test_key_limits_read_the_key_team_and_user_rows() -> None:
    row = {
        "token": "t",
        "key_name": "sk-...abcd",
        "team_id": "team-1",
        "user_id": "u1",
        "rpm_limit": 5,
        "tpm_limit": None,
        "max_parallel_requests": None,
        "max_budget": None,
        "budget_duration": None,
        "created_at": 1.0,
        "team_rpm_limit": None,
        "team_tpm_limit": 1000,
        "team_max_budget": 10.0,
        "team_budget_duration": "30d",
        "team_created_at": 2.0,
        "user_max_budget": 3.0,
        "user_budget_duration": None,
        "user_created_at": 3.0,
    }
    lim = key_limits(row)
    assert [(s.kind, s.id) for s in lim.scopes] == [("key", "t"), ("team", "team-1"), ("user", "u1")]
    assert lim.scopes[1].window_s == 30 * 86400 and lim.scopes[1].anchor == 2.0 and lim.budgeted
    bare = key_limits({**row, "team_id": None, "user_id": None, "rpm_limit": None})
    assert bare.scopes == () and not bare.budgeted


# ---- leases: an instance admits against its slice of each counter, no round trip ----


async def _steady(e: Enforcer, lim: KeyLimits, n: int, cost: float) -> None:
    for _ in range(n):
        e.settle_now(await e.reserve(lim, body(), "m", "chat"), cost, {"total_tokens": 5})


async def test_a_steady_stream_is_admitted_against_the_instance_s_slices_without_round_trips(
    redis_server: RedisServer,
) -> None:
    """After its first request, a key's requests are admitted in memory: a batch per slice, not
    per request. Redis counts every slice as taken, so what the instances hold and
    what they used never passes a limit; ``close`` gives the slices back and reports the rest."""
    import redis.asyncio as aioredis

    redis_server.flushall()
    clock = Clock()
    a = enforcer(RedisCounters(aioredis.Redis.from_url(redis_server.url), clock=clock), clock)
    worst = a.worst_case(body(), "m", "chat")
    lim = limits(max_budget=worst * 1000, rpm=10_000, tpm=10**9, parallel=100)
    counters: RedisCounters = a.counters  # type: ignore[assignment]
    await _steady(a, lim, 1, worst / 2)  # the first: per request (and the budget window seeded)
    assert counters.local == 0
    await _steady(a, lim, 19, worst / 2)  # then slices (MIN_SLICE requests): few round trips
    assert counters.local >= 15
    await counters.sync()
    batches, local = counters.batches, counters.local
    await _steady(a, lim, 20, worst / 2)
    assert counters.local - local >= 18 and counters.batches - batches <= 2
    budget = await counters.client.hgetall("lmgate:limits:bud:key:tok:0")
    rpm = await counters.client.hgetall("lmgate:limits:rpm:key:tok:30000000")
    # the spent and the held together stay within the limit; a slice is at most a quarter of the room
    assert int(budget[b"u"]) + int(budget[b"H"]) <= worst * 1000 * NANO
    assert 0 < int(rpm[b"H"]) <= 10_000 // 4 and int(rpm[b"u"]) + int(rpm[b"H"]) >= 40
    await a.close()  # reports what was used, gives every slice back
    reader = aioredis.Redis.from_url(redis_server.url)
    budget = await reader.hgetall("lmgate:limits:bud:key:tok:0")
    assert int(budget[b"H"]) == 0 and int(budget[b"u"]) == 40 * round(worst / 2 * NANO)
    rpm = await reader.hgetall("lmgate:limits:rpm:key:tok:30000000")
    assert int(rpm[b"u"]) == 40 and int(rpm[b"H"]) == 0
    await reader.aclose()


async def test_a_slice_held_by_one_instance_is_room_the_other_cannot_use_until_it_is_given_back(
    redis_server: RedisServer,
) -> None:
    """The leases' trade-off, bounded: instance A's unused slice is refused to B (never
    overrun), and comes back at A's next sync once A's rate is gone."""
    import redis.asyncio as aioredis

    redis_server.flushall()
    clock = Clock()
    a = enforcer(RedisCounters(aioredis.Redis.from_url(redis_server.url), clock=clock), clock)
    b = enforcer(RedisCounters(aioredis.Redis.from_url(redis_server.url), clock=clock), clock)
    lim = limits(rpm=100)
    await _steady(a, lim, 20, 0.0)
    rpm_key = "lmgate:limits:rpm:key:tok:30000000"
    rpm = await a.counters.client.hgetall(rpm_key)  # type: ignore[attr-defined]
    # what A holds beyond what it used (a cold key's first batch brings back a slice: A may
    # have admitted all 20 in memory and reported none yet)
    held_by_a = int(rpm[b"H"]) - (20 - int(rpm.get(b"u", 0)))
    assert held_by_a > 0
    admitted = 0
    while admitted < 100:
        try:
            await _steady(b, lim, 1, 0.0)
        except ProxyError as error:
            assert error.status == 429
            break
        admitted += 1
    assert admitted == 100 - 20 - held_by_a  # A's unused slice is not B's
    for _ in range(3):  # A's rate is gone: its next syncs (past RATE_S) size its slice to nothing
        clock.now += 1.0
        await a.counters.sync()  # type: ignore[attr-defined]
    instance = a.counters.instance  # type: ignore[attr-defined]
    assert await a.counters.client.hget(rpm_key, f"h:{instance}") is None  # type: ignore[attr-defined]
    await _steady(b, lim, held_by_a, 0.0)  # given back: B may use it
    assert (await refused(b, lim)).status == 429  # and never more than the limit
    await b.counters.flush()  # type: ignore[attr-defined]
    rpm = await a.counters.client.hgetall(rpm_key)  # type: ignore[attr-defined]
    assert int(rpm[b"u"]) == 100 and int(rpm[b"H"]) == 0
    await a.close()
    await b.close()


async def test_the_hold_of_an_instance_that_died_expires_and_its_room_returns(
    redis_server: RedisServer,
) -> None:
    """Instance A holds both parallel slots (its requests in flight) and dies without giving
    them back: B is refused until A's hold expires (``LEASE_TTL_S`` after A's last sync), then
    admitted. A crash strands capacity for a bounded time, never for the whole window."""
    import redis.asyncio as aioredis

    from lmgate.proxy.leases import LEASE_TTL_S

    redis_server.flushall()
    clock = Clock()
    a = enforcer(RedisCounters(aioredis.Redis.from_url(redis_server.url), clock=clock), clock)
    b = enforcer(RedisCounters(aioredis.Redis.from_url(redis_server.url), clock=clock), clock)
    lim = limits(parallel=2)
    for _ in range(2):
        await a.reserve(lim, body(), "m", "chat")  # in flight on A; A dies holding them
    a_dies = a.counters._conn.close  # type: ignore[attr-defined]  # no more syncs from A
    a_dies()
    assert "requests in flight: 2" in (await refused(b, lim)).message
    clock.now += LEASE_TTL_S + 1  # the instances' clocks do not decide: Redis's does
    assert (await refused(b, lim)).status == 429  # A's hold still stands
    # A's hold expires LEASE_TTL_S after its last sync on Redis's clock; that time passing is
    # stood in for by moving its expiry to a second ago
    par = "lmgate:limits:par:key:tok"
    instance = a.counters.instance  # type: ignore[attr-defined]
    seconds, micros = await b.counters.client.time()  # type: ignore[attr-defined]
    expiry = float(await b.counters.client.hget(par, f"x:{instance}"))  # type: ignore[attr-defined]
    assert LEASE_TTL_S - 1 <= expiry - (seconds + micros / 1e6) <= LEASE_TTL_S + 1
    await b.counters.client.hset(par, f"x:{instance}", seconds - 1)  # type: ignore[attr-defined]
    held = await b.reserve(lim, body(), "m", "chat")  # swept: A's slots are free again
    b.settle_now(held, 0.0, None)
    await b.close()
    await a.close()  # (connects again only to report; its requests never ended)


# ---- leases under review: clocks that disagree, a request longer than the rate window ----


async def test_instances_whose_clocks_disagree_never_drop_each_other_s_live_holds(
    redis_server: RedisServer,
) -> None:
    """A hold's expiry is on Redis's clock: instance B, whose clock runs 6 s ahead of A's (more
    than half the TTL), must not take A's live hold for a dead one's and admit a third request
    beside A's two in flight under ``max_parallel_requests: 2``."""
    import redis.asyncio as aioredis

    from lmgate.proxy.leases import LEASE_TTL_S

    redis_server.flushall()
    clock_a = Clock()
    clock_b = Clock(clock_a.now + LEASE_TTL_S / 2 + 1)
    a = enforcer(RedisCounters(aioredis.Redis.from_url(redis_server.url), clock=clock_a), clock_a)
    b = enforcer(RedisCounters(aioredis.Redis.from_url(redis_server.url), clock=clock_b), clock_b)
    lim = limits(parallel=2)
    for _ in range(2):
        await a.reserve(lim, body(), "m", "chat")  # both slots in flight on A, which stays alive
    clock_a.now += LEASE_TTL_S / 2 - 0.5
    clock_b.now += LEASE_TTL_S / 2 - 0.5
    await a.counters.sync()  # type: ignore[attr-defined]  # A renews its hold
    # 5.4 s on, A's timer is not due to renew yet (less than half the TTL left: not so far)
    clock_a.now += 5.4
    clock_b.now += 5.4
    assert "requests in flight: 2" in (await refused(b, lim)).message
    await a.close()
    await b.close()


async def test_the_tokens_of_a_request_longer_than_the_rate_window_are_counted(
    redis_server: RedisServer,
) -> None:
    """A tpm lease holds nothing while its request runs (tokens are known at the end); the timer
    forgets a lease that holds nothing once its rate window (``RATE_S``) is over. The tokens of
    a request that outlasts it (most LLM calls) must still reach Redis, or tpm never binds."""
    import redis.asyncio as aioredis

    from lmgate.proxy.leases import RATE_S

    redis_server.flushall()
    clock = Clock(T0 + 1)
    a = enforcer(RedisCounters(aioredis.Redis.from_url(redis_server.url), clock=clock), clock)
    counters: RedisCounters = a.counters  # type: ignore[assignment]
    lim = limits(tpm=100)
    res = await a.reserve(lim, body(), "m", "chat")
    clock.now += RATE_S + 1  # a 3 s call: the timer ticks meanwhile (run here as it would run)
    counters._tick()
    a.settle_now(res, 0.0, {"total_tokens": 80})
    await counters.flush()
    tpm = await counters.client.hgetall("lmgate:limits:tpm:key:tok:30000000")
    assert int(tpm[b"u"]) == 80
    second = await a.reserve(lim, body(), "m", "chat")
    a.settle_now(second, 0.0, {"total_tokens": 80})
    assert (await refused(a, lim)).status == 429  # 160 tokens of 100 this minute
    await a.close()


def test_a_request_without_max_tokens_reserves_the_models_maximum_or_is_capped(counters: Any) -> None:
    """(input, output, max output tokens) prices: the known maximum is reserved and nothing is
    capped; an unknown one reserves DEFAULT_MAX_TOKENS, which the request is then sent with."""
    from lmgate.proxy.budgets import DEFAULT_MAX_TOKENS

    bare = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    prompt = len(b'[[{"role":"user","content":"Hi"}],null,null]') * 1e-6
    known = Enforcer(counters, None, lambda group: (*PRICES, 50_000))
    assert known.worst_case(bare, "m", "chat") == pytest.approx(prompt + 50_000 * 2e-6)
    assert known.output_cap(bare, "m", "chat") == 0
    unknown = Enforcer(counters, None, lambda group: (*PRICES, None))
    assert unknown.worst_case(bare, "m", "chat") == pytest.approx(prompt + DEFAULT_MAX_TOKENS * 2e-6)
    assert unknown.output_cap(bare, "m", "chat") == DEFAULT_MAX_TOKENS
    assert unknown.output_cap(body(100), "m", "chat") == 0  # it names its own: reserved as named
    assert unknown.output_cap(bare, "m", "embedding") == 0
    free = Enforcer(counters, None, lambda group: (1e-6, 0.0, None))
    assert free.output_cap(bare, "m", "chat") == 0  # output that costs nothing needs no cap
    completion = {"model": "m", "prompt": "Hi", "best_of": 2}
    expected = len(b'["Hi",null]') * 1e-6 + 2 * 50_000 * 2e-6
    assert known.worst_case(bare, "m", "chat", completion, "completions") == pytest.approx(expected)
    assert unknown.output_cap(bare, "m", "chat", completion, "completions") == DEFAULT_MAX_TOKENS
    assert unknown.output_cap(bare, "m", "chat", {**completion, "max_tokens": 9}, "completions") == 0


def test_a_groups_maximum_comes_from_the_price_table_or_model_info(tmp_path: Any) -> None:
    """The largest maximum over the deployments that may answer; unknown (None) when one that
    prices its output has none; a bad model_info.max_output_tokens fails at start."""
    from types import SimpleNamespace

    from lmgate.proxy.budgets import group_prices
    from lmgate.proxy.config import ConfigError, load_config

    path = tmp_path / "config.yaml"
    path.write_text(
        "model_list:\n"
        "  - {model_name: table, litellm_params: {model: openai/gpt-4o-mini, api_key: k}}\n"
        "  - {model_name: info, litellm_params: {model: openai/gpt-4o-mini, api_key: k},"
        " model_info: {max_output_tokens: 999}}\n"
        "  - {model_name: mixed, litellm_params: {model: openai/gpt-4o, api_key: k}}\n"
        "  - {model_name: mixed, litellm_params: {model: openai/house, api_key: k, api_base: 'http://h',"
        " input_cost_per_token: 1.0e-6, output_cost_per_token: 1.0e-6}}\n"
        "  - {model_name: free, litellm_params: {model: openai/house, api_key: k, api_base: 'http://h'}}\n"
    )
    prices = group_prices(SimpleNamespace(config=load_config(path)))
    assert prices("table")[2] == 16_384  # prices.json's gpt-4o-mini
    assert prices("info")[2] == 999  # a deployment's own maximum overrides the table's
    assert prices("mixed")[2] is None and prices("mixed")[1] == pytest.approx(1e-5)
    assert prices("free") == (0.0, 0.0, None)
    path.write_text(
        "model_list:\n"
        "  - {model_name: m, litellm_params: {model: openai/gpt-4o-mini, api_key: k},"
        " model_info: {max_output_tokens: lots}}\n"
    )
    with pytest.raises(ConfigError, match=r"model_info\.max_output_tokens.*positive whole number"):
        load_config(path)


def test_the_reservation_s_one_pass_gives_the_rule_s_worst_case_and_cap() -> None:
    """``reserve_now`` computes the worst case and the output cap in one pass (``_worst``): the
    same figures as ``worst_case`` and ``output_cap`` for every shape of request and group."""
    from lmgate.proxy.budgets import _nano_up

    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "Hi é"}, image, image, audio]}]
    requests = [
        body(),
        {"model": "m", "messages": [{"role": "user", "content": "Hi"}]},  # no max_tokens
        {**body(50), "max_completion_tokens": 80},  # both: the larger
        {**body(50), "max_completion_tokens": 20},
        {**body(), "max_tokens": True},  # not a number of tokens
        {**body(), "max_tokens": 0, "n": 3},
        {**body(7), "n": 4, "tools": [{"type": "function", "function": {"name": "f"}}]},
        {**body(7), "n": True},
        {"model": "m", "messages": messages, "max_tokens": 9},
        # the usual request's short path (an int max_tokens, nothing else) and its neighbours
        {**body(5), "n": None, "max_completion_tokens": None},
        {**body(5), "n": 1},
        {**body(5), "max_completion_tokens": 0},
        {**body(5), "max_tokens": 5.0},
        {"model": "m", "messages": [{"role": "user", "content": "it is", "id": "x"}], "max_tokens": 3},
        {"model": "m", "messages": [{"role": "user", "content": [image]}], "max_tokens": 3},
    ]
    groups = [PRICES, (*PRICES, 50_000), (*PRICES, None), (1e-6, 0.0, None), (0.0, 0.0, None)]
    for prices in groups:
        e = Enforcer(MemoryCounters(), None, lambda group, p=prices: p)  # type: ignore[misc]
        for data in requests:
            expected = (_nano_up(e.worst_case(data, "m", "chat")), e.output_cap(data, "m", "chat"))
            assert e._worst(data, "m", "chat", None, None) == expected, (prices, data)
        # the other paths: an embedding, a legacy completion as sent, a deployment's own length
        assert e._worst({"model": "m", "input": "abc"}, "m", "embedding", None, None) == (
            _nano_up(e.worst_case({"model": "m", "input": "abc"}, "m", "embedding")),
            0,
        )
        completion = {"model": "m", "prompt": ["a", "b"], "n": 2}
        assert e._worst(body(), "m", "chat", completion, "completions") == (
            _nano_up(e.worst_case(body(), "m", "chat", completion, "completions")),
            e.output_cap(body(), "m", "chat", completion, "completions"),
        )
    own = Enforcer(MemoryCounters(), None, lambda group: (*PRICES, 100, {"max_tokens": 500}))
    assert own._worst(body(10), "m", "chat", None, None) == (
        _nano_up(own.worst_case(body(10), "m", "chat")),
        0,
    )


async def test_a_reservation_is_admitted_at_once_in_memory_and_holds_nothing_until_redis_admits_it(
    counters: Any,
) -> None:
    """``reserve_now`` admits in memory (no coroutine) when the counters can: always in this
    process's memory, against this instance's slices with Redis. A reservation it could not
    admit holds nothing: a refusal from ``admit`` leaves every counter as it was."""
    e = enforcer(counters, Clock())
    lim = limits(rpm=1, parallel=5, max_budget=1.0)
    if isinstance(counters, MemoryCounters):
        first = e.reserve_now(lim, body(), "m", "chat")
        assert not first.admitted  # a budget window not started yet: admit seeds it
        await e.admit(first)
        assert first.admitted
        e.settle_now(first, 0.0, None)
        lim = limits(rpm=2, parallel=5, max_budget=1.0)  # a new key row: new checks
        second = e.reserve_now(lim, body(), "m", "chat")
        assert second.admitted  # in memory: taken at once
        e.settle_now(second, 0.0, None)
        third = e.reserve_now(lim, body(), "m", "chat")
        assert not third.admitted  # rpm 2 of 2 taken this minute (the first request's row)
        with pytest.raises(ProxyError):
            await e.admit(third)
        return
    first = e.reserve_now(lim, body(), "m", "chat")
    assert not first.admitted  # no slice yet: a round trip
    await e.admit(first)
    assert first.admitted
    e.settle_now(first, 0.0, None)
    second = e.reserve_now(lim, body(), "m", "chat")
    assert not second.admitted  # rpm 1: the minute's one request is used, no slice to admit from
    with pytest.raises(ProxyError) as caught:
        await e.admit(second)
    assert caught.value.status == 429
    await counters.flush()
    slot = await counters.client.hgetall("lmgate:limits:par:key:tok")
    assert int(slot.get(b"H", 0)) == 0  # the refused reservation holds no parallel slot


async def test_a_cold_key_s_first_round_trip_also_brings_back_its_slices(redis_server: RedisServer) -> None:
    """A key's first request goes to Redis (no slice yet); the lease operations of that same
    batch ask for a slice sized by it (``MIN_SLICE`` of its units), so the key's next requests
    are admitted in memory: one round trip for a cold key, not two. Redis still counts every
    slice as held: the limit holds."""
    import redis.asyncio as aioredis

    redis_server.flushall()
    clock = Clock()
    a = enforcer(RedisCounters(aioredis.Redis.from_url(redis_server.url), clock=clock), clock)
    counters: RedisCounters = a.counters  # type: ignore[assignment]
    lim = limits(rpm=1000, tpm=10**9, parallel=100)
    first = await a.reserve(lim, body(), "m", "chat")
    assert counters.batches == 1 and counters.local == 0
    second = a.reserve_now(lim, body(), "m", "chat")
    assert second.admitted and counters.batches == 1 and counters.local == 1
    a.settle_now(first, 0.0, {"total_tokens": 8})
    a.settle_now(second, 0.0, {"total_tokens": 8})
    rpm = await counters.client.hgetall("lmgate:limits:rpm:key:tok:30000000")
    assert 2 <= int(rpm[b"H"]) <= 1000 // 4  # the slice held (a quarter of the room at most)
    await a.close()


async def test_a_key_takes_the_part_of_the_slice_another_key_of_its_team_holds_without_a_round_trip(
    redis_server: RedisServer,
) -> None:
    """Each key's checks list takes a part of this instance's slices ahead of its requests; when
    another key of the team finds the slice empty, that part is given back to it in memory (no
    round trip), and Redis still holds the slice as this instance's: the limit holds."""
    import redis.asyncio as aioredis

    redis_server.flushall()
    clock = Clock()
    e = enforcer(RedisCounters(aioredis.Redis.from_url(redis_server.url), clock=clock), clock)
    counters: RedisCounters = e.counters  # type: ignore[assignment]
    a, b = team_keys(rpm=40)  # a slice of a quarter of the room: 10 requests
    await e.reserve(a, body(), "m", "chat")  # a round trip: the first request and the slice
    assert counters.batches == 1
    await e.reserve(a, body(), "m", "chat")  # key A's list takes what the slice has left
    await e.reserve(b, body(), "m", "chat")  # given back to key B: no round trip
    assert counters.batches == 1 and counters.local == 2
    await counters.flush()
    held = await counters.client.hgetall(f"lmgate:limits:rpm:team:team-1:{int(T0 // 60)}")
    assert int(held[b"u"]) == 3 and int(held[b"H"]) == 0  # three used, the slice given back
    await e.close()
