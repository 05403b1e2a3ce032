"""The keys the reference's ``kwargs["litellm_params"]`` always holds, with its defaults.

A callback written for the reference reads ``kwargs["litellm_params"]["max_retries"]`` or
``["proxy_server_request"]`` without a ``.get``: every key it fills (LiteLLM 1.109.1, recorded
from a mock ``acompletion``) is there. The call sets the ones lmgate knows
(``_call.Call._litellm_params``); the rest, here, belong to features lmgate has not got (Azure
AD, GigaChat, prompt management, …) and stay at the reference's defaults. Credential-bearing keys
(``client_secret``, ``azure_password``, …) are always None: lmgate never puts a secret here.

These never change, so they are encoded once, at import: ``with_defaults`` splices that JSON into
each call's encoded ``litellm_params`` (no per-call dict or encoding for ~50 constant keys). The
call must never set one of these keys (a JSON object with a key twice) — it sets its own.
"""

from __future__ import annotations

from typing import Any

import orjson

# the reference's None-valued keys (those with other defaults are set in ``defaults()``)
_NONE_KEYS = (
    "allm_passthrough_route",
    "async_call",
    "azure_ad_token",
    "azure_ad_token_provider",
    "azure_password",
    "azure_scope",
    "azure_username",
    "chatgpt_auth_file",
    "client_id",
    "client_secret",
    "completion_call_id",
    "cooldown_time",
    "cost_per_query",
    "cost_per_second",
    "data_residency",
    "disable_add_transform_inline_image_block",
    "gigachat_access_token",
    "gigachat_auth_url",
    "gigachat_scope",
    "hf_model_name",
    "input_cost_per_second",
    "litellm_session_id",
    "logger_fn",
    "merge_reasoning_content_in_choices",
    "no-log",
    "output_cost_per_second",
    "preset_cache_key",
    "prompt_id",
    "prompt_variables",
    "proxy_server_request",
    "rpm",
    "ssl_verify",
    "tenant_id",
    "text_completion",
    "tpm",
    "user_continue_message",
)


def defaults() -> dict[str, Any]:
    """A fresh dict of these defaults (their containers new each time)."""
    out: dict[str, Any] = dict.fromkeys(_NONE_KEYS)
    out["custom_prompt_dict"] = {}
    out["model_alias_map"] = {}
    out["stream_response"] = {}
    out["force_timeout"] = 600
    out["litellm_request_debug"] = False
    out["use_litellm_proxy"] = False
    out["use_xai_oauth"] = False
    out["verbose"] = False
    return out


KEYS = frozenset(defaults())
_DEFAULTS_JSON = orjson.dumps(defaults())


def with_defaults(own: Any) -> Any:
    """A call's encoded ``litellm_params`` (JSON bytes of an object) with the defaults added; data
    orjson could not encode (a dict, deep-copied per reader) gets them as a merged dict."""
    if isinstance(own, bytes):
        if own == b"{}":
            return _DEFAULTS_JSON
        return _DEFAULTS_JSON[:-1] + b"," + own[1:]
    if isinstance(own, dict):
        return defaults() | own
    return own
