"""lmgate.Router: strategies, cooldowns, fallbacks and exactly one terminal event per request.

Deployments talk to the fake provider over real HTTP (or answer with mock_response where only
the choice matters); cooldowns run on an injected clock, retries on a RetryPolicy whose sleeps
return at once, so no test sleeps.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from fakes import FakeProvider, Reply

import lmgate
from lmgate import exceptions as exc
from lmgate._retry import RetryPolicy
from lmgate.testing import CapturingLogger

HI = [{"role": "user", "content": "Hi"}]
KEY = "sk-router-test-0123456789"
TERMINAL = ("log_success_event", "log_failure_event", "async_log_success_event", "async_log_failure_event")


async def _no_wait(_: float) -> None:
    return None


NO_WAIT = RetryPolicy(sleep=lambda _: None, async_sleep=_no_wait)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def deployment(fake: FakeProvider, name: str, model: str, id: str, **extra: Any) -> dict[str, Any]:
    params = {"model": f"openai/{model}", "api_base": f"{fake.base_url}/v1", "api_key": KEY, **extra}
    return {"model_name": name, "litellm_params": params, "model_info": {"id": id}}


def mock(name: str, id: str, answer: str = "hi", **extra: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "litellm_params": {"model": "openai/gpt-4o-mini", "mock_response": answer, **extra},
        "model_info": {"id": id},
    }


def served(fake: FakeProvider) -> list[str]:
    return [r.json["model"] for r in fake.requests]


def terminal(capture: CapturingLogger) -> list[tuple[str, dict[str, Any]]]:
    lmgate.flush_callbacks(10)
    return [(e.hook, e.kwargs["standard_logging_object"]) for e in capture.of(*TERMINAL)]


def router(model_list: list[dict[str, Any]], **kw: Any) -> lmgate.Router:
    kw.setdefault("retry_policy", NO_WAIT)
    return lmgate.Router(model_list=model_list, **kw)


# ---------------------------------------------------------------- strategies


def test_simple_shuffle_follows_weights() -> None:
    r = router([mock("g", "a", weight=9), mock("g", "b", weight=1)], rng=random.Random(7))
    picks = [r.completion(model="g", messages=HI)._hidden_params["model_id"] for _ in range(300)]
    assert 230 < picks.count("a") < 290  # about 9 in 10
    r = router([mock("g", "a", rpm=0), mock("g", "b", rpm=5)], rng=random.Random(7))
    assert {r.completion(model="g", messages=HI)._hidden_params["model_id"] for _ in range(20)} == {"b"}


def test_round_robin_takes_each_in_turn() -> None:
    r = router([mock("g", "a"), mock("g", "b"), mock("g", "c")], routing_strategy="round-robin")
    assert [r.completion(model="g", messages=HI)._hidden_params["model_id"] for _ in range(6)] == list(
        "abcabc"
    )


async def test_least_busy_avoids_deployments_in_flight() -> None:
    r = router([mock("g", "a"), mock("g", "b")], routing_strategy="least-busy")
    first = await r.route_async("chat", "g", {"messages": HI}, hold=True)  # still "in flight"
    second = await r.route_async("chat", "g", {"messages": HI}, hold=True)
    assert {first.deployment.model_id, second.deployment.model_id} == {"a", "b"}
    first.release()
    third = await r.route_async("chat", "g", {"messages": HI})
    assert third.deployment.model_id == first.deployment.model_id
    second.release()
    assert r.in_flight.counts == {"a": 0, "b": 0}


def test_latency_based_prefers_the_fastest_measured() -> None:
    ticks = iter([0.0, 0.9, 10.0, 10.1] + [20.0 + i for i in range(20)])  # a took 0.9 s, b 0.1 s
    r = router(
        [mock("g", "a"), mock("g", "b")], routing_strategy="latency-based-routing", timer=lambda: next(ticks)
    )
    first = r.completion(model="g", messages=HI)._hidden_params["model_id"]
    second = r.completion(model="g", messages=HI)._hidden_params["model_id"]
    assert (first, second) == ("a", "b")  # each measured once, unmeasured first
    assert r.completion(model="g", messages=HI)._hidden_params["model_id"] == "b"


def test_usage_based_spreads_tokens_and_respects_rpm(fake_provider: FakeProvider) -> None:
    capture = CapturingLogger()
    clock = Clock()
    r = router(
        [
            deployment(fake_provider, "g", "model-a", "a", rpm=1),
            deployment(fake_provider, "g", "model-b", "b", rpm=1),
        ],
        routing_strategy="usage-based-routing",
        clock=clock,
        callbacks=[capture],
    )
    r.completion(model="g", messages=HI)
    r.completion(model="g", messages=HI)
    assert served(fake_provider) == ["model-a", "model-b"]  # a has 12 tokens this minute, b none
    with pytest.raises(exc.RouterRateLimitError, match="rpm/tpm limit"):
        r.completion(model="g", messages=HI)
    assert len(fake_provider.requests) == 2  # refused without a call ...
    events = terminal(capture)
    assert [h for h, _ in events] == ["log_success_event"] * 2 + ["log_failure_event"]  # ... but logged once
    assert events[2][1]["model_group"] == "g"
    clock.now += 60  # a new minute
    r.completion(model="g", messages=HI)
    assert len(fake_provider.requests) == 3


# ---------------------------------------------------------------- retries and cooldowns


def test_failed_deployment_is_retried_on_another_with_one_terminal_event(fake_provider: FakeProvider) -> None:
    fake_provider.enqueue(Reply(status=500))
    capture = CapturingLogger()
    r = router(
        [deployment(fake_provider, "g", "model-a", "a"), deployment(fake_provider, "g", "model-b", "b")],
        routing_strategy="round-robin",
        callbacks=[capture],
    )
    response = r.completion(model="g", messages=HI)
    assert response.choices[0].message.content
    assert served(fake_provider) == ["model-a", "model-b"]
    [(hook, payload)] = terminal(capture)
    assert hook == "log_success_event"
    assert (payload["model_id"], payload["model_group"]) == ("b", "g")
    assert payload["api_base"].startswith(fake_provider.base_url)
    assert payload["cost_breakdown"]["failed_attempts_cost"] == 0.0  # an HTTP 500 bills nothing
    assert KEY not in str(payload)


def test_cooldown_after_allowed_fails_and_recovery(fake_provider: FakeProvider) -> None:
    clock = Clock()
    r = router(
        [deployment(fake_provider, "g", "model-a", "a"), deployment(fake_provider, "g", "model-b", "b")],
        routing_strategy="round-robin",
        allowed_fails=1,
        cooldown_time=30,
        clock=clock,
    )
    fake_provider.enqueue(Reply(status=503, match=None))
    r.completion(model="g", messages=HI)  # a fails once (allowed), b answers
    assert r.cooldowns.cooling(["a", "b"]) == set()
    fake_provider.enqueue(Reply(status=503))
    r.completion(model="g", messages=HI)  # round robin: a again, fails a second time -> cooldown
    assert r.cooldowns.cooling(["a", "b"]) == {"a"}
    before = len(fake_provider.requests)
    for _ in range(3):
        r.completion(model="g", messages=HI)
    assert served(fake_provider)[before:] == ["model-b"] * 3  # a sits out
    clock.now += 31  # cooldown over
    assert r.cooldowns.cooling(["a", "b"]) == set()
    served_after = {r.completion(model="g", messages=HI)._hidden_params["model_id"] for _ in range(2)}
    assert served_after == {"a", "b"}


def test_every_deployment_cooling_is_a_rate_limit_error_logged_once(fake_provider: FakeProvider) -> None:
    capture = CapturingLogger()
    clock = Clock()
    r = router(
        [deployment(fake_provider, "g", "model-a", "a"), deployment(fake_provider, "g", "model-b", "b")],
        allowed_fails=0,
        cooldown_time=10,
        clock=clock,
        callbacks=[capture],
    )
    fake_provider.enqueue(Reply(status=500), Reply(status=500))
    with pytest.raises(exc.InternalServerError):
        r.completion(model="g", messages=HI)
    with pytest.raises(exc.RouterRateLimitError) as info:
        r.completion(model="g", messages=HI)
    assert info.value.retry_after == 10
    assert len(fake_provider.requests) == 2
    assert [h for h, _ in terminal(capture)] == ["log_failure_event", "log_failure_event"]
    clock.now += 10
    r.completion(model="g", messages=HI)


def test_a_lone_deployment_never_sits_out(fake_provider: FakeProvider) -> None:
    """As the reference: cooling the only deployment of a group would only turn errors into 429s."""
    r = router([deployment(fake_provider, "g", "model-a", "a")], allowed_fails=0)
    fake_provider.enqueue(Reply(status=500), Reply(status=500))
    for _ in range(2):
        with pytest.raises(exc.InternalServerError):
            r.completion(model="g", messages=HI)
    assert r.cooldowns.cooling(["a"]) == set()
    r.completion(model="g", messages=HI)


def test_a_request_error_does_not_cool_a_deployment(fake_provider: FakeProvider) -> None:
    r = router(
        [deployment(fake_provider, "g", "model-a", "a"), deployment(fake_provider, "g", "model-b", "b")],
        allowed_fails=0,
    )
    fake_provider.enqueue(Reply(status=400))
    with pytest.raises(exc.BadRequestError):
        r.completion(model="g", messages=HI)
    assert r.cooldowns.cooling(["a", "b"]) == set()


# ---------------------------------------------------------------- fallbacks


@pytest.mark.parametrize(
    ("failure", "kind", "error"),
    [
        (Reply(status=500), "fallbacks", exc.InternalServerError),
        (
            Reply(
                status=400, error_code="context_length_exceeded", error_message="maximum context length is 8"
            ),
            "context_window_fallbacks",
            exc.ContextWindowExceededError,
        ),
        (
            Reply(
                status=400,
                error_code="content_policy_violation",
                error_message="blocked by the content filter",
            ),
            "content_policy_fallbacks",
            exc.ContentPolicyViolationError,
        ),
    ],
)
def test_each_kind_of_fallback(fake_provider: FakeProvider, failure: Reply, kind: str, error: type) -> None:
    model_list = [
        deployment(fake_provider, "small", "model-small", "s"),
        deployment(fake_provider, "big", "model-big", "b"),
        deployment(fake_provider, "other", "model-other", "o"),
    ]
    capture = CapturingLogger()
    r = router(model_list, callbacks=[capture], **{kind: [{"small": ["big"]}]})
    fake_provider.enqueue(failure)
    assert r.completion(model="small", messages=HI)._hidden_params["model_id"] == "b"
    assert served(fake_provider) == ["model-small", "model-big"]
    [(hook, payload)] = terminal(capture)
    assert (hook, payload["model_group"], payload["model_id"]) == ("log_success_event", "big", "b")
    # without the fallback the error reaches the caller
    bare = router(model_list)
    fake_provider.enqueue(failure)
    with pytest.raises(error):
        bare.completion(model="small", messages=HI)


def test_specific_fallbacks_win_and_a_failed_fallback_logs_once(fake_provider: FakeProvider) -> None:
    model_list = [
        deployment(fake_provider, "small", "model-small", "s"),
        deployment(fake_provider, "big", "model-big", "b"),
        deployment(fake_provider, "other", "model-other", "o"),
    ]
    capture = CapturingLogger()
    r = router(
        model_list,
        callbacks=[capture],
        fallbacks=[{"small": ["other"]}],
        context_window_fallbacks=[{"small": ["big"]}],
    )
    fake_provider.enqueue(Reply(status=400, error_code="context_length_exceeded"), Reply(status=503))
    with pytest.raises(exc.ServiceUnavailableError):
        r.completion(model="small", messages=HI)
    assert served(fake_provider) == ["model-small", "model-big"]
    [(hook, payload)] = terminal(capture)
    assert (hook, payload["model_id"]) == ("log_failure_event", "b")
    assert payload["cost_breakdown"] == {"failed_attempts_cost": 0.0}


def test_fallbacks_name_known_groups() -> None:
    with pytest.raises(exc.ConfigError, match="'nope'"):
        router([mock("g", "a")], fallbacks=[{"g": ["nope"]}])
    with pytest.raises(exc.ConfigError, match="routing_strategy"):
        router([mock("g", "a")], routing_strategy="fastest")


# ---------------------------------------------------------------- one terminal event: async, streams


async def test_async_retry_and_fallback_end_in_one_terminal_event(fake_provider: FakeProvider) -> None:
    capture = CapturingLogger()
    r = router(
        [
            deployment(fake_provider, "g", "model-a", "a"),
            deployment(fake_provider, "g", "model-b", "b"),
            deployment(fake_provider, "h", "model-h", "h"),
        ],
        routing_strategy="round-robin",
        fallbacks=[{"g": ["h"]}],
        callbacks=[capture],
    )
    fake_provider.enqueue(Reply(status=500), Reply(status=429))
    response = await r.acompletion(model="g", messages=HI)
    assert served(fake_provider) == ["model-a", "model-b", "model-h"]
    assert response._hidden_params["model_id"] == "h"
    assert await lmgate.aflush_callbacks(10)
    events = capture.of(*TERMINAL)
    assert [e.hook for e in events] == ["async_log_success_event"]
    assert events[0].kwargs["standard_logging_object"]["model_group"] == "h"


async def test_stream_fails_over_before_the_first_chunk_only(fake_provider: FakeProvider) -> None:
    capture = CapturingLogger()
    r = router(
        [deployment(fake_provider, "g", "model-a", "a"), deployment(fake_provider, "g", "model-b", "b")],
        routing_strategy="round-robin",
        callbacks=[capture],
    )
    fake_provider.enqueue(Reply(status=500))
    stream = await r.acompletion(model="g", messages=HI, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text and served(fake_provider) == ["model-a", "model-b"]
    assert await lmgate.aflush_callbacks(10)
    assert [(e.hook, e.kwargs["standard_logging_object"]["model_id"]) for e in capture.of(*TERMINAL)] == [
        ("async_log_success_event", "b")
    ]
    # a stream broken after its first chunk is the caller's: no failover, one failure event
    capture.clear()
    fake_provider.enqueue(Reply(cut_after_chunks=1))
    stream = await r.acompletion(model="g", messages=HI, stream=True)
    with pytest.raises(exc.APIConnectionError):
        async for _ in stream:
            pass
    assert len(fake_provider.requests) == 3
    assert await lmgate.aflush_callbacks(10)
    assert [e.hook for e in capture.of(*TERMINAL)] == ["async_log_failure_event"]


def test_sync_stream_and_embedding(fake_provider: FakeProvider) -> None:
    capture = CapturingLogger()
    r = router(
        [deployment(fake_provider, "g", "model-a", "a"), deployment(fake_provider, "g", "model-b", "b")],
        routing_strategy="round-robin",
        callbacks=[capture],
    )
    fake_provider.enqueue(Reply(status=502))
    chunks = list(r.completion(model="g", messages=HI, stream=True))
    assert chunks
    fake_provider.enqueue(Reply(status=502, match="/embeddings"))
    assert r.embedding(model="g", input=["x"]).data
    assert [h for h, _ in terminal(capture)] == ["log_success_event", "log_success_event"]


# ---------------------------------------------------------------- settings


def test_two_routers_with_different_callbacks_never_see_each_others_calls() -> None:
    one, two, module_level = CapturingLogger(), CapturingLogger(), CapturingLogger()
    lmgate.callbacks = [module_level]
    r1 = router([mock("g", "a", "from one")], callbacks=[one])
    r2 = router([mock("g", "b", "from two")], callbacks=[two])
    r1.completion(model="g", messages=HI)
    r2.completion(model="g", messages=HI)
    r2.completion(model="g", messages=HI)
    assert [p["model_id"] for _, p in terminal(one)] == ["a"]
    assert [p["model_id"] for _, p in terminal(two)] == ["b", "b"]
    # the module's callbacks hear every call, as in the reference; a Router's own only its calls
    assert [p["model_id"] for _, p in terminal(module_level)] == ["a", "b", "b"]
    plain = router([mock("g", "c")])
    plain.completion(model="g", messages=HI)
    assert [p["model_id"] for _, p in terminal(module_level)] == ["a", "b", "b", "c"]


def test_unknown_group_is_a_clear_error_logged_once() -> None:
    capture = CapturingLogger()
    r = router([mock("g", "a")], callbacks=[capture])
    with pytest.raises(exc.BadRequestError, match="not a model group of this Router; groups: g"):
        r.completion(model="nope", messages=HI)
    assert [h for h, _ in terminal(capture)] == ["log_failure_event"]


# ---------------------------------------------------------------- counters shared through Redis


def test_usage_and_latency_are_shared_through_redis(redis_server: Any, fake_provider: FakeProvider) -> None:
    redis_server.flushall()
    clock = Clock()
    model_list = [
        deployment(fake_provider, "g", "model-a", "a", rpm=1),
        deployment(fake_provider, "g", "model-b", "b", rpm=1),
    ]
    first = router(
        model_list, routing_strategy="usage-based-routing", redis_url=redis_server.url, clock=clock
    )
    second = router(
        model_list, routing_strategy="usage-based-routing", redis_url=redis_server.url, clock=clock
    )
    first.completion(model="g", messages=HI)
    second.completion(model="g", messages=HI)  # sees a's request: takes b
    assert served(fake_provider) == ["model-a", "model-b"]
    with pytest.raises(exc.RouterRateLimitError):
        first.completion(model="g", messages=HI)
    # a process with its own counters would not know
    assert router(model_list, routing_strategy="usage-based-routing", clock=clock).completion(
        model="g", messages=HI
    )
    fast = router(model_list, routing_strategy="latency-based-routing", redis_url=redis_server.url)
    fast.counters.add_latency("a", 2.0)
    fast.counters.add_latency("b", 0.2)
    other = router(model_list, routing_strategy="latency-based-routing", redis_url=redis_server.url)
    assert other.completion(model="g", messages=HI)._hidden_params["model_id"] == "b"


def test_a_redis_that_does_not_answer_fails_no_request(fake_provider: FakeProvider) -> None:
    """Counters in a Redis that is gone: requests still route (as if nothing were measured), failures are counted."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    capture = CapturingLogger()
    model_list = [
        deployment(fake_provider, "g", "model-a", "a", rpm=1),
        deployment(fake_provider, "g", "model-b", "b"),
    ]
    r = router(
        model_list,
        routing_strategy="usage-based-routing",
        redis_url=f"redis://127.0.0.1:{port}",
        callbacks=[capture],
    )
    for _ in range(2):
        r.completion(model="g", messages=HI)
    assert r.counters.errors == 4  # a read before and a write after each call
    assert [h for h, _ in terminal(capture)] == ["log_success_event"] * 2


def test_order_sets_priorities(fake_provider: FakeProvider) -> None:
    """The lowest order takes every request; the next one serves a retry when it fails."""
    r = router(
        [
            deployment(fake_provider, "g", "model-b", "b", order=2),
            deployment(fake_provider, "g", "model-a", "a", order=1),
            deployment(fake_provider, "g", "model-c", "c"),
        ]
    )
    for _ in range(3):
        r.completion(model="g", messages=HI)
    assert served(fake_provider) == ["model-a"] * 3
    fake_provider.enqueue(Reply(status=500))
    assert r.completion(model="g", messages=HI)._hidden_params["model_id"] == "b"


# ---------------------------------------------------------------- a lone deployment's shortcut


@pytest.mark.parametrize("reply", [Reply(), Reply(status=500), Reply(status=400)])
async def test_a_lone_deployment_is_routed_as_the_decisions_route_it(
    fake_provider: FakeProvider, reply: Reply
) -> None:
    """``route_async`` makes a lone deployment's request without the decision generators (issue
    18); ``route_sync`` always takes them. Both answer, fail, retry, count in flight and log alike."""
    outcomes = []
    for way in ("sync", "async"):
        fake_provider.reset()
        fake_provider.enqueue(reply, reply)  # the call's own retry meets the same reply
        capture = CapturingLogger()
        r = router([deployment(fake_provider, "g", "model-a", "a")], callbacks=[capture], num_retries=1)
        assert "g" in r._lone
        seen: list[str] = []
        note = seen.append
        try:
            if way == "sync":
                routed = r.route_sync(
                    "chat", "g", {"messages": HI}, hold=True, on_attempt=lambda d, note=note: note(d.model_id)
                )
            else:
                routed = await r.route_async(
                    "chat", "g", {"messages": HI}, hold=True, on_attempt=lambda d, note=note: note(d.model_id)
                )
        except exc.LmgateError as error:
            answer: Any = (type(error), error.status_code)
        else:
            assert r.in_flight.counts == {"a": 1}  # held until released
            routed.release()
            answer = (routed.deployment.model_id, routed.result.choices[0].message.content)
        assert r.in_flight.counts == {"a": 0}
        events = [
            (hook.removeprefix("async_"), p["status"], p["model_id"], p["model_group"], p["response_cost"])
            for hook, p in terminal(capture)
        ]
        outcomes.append((answer, seen, served(fake_provider), events))
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[0][3]) == 1  # one terminal event


def test_a_fallback_keeps_a_lone_deployment_on_the_decisions() -> None:
    r = router([mock("g", "a"), mock("h", "b"), mock("i", "c")], fallbacks=[{"g": ["h"]}])
    assert set(r._lone) == {"h", "i"}
    assert not router([mock("g", "a"), mock("h", "b")], fallbacks=[{"*": ["h"]}])._lone
    assert not router([mock("g", "a")], routing_strategy="usage-based-routing")._lone
    assert not router([mock("g", "a"), mock("g", "b")])._lone


@pytest.mark.parametrize("members", [1, 2])
async def test_a_routed_call_cancelled_mid_request_still_gets_its_one_failure_event(
    fake_provider: FakeProvider, members: int
) -> None:
    """A caller that gives up on a routed call (``asyncio.wait_for``, a moderation hook's
    refusal cancelling it, a server going down) cancels the call under way: its failure event,
    held back for the Router, is still emitted once, and the deployment is no longer in flight."""
    import asyncio
    import threading

    gate = threading.Event()
    fake_provider.enqueue(Reply(delay_event=gate))
    capture = CapturingLogger()
    r = router(
        [deployment(fake_provider, "g", f"model-{i}", f"d{i}") for i in range(members)], callbacks=[capture]
    )
    task = asyncio.ensure_future(r.acompletion(model="g", messages=HI))
    try:
        assert await asyncio.to_thread(fake_provider.wait_for_requests, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        gate.set()
    assert [hook for hook, _ in terminal(capture)] == ["async_log_failure_event"]
    assert set(r.in_flight.counts.values()) == {0}
