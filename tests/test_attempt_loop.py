"""One attempt loop (issue 12 point 6): mock_response answers through the loop real calls take."""

from __future__ import annotations

import pytest
from helpers import MODE_IDS, MODES, call, flush
from test_retries import Sleeps

import lmgate
from lmgate.testing import CapturingLogger


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_a_mock_error_is_retried_like_a_providers(mode, stream):
    """A mock 429 with num_retries=2: three attempts (pre and post each), waits from the policy, one failure."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    sleeps = Sleeps()
    with pytest.raises(lmgate.RateLimitError):
        call(mode, stream, mock_response="lmgate.RateLimitError", num_retries=2, retry_policy=sleeps.policy())
    flush()
    prefix = "async_" if mode == "async" else ""
    hooks = capture.hooks()
    assert hooks.count(f"{prefix}log_pre_api_call") == 3
    assert hooks.count("log_post_api_call") == 3
    assert hooks[-1] == f"{prefix}log_failure_event"
    assert len(sleeps.delays) == 2
    assert capture.events[-1].kwargs["litellm_params"] is not None


def test_a_mock_answer_is_not_retried_and_an_exception_instance_is_mapped_like_a_provider_error():
    """As in the reference, an exception instance as mock_response becomes the tree's error (a
    500 unless it carries a status_code), and so it is retried like a provider's 500."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    sleeps = Sleeps()
    with pytest.raises(lmgate.InternalServerError, match="boom"):
        call("sync", False, mock_response=ValueError("boom"), num_retries=3, retry_policy=sleeps.policy())
    assert len(sleeps.delays) == 3
    sleeps = Sleeps()
    call("sync", False, mock_response="ok", num_retries=3, retry_policy=sleeps.policy())
    assert sleeps.delays == []
    flush()
    assert capture.hooks().count("log_pre_api_call") == 5  # four attempts of the error, one answer


def test_mock_delay_waits_once_before_the_request():
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    sleeps = Sleeps()  # the call's retry policy does the waiting, so a test need not sleep
    r = call("sync", False, mock_response="ok", mock_delay=0.25, retry_policy=sleeps.policy())
    flush()
    assert r.choices[0].message.content == "ok"
    assert sleeps.delays == [0.25]
    assert capture.hooks() == ["log_pre_api_call", "log_post_api_call", "log_success_event"]


@pytest.mark.parametrize("backend", ["mock", "http"])
def test_a_body_json_cannot_hold_is_refused_by_the_mock_as_by_a_real_call(backend, fake_provider):
    """A 300-deep ``tools=`` value: BadRequestError before anything is sent, mock or real."""
    deep: dict = {}
    for _ in range(300):
        deep = {"a": deep}
    target = (
        {"mock_response": "x"}
        if backend == "mock"
        else {"api_base": fake_provider.base_url + "/v1", "api_key": "k", "model": "openai/gpt-4o-mini"}
    )
    kwargs = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **target}
    with pytest.raises(lmgate.BadRequestError, match="nested too deeply"):
        lmgate.completion(tools=[deep], **kwargs)
    if backend == "http":
        assert fake_provider.requests == []
