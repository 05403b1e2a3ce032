"""The standard logging payload: every emitted payload validates against the shipped JSON Schema."""

from __future__ import annotations

import pytest
from helpers import MESSAGES, MODE_IDS, MODES, call, flush
from payload_schema import assert_valid_payload

import lmgate
from lmgate.cost import compute_cost
from lmgate.testing import CapturingLogger

TERMINAL = ("log_success_event", "log_failure_event", "async_log_success_event", "async_log_failure_event")


def payloads(capture: CapturingLogger) -> list[dict]:
    return [e.kwargs["standard_logging_object"] for e in capture.of(*TERMINAL)]


@pytest.fixture
def capture():
    logger = CapturingLogger()
    lmgate.callbacks = [logger]
    return logger


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_success_payload_is_valid_and_complete(capture, mode, stream):
    """A successful call's payload validates and carries model, provider, usage, cost, times and metadata."""
    call(
        mode,
        stream,
        mock_response="hello world",
        metadata={"team": "search", "nested": {"a": [1, 2]}},
        temperature=0.1,
    )
    flush()
    (slo,) = payloads(capture)
    assert_valid_payload(slo)
    assert slo["status"] == "success"
    assert slo["call_type"] == ("acompletion" if mode == "async" else "completion")
    assert slo["model"] == "gpt-4o-mini" and slo["custom_llm_provider"] == "openai"
    assert (slo["prompt_tokens"], slo["completion_tokens"], slo["total_tokens"]) == (10, 20, 30)
    assert slo["response_cost"] == pytest.approx(1.35e-05) and slo["cost"] == slo["response_cost"]
    assert slo["metadata"]["team"] == "search" and slo["metadata"]["nested"] == {"a": [1, 2]}
    assert slo["model_parameters"] == {"temperature": 0.1}
    assert slo["startTime"] <= slo["completionStartTime"] <= slo["endTime"]
    assert slo["stream"] is stream
    assert slo["stream_status"] == ("complete" if stream else None)
    assert slo["response"]["choices"][0]["message"]["content"] == "hello world"
    assert slo["messages"] == MESSAGES


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_failure_payload_is_valid_with_error_information(capture, mode, stream):
    """A failed call's payload validates and names the error class, code and provider."""
    with pytest.raises(lmgate.ServiceUnavailableError):
        call(mode, stream, mock_response=lmgate.ServiceUnavailableError("down for maintenance"))
    flush()
    (slo,) = payloads(capture)
    assert_valid_payload(slo)
    assert slo["status"] == "failure"
    info = slo["error_information"]
    assert (info["error_code"], info["error_class"], info["llm_provider"]) == (
        "503",
        "ServiceUnavailableError",
        "openai",
    )
    assert "down for maintenance" in slo["error_str"]
    assert slo["response_cost"] is None and slo["response_cost_failure_debug_info"]["error_str"]


def test_unknown_price_is_null_with_reason_never_zero(capture):
    """A model without a price gets response_cost None and the reason, not 0."""
    call("sync", False, model="openai/my-finetune-xyz", mock_response="hi")
    flush()
    (event,) = capture.of("log_success_event")
    slo = event.kwargs["standard_logging_object"]
    assert_valid_payload(slo)
    assert slo["response_cost"] is None and event.kwargs["response_cost"] is None
    assert "my-finetune-xyz" in slo["response_cost_failure_debug_info"]["error_str"]
    assert "input_cost_per_token" in event.kwargs["response_cost_failure_debug_information"]["error_str"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_usage_that_is_not_numeric_costs_none_and_never_fails_the_call(mode):
    """A broken server's usage (a priced model, ``prompt_tokens: "many"``): the answer is
    returned, its cost is None with the reason (it raised ValueError out of the call before)."""
    odd = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "odd"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": "many", "completion_tokens": 1, "total_tokens": 2},
    }
    answer = call(mode, False, model="gpt-4o-mini", mock_response=odd)
    assert answer.choices[0].message.content == "odd"
    assert answer._hidden_params["response_cost"] is None
    result = compute_cost(["gpt-4o-mini"], odd["usage"])
    assert result.cost is None and "not a number" in str(result.reason)


def test_custom_prices_per_call(capture):
    """input_cost_per_token / output_cost_per_token on the call price an unknown model exactly."""
    r = lmgate.completion(
        model="openai/my-finetune",
        messages=MESSAGES,
        mock_response="hi",
        input_cost_per_token=1e-6,
        output_cost_per_token=2e-6,
    )
    flush()
    assert r._hidden_params["response_cost"] == pytest.approx(10 * 1e-6 + 20 * 2e-6)
    assert lmgate.completion_cost(r) == pytest.approx(5e-05)
    assert payloads(capture)[0]["response_cost"] == pytest.approx(5e-05)


def test_embedding_payload(capture):
    """Embedding calls produce a valid payload with their input as messages."""
    lmgate.embedding(model="text-embedding-3-small", input=["a", "b"], mock_response=True)
    flush()
    (slo,) = payloads(capture)
    assert_valid_payload(slo)
    assert slo["call_type"] == "embedding"
    assert slo["messages"] == [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]


def test_redaction_applies_to_success_and_failure(capture):
    """turn_off_message_logging hides prompts and answers in payloads and kwargs, success and failure alike."""
    lmgate.turn_off_message_logging = True
    r = lmgate.completion(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "my secret plan"}],
        mock_response="the answer",
    )
    with pytest.raises(lmgate.RateLimitError):
        lmgate.completion(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "my secret plan"}],
            mock_response="lmgate.RateLimitError",
        )
    flush()
    assert r.choices[0].message.content == "the answer"  # the caller's response is untouched
    events = capture.events
    assert events
    for e in events:
        text = repr(e.kwargs)
        assert "my secret plan" not in text and "the answer" not in text, e.hook
    for slo in payloads(capture):
        assert_valid_payload(slo)


def test_per_logger_redaction_leaves_other_loggers_alone():
    """CustomLogger(turn_off_message_logging=True) redacts only that logger's view."""
    private, normal = CapturingLogger(turn_off_message_logging=True), CapturingLogger()
    lmgate.callbacks = [private, normal]
    lmgate.completion(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "tell nobody"}],
        mock_response="secret reply",
    )
    flush()
    assert "tell nobody" not in repr(private.events[-1].kwargs)
    assert "secret reply" not in repr(private.events[-1].response_obj)
    assert "tell nobody" in repr(normal.events[-1].kwargs)


def test_api_key_never_reaches_callbacks(capture, fake_provider):
    """The provider key is masked in kwargs, headers and payload."""
    key = "sk-live-abcdefghijklmnopqrstuvwxyz123456"
    lmgate.completion(
        model="openai/gpt-4o-mini", messages=MESSAGES, api_base=fake_provider.base_url + "/v1", api_key=key
    )
    flush()
    assert capture.events
    for e in capture.events:
        assert key not in repr(e.kwargs), e.hook
    pre = capture.of("log_pre_api_call")[0].kwargs
    assert pre["api_key"].endswith("3456") and "****" in pre["api_key"]
    assert "****" in pre["additional_args"]["headers"]["Authorization"]
    slo = payloads(capture)[0]
    assert_valid_payload(slo)
    assert key not in repr(slo)
    assert slo["hidden_params"]["additional_headers"]["x-ratelimit-remaining-requests"]


def test_schema_rejects_a_broken_payload():
    """The schema check can fail: a payload with a bad status and a missing field is rejected."""
    with pytest.raises(AssertionError, match="status"):
        assert_valid_payload({"status": "weird"})


def test_credentials_in_metadata_are_masked_in_the_payload(capture):
    """A caller's metadata reaches every logger with its credentials masked; the call's own
    metadata (what kwargs carry) is left as the caller gave it."""
    metadata = {
        "api_key": "meta-credential-value-1",
        "note": "see sk-abcdefghijklmnop1234",
        "headers": {"Authorization": "Bearer meta-bearer-value-2"},
        "tags": ["kept-tag"],
    }
    lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="ok", metadata=metadata)
    flush()
    slo = payloads(capture)[0]
    assert_valid_payload(slo)
    text = repr(slo)
    for secret in ("meta-credential-value-1", "sk-abcdefghijklmnop1234", "meta-bearer-value-2"):
        assert secret not in text
    for where in (slo["metadata"], slo["metadata"]["requester_metadata"]):
        assert where["api_key"] == "****" and where["headers"] == {"Authorization": "****"}
        assert where["note"] == "see sk-abcd****" and where["tags"] == ["kept-tag"]
    assert slo["request_tags"] == ["kept-tag"]
    assert metadata["api_key"] == "meta-credential-value-1"
