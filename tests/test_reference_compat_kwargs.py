"""Issue 13, leftovers: the ``kwargs`` keys, ``litellm_params`` keys, payload metadata keys and
exception names that LiteLLM 1.109.1 has and lmgate lacked.

The key lists below were recorded on this machine from the reference (bench/.venv-ref) with a
``CustomLogger`` on ``acompletion(model="gpt-4o-mini", mock_response="hi")`` (plain, streamed,
and ``mock_response="litellm.RateLimitError"``). Keys lmgate leaves out on purpose are listed
with the reason in docs/callbacks.md ("Deliberate differences") and named in ``NOT_COPIED``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import orjson
import pytest

import lmgate
import lmgate as litellm
from lmgate.integrations.custom_logger import CustomLogger

MESSAGES = [{"role": "user", "content": "Hi"}]

REFERENCE_KWARGS_PRE = {
    "additional_args",
    "agentic_loop_params",
    "api_call_start_time",
    "api_key",
    "applied_guardrails",
    "call_type",
    "completion_start_time",
    "current_attempt_api_call_start_time",
    "custom_llm_provider",
    "extra_body",
    "first_api_call_start_time",
    "input",
    "litellm_call_id",
    "litellm_params",
    "litellm_trace_id",
    "log_event_type",
    "messages",
    "model",
    "model_id",
    "optional_params",
    "standard_callback_dynamic_params",
    "start_time",
    "stream",
    "stream_options",
    "user",
}
REFERENCE_KWARGS_SUCCESS = REFERENCE_KWARGS_PRE | {
    "async_complete_streaming_response",
    "cache_hit",
    "end_time",
    "has_dispatched_final_stream_success",
    "response_cost",
    "standard_logging_object",
    "zero_cost_diagnostic",
}
REFERENCE_KWARGS_FAILURE = REFERENCE_KWARGS_PRE | {
    "async_failure_logged_attempt",
    "end_time",
    "exception",
    "has_logged_async_failure",
    "has_logged_sync_failure",
    "original_response",
    "response_cost",
    "standard_logging_object",
    "traceback_exception",
}
# the reference's own bookkeeping flags (which handler already ran), not facts about the call
NOT_COPIED = {
    "has_dispatched_final_stream_success",
    "has_logged_async_failure",
    "has_logged_sync_failure",
    "async_failure_logged_attempt",
}
# a non-streamed call's success has no assembled stream in lmgate (the reference sets it to the response)
NOT_COPIED_UNSTREAMED = {"async_complete_streaming_response"}

REFERENCE_LITELLM_PARAMS = {
    "acompletion",
    "aembedding",
    "allm_passthrough_route",
    "api_base",
    "api_key",
    "api_version",
    "async_call",
    "azure_ad_token",
    "azure_ad_token_provider",
    "azure_password",
    "azure_scope",
    "azure_username",
    "base_model",
    "chatgpt_auth_file",
    "client_id",
    "client_secret",
    "completion_call_id",
    "cooldown_time",
    "cost_per_query",
    "cost_per_second",
    "custom_llm_provider",
    "custom_prompt_dict",
    "data_residency",
    "disable_add_transform_inline_image_block",
    "drop_params",
    "force_timeout",
    "gigachat_access_token",
    "gigachat_auth_url",
    "gigachat_scope",
    "hf_model_name",
    "input_cost_per_second",
    "input_cost_per_token",
    "litellm_call_id",
    "litellm_metadata",
    "litellm_request_debug",
    "litellm_session_id",
    "litellm_trace_id",
    "logger_fn",
    "max_retries",
    "merge_reasoning_content_in_choices",
    "metadata",
    "model_alias_map",
    "model_info",
    "no-log",
    "output_cost_per_second",
    "output_cost_per_token",
    "preset_cache_key",
    "prompt_id",
    "prompt_variables",
    "proxy_server_request",
    "rpm",
    "ssl_verify",
    "stream_response",
    "tenant_id",
    "text_completion",
    "timeout",
    "tpm",
    "use_litellm_proxy",
    "use_xai_oauth",
    "user_continue_message",
    "verbose",
}

REFERENCE_PAYLOAD_METADATA = {
    "applied_guardrails",
    "cold_storage_object_key",
    "kubernetes_pod_routing",
    "mcp_tool_call_metadata",
    "prompt_management_metadata",
    "requester_custom_headers",
    "requester_ip_address",
    "requester_metadata",
    "routing_decision",
    "spend_logs_metadata",
    "team_alias",
    "team_id",
    "usage_object",
    "used_client_oauth_token",
    "user_agent",
    "user_api_key_alias",
    "user_api_key_auth_metadata",
    "user_api_key_budget_reset_at",
    "user_api_key_end_user_id",
    "user_api_key_hash",
    "user_api_key_max_budget",
    "user_api_key_org_alias",
    "user_api_key_org_id",
    "user_api_key_project_alias",
    "user_api_key_project_id",
    "user_api_key_request_route",
    "user_api_key_spend",
    "user_api_key_team_alias",
    "user_api_key_team_id",
    "user_api_key_team_max_budget",
    "user_api_key_team_spend",
    "user_api_key_user_email",
    "user_api_key_user_id",
    "user_api_key_user_max_budget",
    "user_api_key_user_spend",
    "vector_store_request_metadata",
}


class Recorder(CustomLogger):
    """Keeps each event's kwargs as a plain dict (what a user's test would inspect)."""

    def __init__(self, full_kwargs: bool = True) -> None:
        super().__init__(full_kwargs=full_kwargs)
        self.seen: dict[str, dict] = {}

    def log_pre_api_call(self, model, messages, kwargs):
        self.seen["pre"] = dict(kwargs)

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.seen["success"] = dict(kwargs)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self.seen["failure"] = dict(kwargs)


def _run(stream: bool = False, mock: str = "hi", full_kwargs: bool = True, **extra) -> dict[str, dict]:
    recorder = Recorder(full_kwargs)
    litellm.callbacks = [recorder]

    async def call() -> None:
        response = await litellm.acompletion(
            model="gpt-4o-mini", messages=MESSAGES, mock_response=mock, stream=stream, **extra
        )
        if stream:
            async for _ in response:
                pass

    try:
        asyncio.run(call())
    except litellm.RateLimitError:
        pass
    assert lmgate.flush_callbacks(10)
    return recorder.seen


@pytest.mark.parametrize("full_kwargs", [True, False])
@pytest.mark.parametrize("stream", [False, True])
def test_kwargs_hold_every_key_the_reference_fills(stream, full_kwargs):
    seen = _run(stream=stream, full_kwargs=full_kwargs)
    assert REFERENCE_KWARGS_PRE <= set(seen["pre"]), REFERENCE_KWARGS_PRE - set(seen["pre"])
    expected = REFERENCE_KWARGS_SUCCESS - NOT_COPIED - (set() if stream else NOT_COPIED_UNSTREAMED)
    assert expected <= set(seen["success"]), expected - set(seen["success"])
    failure = _run(mock="litellm.RateLimitError", full_kwargs=full_kwargs)["failure"]
    assert REFERENCE_KWARGS_FAILURE - NOT_COPIED <= set(failure), REFERENCE_KWARGS_FAILURE - set(failure)


def test_the_new_kwargs_keys_have_the_references_values():
    seen = _run(stream_options={"include_usage": True})
    for event in ("pre", "success"):
        kwargs = seen[event]
        for key in (
            "api_call_start_time",
            "current_attempt_api_call_start_time",
            "first_api_call_start_time",
        ):
            assert isinstance(kwargs[key], datetime), (event, key)
            assert kwargs[key] >= kwargs["start_time"]
        assert kwargs["model_id"] is None  # no router deployment in library mode
        assert kwargs["stream_options"] == {"include_usage": True}
        assert kwargs["standard_callback_dynamic_params"] == {}
        assert kwargs["applied_guardrails"] == []
        assert kwargs["extra_body"] == {}
        assert kwargs["agentic_loop_params"] == {"model": "gpt-4o-mini", "custom_llm_provider": "openai"}
    assert seen["success"]["zero_cost_diagnostic"] is None  # priced: no diagnostic
    # absent options read as the reference's None
    assert _run()["pre"]["stream_options"] is None


def test_litellm_params_hold_the_references_keys_and_values():
    seen = _run(max_retries=3, metadata={"a": 1})
    for event in ("pre", "success"):
        kwargs = seen[event]
        params = kwargs["litellm_params"]
        assert REFERENCE_LITELLM_PARAMS <= set(params), REFERENCE_LITELLM_PARAMS - set(params)
        assert params["litellm_call_id"] == kwargs["litellm_call_id"]
        assert params["litellm_trace_id"] == kwargs["litellm_trace_id"]
        assert params["max_retries"] == 3
        assert params["proxy_server_request"] is None  # library mode: no proxy request
        assert params["custom_llm_provider"] == "openai"  # resolved from the model, as the reference
        assert params["metadata"]["a"] == 1
        # credential-bearing fields are there, empty: never the caller's secrets
        assert params["client_secret"] is None and params["azure_password"] is None
        assert params["custom_prompt_dict"] == {} and params["model_alias_map"] == {}
        assert params["litellm_request_debug"] is False and params["no-log"] is None
        assert params["input_cost_per_token"] is None and params["base_model"] is None
    # the encoded kwargs name every key once (the constant keys are spliced into the call's JSON)

    def no_duplicates(items):
        names = [name for name, _ in items]
        assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
        return dict(items)

    for event in ("pre", "success"):
        json.loads(orjson.dumps(seen[event], default=str), object_pairs_hook=no_duplicates)


def test_payload_metadata_has_every_reference_key():
    from payload_schema import assert_valid_payload

    seen = _run()
    payload = seen["success"]["standard_logging_object"]
    assert REFERENCE_PAYLOAD_METADATA <= set(payload["metadata"]), REFERENCE_PAYLOAD_METADATA - set(
        payload["metadata"]
    )
    metadata = payload["metadata"]
    for key in (
        "user_api_key_org_alias",
        "user_api_key_project_id",
        "user_api_key_project_alias",
        "user_api_key_team_spend",
        "user_api_key_team_max_budget",
        "user_api_key_user_spend",
        "user_api_key_user_max_budget",
    ):
        assert metadata[key] is None, key
    assert metadata["applied_guardrails"] == []  # the reference's empty list
    assert metadata["usage_object"]["total_tokens"] == payload["total_tokens"]
    assert_valid_payload(payload)


def test_budget_mock_and_unmapped_model_errors_exist_as_in_the_reference():
    # litellm.BudgetExceededError(current_cost, max_budget, message=None): an Exception
    error = litellm.BudgetExceededError(current_cost=2.5, max_budget=1.0)
    assert isinstance(error, Exception)
    assert (error.current_cost, error.max_budget) == (2.5, 1.0)
    assert error.status_code == 422 and error.llm_provider == ""
    assert not isinstance(error, litellm.APIError)  # its own root, as in the reference
    assert str(error) == "Budget has been exceeded! Current cost: 2.5, Max budget: 1.0"
    assert str(litellm.BudgetExceededError(1, 2, message="over")) == "over"
    assert litellm.exceptions.BudgetExceededError is litellm.BudgetExceededError
    # litellm.MockException(status_code, message, llm_provider, model, ...): an openai.APIError
    # in the reference, lmgate's APIError here (what `except litellm.APIError` catches)
    mock = litellm.MockException(status_code=429, message="slow down", llm_provider="openai", model="m")
    assert isinstance(mock, litellm.APIError)
    assert (mock.status_code, mock.message, mock.llm_provider, mock.model) == (
        429,
        "slow down",
        "openai",
        "m",
    )
    assert litellm.exceptions.MockException is litellm.MockException
    # ModelNotMappedError: a bare Exception subclass in the reference (no price-map entry)
    assert litellm.ModelNotMappedError is litellm.exceptions.ModelNotMappedError
    assert issubclass(litellm.ModelNotMappedError, Exception)
    assert str(litellm.ModelNotMappedError("no entry for m")) == "no entry for m"
    for name in ("BudgetExceededError", "MockException", "ModelNotMappedError"):
        assert name in lmgate.__all__
