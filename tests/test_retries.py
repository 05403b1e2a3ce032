"""Retries: which errors are retried, how long the policy waits (in virtual time), and what the callbacks see per attempt."""

from __future__ import annotations

import random
import socket

import pytest
from fakes import DEFAULT_TEXT, Reply
from helpers import MODE_IDS, MODES, call

import lmgate
from lmgate.testing import CapturingLogger

KEY = "sk-test-retry-0123456789abcdef"


@pytest.fixture
def fake_provider(fake_provider_session):
    """The session's fake provider, reset: a fresh server per test would cost its 50 ms shutdown poll."""
    fake_provider_session.reset()
    return fake_provider_session


class Sleeps:
    """Records requested delays instead of sleeping: the sync and async seams of RetryPolicy."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.delays.append(seconds)

    def policy(self, **kw) -> lmgate.RetryPolicy:
        return lmgate.RetryPolicy(sleep=self.sleep, async_sleep=self.async_sleep, rng=random.Random(7), **kw)


def openai(fp, **kw):
    return {"api_base": fp.base_url + "/v1", "api_key": KEY, **kw}


def text_of(result, stream):
    if stream:
        return "".join(c.choices[0].delta.content or "" for c in result)
    return result.choices[0].message.content


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_429_then_200_with_retry_after_zero(fake_provider, mode, stream):
    """num_retries=2: a 429 with Retry-After: 0 is retried at once; pre/post fire per attempt, one success event."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    sleeps = Sleeps()
    fake_provider.enqueue(Reply(status=429, headers={"Retry-After": "0"}), Reply())
    result = call(mode, stream, num_retries=2, retry_policy=sleeps.policy(), **openai(fake_provider))
    assert text_of(result, stream) == DEFAULT_TEXT
    assert len(fake_provider.requests) == 2
    assert sleeps.delays == [0.0]
    lmgate.flush_callbacks(10)
    p = "async_" if mode == "async" else ""
    hooks = [h for h in capture.hooks() if "stream_event" not in h]
    assert hooks == [
        f"{p}log_pre_api_call",
        "log_post_api_call",
        f"{p}log_pre_api_call",
        "log_post_api_call",
        f"{p}log_success_event",
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "7"}, 7.0), ({"retry-after-ms": "1500"}, 1.5), ({"Retry-After": "600"}, 60.0)],
)
def test_delay_honours_retry_after(fake_provider, mode, headers, expected):
    """The wait is the server's Retry-After (or retry-after-ms), capped at max_retry_after_s, through the injected sleep."""
    sleeps = Sleeps()
    fake_provider.enqueue(Reply(status=429, headers=headers), Reply())
    call(mode, False, num_retries=1, retry_policy=sleeps.policy(), **openai(fake_provider))
    assert sleeps.delays == [expected]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_module_level_retry_settings(fake_provider, monkeypatch, mode):
    """lmgate.num_retries and lmgate.retry_policy apply when the call names neither."""
    sleeps = Sleeps()
    monkeypatch.setattr(lmgate, "num_retries", 1)
    monkeypatch.setattr(lmgate, "retry_policy", sleeps.policy())
    fake_provider.enqueue(Reply(status=503), Reply())
    assert text_of(call(mode, False, **openai(fake_provider)), False) == DEFAULT_TEXT
    assert len(sleeps.delays) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("status", [408, 500, 502, 503, 529])
def test_server_errors_are_retried_with_jittered_backoff(fake_provider, mode, status):
    """408 and 5xx are retried; without Retry-After the wait is jittered within the exponential ceiling."""
    sleeps = Sleeps()
    fake_provider.enqueue(Reply(status=status), Reply(status=status), Reply())
    result = call(
        mode, False, num_retries=2, retry_policy=sleeps.policy(base_delay_s=0.5), **openai(fake_provider)
    )
    assert result.choices[0].message.content == DEFAULT_TEXT
    assert len(fake_provider.requests) == 3
    assert len(sleeps.delays) == 2
    assert 0.0 <= sleeps.delays[0] <= 0.5 and 0.0 <= sleeps.delays[1] <= 1.0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_broken_body_is_retried(fake_provider, mode):
    """A connection that breaks before the body is complete is retried."""
    sleeps = Sleeps()
    fake_provider.enqueue(Reply(cut_after_chunks=0), Reply())
    result = call(mode, False, num_retries=1, retry_policy=sleeps.policy(), **openai(fake_provider))
    assert result.choices[0].message.content == DEFAULT_TEXT
    assert len(fake_provider.requests) == 2 and len(sleeps.delays) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_connection_refused_is_retried_then_raised(mode):
    """A refused connection is retried num_retries times, then APIConnectionError with one failure event."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sleeps = Sleeps()
    with pytest.raises(lmgate.APIConnectionError):
        call(
            mode,
            False,
            num_retries=2,
            retry_policy=sleeps.policy(),
            api_base=f"http://127.0.0.1:{port}/v1",
            api_key=KEY,
        )
    assert len(sleeps.delays) == 2
    lmgate.flush_callbacks(10)
    p = "async_" if mode == "async" else ""
    assert capture.hooks().count(f"{p}log_pre_api_call") == 3
    assert [h for h in capture.hooks() if "failure" in h or "success" in h] == [f"{p}log_failure_event"]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_are_not_retried(fake_provider, mode, status):
    """400, 401, 403, 404 and 422 are raised at once, however many retries are allowed."""
    sleeps = Sleeps()
    fake_provider.enqueue(Reply(status=status), Reply())
    with pytest.raises(lmgate.APIError) as info:
        call(mode, False, num_retries=3, retry_policy=sleeps.policy(), **openai(fake_provider))
    assert info.value.status_code == status
    assert len(fake_provider.requests) == 1 and sleeps.delays == []


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_exhausted_retries_raise_the_last_error_with_one_failure_event(fake_provider, mode, stream):
    """When every attempt fails, the last error is raised and the callbacks get one failure event after 3 pre/post pairs."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    sleeps = Sleeps()
    fake_provider.enqueue(*[Reply(status=429, headers={"Retry-After": "1"})] * 3)
    with pytest.raises(lmgate.RateLimitError) as info:
        call(mode, stream, num_retries=2, retry_policy=sleeps.policy(), **openai(fake_provider))
    assert info.value.retry_after == 1.0
    assert sleeps.delays == [1.0, 1.0]
    assert len(fake_provider.requests) == 3
    lmgate.flush_callbacks(10)
    p = "async_" if mode == "async" else ""
    assert capture.hooks() == [f"{p}log_pre_api_call", "log_post_api_call"] * 3 + [f"{p}log_failure_event"]


def test_no_retries_by_default(fake_provider):
    """Without num_retries a 429 is raised after one request."""
    fake_provider.enqueue(Reply(status=429, headers={"Retry-After": "0"}), Reply())
    with pytest.raises(lmgate.RateLimitError):
        lmgate.completion(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], **openai(fake_provider)
        )
    assert len(fake_provider.requests) == 1


def test_policy_backoff_is_full_jitter_under_an_exponential_ceiling():
    """delay_s draws from [0, min(max_delay_s, base_delay_s * 2**attempt)] and clamps Retry-After."""
    policy = lmgate.RetryPolicy(
        base_delay_s=1.0, max_delay_s=5.0, max_retry_after_s=30.0, rng=random.Random(3)
    )
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (10, 5.0)]:
        draws = [policy.delay_s(attempt) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # the whole range is used, not a fixed value
    assert policy.delay_s(0, 12.5) == 12.5
    assert policy.delay_s(0, 99.0) == 30.0
    assert policy.delay_s(0, -3.0) == 0.0


def test_policy_retryable_classes():
    """Connection errors, timeouts, 408, 409, 429 and 5xx are retryable; other 4xx are not."""
    policy = lmgate.RetryPolicy()
    assert policy.is_retryable(lmgate.APIConnectionError("x"))
    assert policy.is_retryable(lmgate.Timeout("x"))
    for status in (408, 409, 429, 500, 503, 529):
        assert policy.is_retryable(lmgate.APIError("x", status_code=status)), status
    for status in (400, 401, 403, 404, 422):
        assert not policy.is_retryable(lmgate.APIError("x", status_code=status)), status
    assert not policy.is_retryable(ValueError("x"))
