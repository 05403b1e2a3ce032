"""Code written against the reference, run as a migrating user runs it (issue 13 points 1-7).

Each test is shaped like a user's own: a callback class copied from the reference's docs
(/work/shared/spec/custom-callbacks*.md), a ``MagicMock``-based test that reads
``call_args.kwargs``, ``isinstance`` checks, the reference's mock forms.
"""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
from unittest.mock import AsyncMock, MagicMock, patch

import pytest
from helpers import call, flush

import lmgate
import lmgate as litellm
from lmgate.integrations.custom_logger import CustomLogger

MESSAGES = [{"role": "user", "content": "Hi"}]


# ---- point 1: dict access on chunks, deltas, messages ----
def test_stream_chunks_answer_dict_access_like_the_reference():
    """The usual consumer loop of a reference user: ``chunk["choices"][0]["delta"]["content"]``
    on every chunk, the role-only first chunk and the finish chunk included."""
    stream = litellm.completion(
        model="gpt-4o-mini", messages=MESSAGES, mock_response="hello there", stream=True
    )
    text = ""
    finish_reasons = []
    for chunk in stream:
        delta = chunk["choices"][0]["delta"]
        text += delta["content"] or ""
        assert delta["role"] in (None, "assistant")
        assert delta["tool_calls"] is None and delta["function_call"] is None
        finish_reasons.append(chunk["choices"][0]["finish_reason"])
        assert chunk["system_fingerprint"] is None or isinstance(chunk["system_fingerprint"], str)
    assert text == "hello there"
    assert finish_reasons[-1] == "stop"
    # a chunk that carries no content at all: None, not KeyError
    empty = litellm.ModelResponseStream({"choices": [{"index": 0, "delta": {}}]})
    assert empty["choices"][0]["delta"]["content"] is None
    assert empty["choices"][0]["delta"]["role"] is None
    assert empty["choices"][0]["logprobs"] is None
    with pytest.raises(KeyError):
        empty["choices"][0]["delta"]["no_such_field"]


def test_messages_answer_dict_access_like_the_reference():
    response = litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="ok")
    message = response["choices"][0]["message"]
    assert message["content"] == "ok" and message["role"] == "assistant"
    assert message["tool_calls"] is None and message["function_call"] is None
    assert response["system_fingerprint"] is None
    assert response["usage"]["prompt_tokens_details"] is None or isinstance(
        response["usage"]["prompt_tokens_details"], dict
    )
    bare = litellm.Message({"content": "x"})
    assert bare["role"] == "assistant" and bare["tool_calls"] is None
    assert "tool_calls" not in bare  # absent fields are not invented in the data (json stays small)


# ---- point 2: public names ----
def test_public_names_a_reference_callback_touches():
    from lmgate.types.utils import (
        CallTypes,
        StandardLoggingHiddenParams,
        StandardLoggingMetadata,
        StandardLoggingPayload,
        StandardLoggingPayloadErrorInformation,
    )

    seen = []

    class TypedLogger(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            payload: StandardLoggingPayload = kwargs["standard_logging_object"]
            meta: StandardLoggingMetadata = payload["metadata"]
            hidden: StandardLoggingHiddenParams = payload["hidden_params"]
            err: StandardLoggingPayloadErrorInformation | None = payload["error_information"]
            kinds = (litellm.ImageResponse, litellm.TextCompletionResponse, litellm.TranscriptionResponse)
            seen.append(
                (
                    isinstance(response_obj, litellm.ModelResponse),
                    isinstance(response_obj, kinds),
                    meta,
                    hidden,
                    err,
                )
            )

    lmgate.callbacks = [TypedLogger()]
    call("sync", False, mock_response="ok")
    flush()
    assert seen and seen[0][0] is True and seen[0][1] is False
    assert seen[0][2] is not None and CallTypes.completion == "completion"
    assert set(StandardLoggingPayload.__annotations__) >= {
        "model_map_information",
        "cost_finalized",
        "zero_cost_diagnostic",
    }
    assert isinstance(litellm.TextCompletionResponse(), dict)
    assert litellm.TextCompletionResponse()["choices"] == []
    assert litellm.ImageResponse(data=[{"url": "http://x"}]).data[0].url == "http://x"
    assert litellm.TranscriptionResponse(text="hi").text == "hi"
    assert CustomLogger.get_callback_env_vars("generic_api") == [
        "GENERIC_LOGGER_ENDPOINT",
        "GENERIC_LOGGER_HEADERS",
    ]
    assert CustomLogger.get_callback_env_vars("rubrik") == ["RUBRIK_API_KEY", "RUBRIK_WEBHOOK_URL"]
    assert CustomLogger.get_callback_env_vars(None) == [] and CustomLogger.get_callback_env_vars("nope") == []


def test_types_utils_is_not_loaded_by_import_lmgate():
    import subprocess
    import sys

    code = "import sys, lmgate, lmgate.types; print('lmgate.types.utils' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---- point 3: calling convention ----
def test_mock_patched_hooks_see_keyword_arguments():
    """The reference's own test pattern: patch a hook with a MagicMock and read call_args.kwargs."""
    handler = CustomLogger()
    with (
        patch.object(handler, "log_success_event", new=MagicMock()) as success,
        patch.object(handler, "log_pre_api_call", new=MagicMock()) as pre,
    ):
        litellm.callbacks = [handler]
        litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="ok")
        flush()
    success.assert_called_once()
    kw = success.call_args.kwargs
    assert set(kw) == {"kwargs", "response_obj", "start_time", "end_time"}
    assert kw["kwargs"]["model"] == "gpt-4o-mini"
    assert kw["response_obj"].choices[0].message.content == "ok"
    assert kw["start_time"] <= kw["end_time"]
    assert set(pre.call_args.kwargs) == {"model", "messages", "kwargs"}
    assert pre.call_args.kwargs["messages"] == MESSAGES


def test_async_mock_failure_hook_sees_keyword_arguments():
    handler = CustomLogger()
    with patch.object(handler, "async_log_failure_event", new=AsyncMock()) as failure:
        litellm.callbacks = [handler]

        async def run():
            with pytest.raises(litellm.RateLimitError):
                await litellm.acompletion(
                    model="gpt-4o-mini", messages=MESSAGES, mock_response="litellm.RateLimitError"
                )

        asyncio.run(run())
        flush()
    failure.assert_awaited_once()
    kw = failure.call_args.kwargs
    assert isinstance(kw["kwargs"]["exception"], litellm.RateLimitError)
    assert kw["response_obj"] is None


def test_functions_are_called_positionally_and_star_args_hooks_still_work():
    fn = MagicMock()
    seen = []

    class StarArgs(CustomLogger):  # an improvement kept: the reference would raise TypeError here
        def log_success_event(self, *args):
            seen.append(len(args))

    litellm.success_callback = [fn]
    litellm.callbacks = [StarArgs()]
    litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="ok")
    flush()
    assert len(fn.call_args.args) == 4 and fn.call_args.kwargs == {}
    assert seen == [4]


# ---- point 6: mock_response forms ----
class FailureRecorder(CustomLogger):
    """Copied from the reference's docs, recording what each failure hook got."""

    def __init__(self):
        super().__init__()
        self.failures = []

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self.failures.append(
            ("sync", kwargs["exception"], kwargs["standard_logging_object"]["error_information"])
        )

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self.failures.append(
            ("async", kwargs["exception"], kwargs["standard_logging_object"]["error_information"])
        )


@pytest.mark.parametrize(
    ("mock", "error", "status"),
    [
        ("litellm.RateLimitError", litellm.RateLimitError, 429),
        ("lmgate.RateLimitError", litellm.RateLimitError, 429),
        ("litellm.NotFoundError", litellm.NotFoundError, 404),
        ("litellm.ContextWindowExceededError", litellm.ContextWindowExceededError, 400),
        ("Exception: the provider fell over", litellm.InternalServerError, 500),
        ("Exception: content_filter_policy", litellm.BadRequestError, 400),
    ],
)
@pytest.mark.parametrize(
    ("mode", "stream"), [("sync", False), ("async", False), ("sync", True), ("async", True)]
)
def test_mock_errors_reach_every_failure_hook(mock, error, status, mode, stream):
    recorder = FailureRecorder()
    fn = MagicMock()
    litellm.callbacks = [recorder]
    litellm.failure_callback = [fn]
    with pytest.raises(error) as info:
        call(mode, stream, mock_response=mock)
    flush()
    assert info.value.status_code == status
    if mock.startswith("Exception: the"):
        assert "the provider fell over" in str(info.value)
    assert len(recorder.failures) == 1
    _, seen, error_information = recorder.failures[0]
    assert isinstance(seen, error) and error_information["error_code"] == str(status)
    assert fn.call_count == 1 and isinstance(fn.call_args.args[0]["exception"], error)


def test_mock_streaming_error_fails_mid_stream():
    recorder = FailureRecorder()
    litellm.callbacks = [recorder]
    stream = litellm.completion(
        model="gpt-4o-mini", messages=MESSAGES, mock_response="Exception: mock_streaming_error", stream=True
    )
    got = []
    with pytest.raises(litellm.APIError) as info:
        for chunk in stream:
            got.append(chunk)
    flush()
    assert len(got) == 1 and info.value.status_code == 529
    assert len(recorder.failures) == 1


def test_mock_tool_calls_and_mock_timeout():
    tool_calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    response = litellm.completion(
        model="gpt-4o-mini", messages=MESSAGES, mock_response="", mock_tool_calls=tool_calls
    )
    message = response["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"
    assert message.tool_calls[0].function.arguments == '{"city": "Paris"}'
    assert response.choices[0].finish_reason == "tool_calls"

    recorder = FailureRecorder()
    litellm.callbacks = [recorder]
    with pytest.raises(litellm.Timeout):
        litellm.completion(
            model="gpt-4o-mini", messages=MESSAGES, mock_response="ok", mock_timeout=True, timeout=0.01
        )
    flush()
    assert isinstance(recorder.failures[0][1], litellm.Timeout)
    # without a timeout there is nothing to exceed: the reference answers normally
    assert (
        litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="ok", mock_timeout=True)
        .choices[0]
        .message.content
        == "ok"
    )


# ---- point 7: error messages users match on ----
def test_invalid_log_format_says_invalid_log_format():
    from lmgate.loggers.generic_api import GenericAPILogger

    with pytest.raises(ValueError, match="Invalid log_format 'xml'") as info:
        GenericAPILogger(endpoint="http://127.0.0.1:9/logs", log_format="xml")
    assert "json_array, ndjson, single" in str(info.value)


# ---- point 4: kwargs as the reference fills them ----
def test_litellm_params_api_base_is_the_resolved_base_url(fake_provider_session, monkeypatch):
    """No api_base on the call: the base URL resolved from OPENAI_API_BASE is what callbacks see,
    with a secret query value masked."""
    fp = fake_provider_session
    fp.reset()
    monkeypatch.setenv("OPENAI_API_BASE", fp.base_url + "/v1?sig=topsecretvalue123")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-compat-key-0001")
    handler = CustomLogger()
    litellm.log_raw_request_response = True  # the reference's flag for metadata["raw_request"]
    with patch.object(handler, "log_success_event", new=MagicMock()) as success:
        litellm.callbacks = [handler]
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES)
        litellm.log_raw_request_response = False
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, metadata={"k": 1})
        flush()
    assert success.call_args.kwargs["kwargs"]["litellm_params"]["metadata"] == {
        "k": 1
    }  # off: your metadata only
    params = success.call_args_list[0].kwargs["kwargs"]["litellm_params"]
    assert params["api_base"].startswith(fp.base_url + "/v1")
    assert "topsecretvalue123" not in params["api_base"]
    raw = params["metadata"]["raw_request"]
    assert raw.startswith("curl -X POST") and '"messages"' in raw
    assert "sk-fake-compat-key-0001" not in raw  # the Authorization header is masked


def test_stream_original_response_and_embedding_messages():
    post, success = MagicMock(), MagicMock()
    handler = CustomLogger()
    with (
        patch.object(handler, "log_post_api_call", new=post),
        patch.object(handler, "log_success_event", new=success),
    ):
        litellm.callbacks = [handler]
        stream = litellm.completion(
            model="gpt-4o-mini", messages=MESSAGES, mock_response="streamed text", stream=True
        )
        chunks = list(stream)
        flush()
    assert chunks
    assert post.call_count == 1
    post_kwargs = post.call_args.kwargs["kwargs"]
    original = post_kwargs["original_response"]
    assert original.stream is stream  # stands for the stream (the reference puts the stream itself)
    assert "gpt-4o-mini" in str(original)
    del stream, chunks
    assert original.stream is None  # a weak reference: the callback does not keep the stream alive
    # every way of copying kwargs still works once the stream is gone
    assert copy.deepcopy(post_kwargs)["original_response"] == str(original)
    assert pickle.loads(pickle.dumps(post_kwargs))["original_response"] == str(original)
    assert str(original) in json.dumps(post_kwargs, default=str)
    assert post.call_args.kwargs["end_time"] is None and post.call_args.kwargs["response_obj"] is None
    final = success.call_args.kwargs["kwargs"]["original_response"]
    assert isinstance(final, str) and "streamed text" in final

    seen = []
    litellm.callbacks = []
    litellm.success_callback = [lambda kwargs, response, start, end: seen.append(kwargs)]
    litellm.embedding(model="text-embedding-3-small", input=["first", "second"], mock_response=True)
    litellm.embedding(model="text-embedding-3-small", input="only", mock_response=True)
    flush()
    assert seen[0]["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
    ]
    assert seen[1]["messages"] == [{"role": "user", "content": "only"}]
    assert seen[0]["standard_logging_object"]["messages"] == seen[0]["messages"]


def test_redaction_placeholder_and_per_call_override():
    seen = []
    litellm.success_callback = [lambda kwargs, response, start, end: seen.append(kwargs)]
    litellm.turn_off_message_logging = True
    litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="secret answer")
    litellm.completion(
        model="gpt-4o-mini", messages=MESSAGES, mock_response="open answer", turn_off_message_logging=False
    )
    flush()
    redacted, opened = seen
    assert redacted["messages"] == [{"role": "user", "content": "redacted-by-litellm"}]
    payload = redacted["standard_logging_object"]
    assert payload["response"]["choices"][0]["message"]["content"] == "redacted-by-litellm"
    assert opened["messages"] == MESSAGES
    assert opened["standard_logging_object"]["response"]["choices"][0]["message"]["content"] == "open answer"


# ---- point 5: every field of the reference's StandardLoggingPayload ----
def test_payload_has_every_field_of_the_reference_payload():
    from payload_schema import assert_valid_payload

    from lmgate.types.utils import (
        StandardLoggingHiddenParams,
        StandardLoggingMetadata,
        StandardLoggingPayload,
    )

    seen = []
    litellm.success_callback = [
        lambda kwargs, response, start, end: seen.append(kwargs["standard_logging_object"])
    ]
    litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="ok")
    litellm.completion(model="no-such-model-anywhere", messages=MESSAGES, mock_response="ok")
    flush()
    priced, unpriced = seen
    for payload in seen:
        assert_valid_payload(payload)
        assert (
            set(payload)
            >= StandardLoggingPayload.__required_keys__ | StandardLoggingPayload.__optional_keys__
        )
        assert set(payload["hidden_params"]) >= StandardLoggingHiddenParams.__optional_keys__ - {
            "upstream_provider"
        } | {"usage_object"}
        assert set(payload["metadata"]) >= StandardLoggingMetadata.__optional_keys__ - {
            "is_silent_experiment",
            "prompt_management_metadata",
        } - {"user_api_key_auth_metadata"} | {"user_api_key_hash"}
        assert payload["cost_finalized"] is True
        assert payload["request_model_access_groups"] == []
        assert payload["autorouter_savings"] is None
        assert payload["classifier_input"] == {} and payload["originating_request_masked"] == {}
    assert priced["model_map_information"]["model_map_key"] == "gpt-4o-mini"
    assert priced["model_map_information"]["model_map_value"]["input_cost_per_token"] > 0
    assert priced["zero_cost_diagnostic"] is None
    assert unpriced["model_map_information"] == {
        "model_map_key": "no-such-model-anywhere",
        "model_map_value": None,
    }
    assert unpriced["zero_cost_diagnostic"]["reason"] == "missing_pricing_key"
