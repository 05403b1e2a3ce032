"""The keys the reference's ``kwargs["litellm_params"]`` always holds, with its defaults.

A callback written for the reference reads ``kwargs["litellm_params"]["max_retries"]`` or
``["proxy_server_request"]`` without a ``.get``: every key it fills (LiteLLM 1.109.1, recorded
from a mock ``acompletion``) is here. The call sets the ones lmgate knows
(``_call.Call._litellm_params``); the rest belong to features lmgate has not got (Azure AD,
GigaChat, prompt management, …) and stay at the reference's defaults. Credential-bearing keys
(``client_secret``, ``azure_password``, …) are always None: lmgate never puts a secret here.
"""

from __future__ import annotations

from typing import Any

# the reference's None-valued keys (those with other defaults are set in ``defaults()``)
_NONE_KEYS = (
    "allm_passthrough_route",
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
    "data_residency",
    "disable_add_transform_inline_image_block",
    "gigachat_access_token",
    "gigachat_auth_url",
    "gigachat_scope",
    "hf_model_name",
    "input_cost_per_second",
    "input_cost_per_token",
    "litellm_metadata",
    "litellm_session_id",
    "logger_fn",
    "max_retries",
    "merge_reasoning_content_in_choices",
    "no-log",
    "output_cost_per_second",
    "output_cost_per_token",
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


def _template() -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(_NONE_KEYS)
    out["force_timeout"] = 600
    out["litellm_request_debug"] = False
    out["use_litellm_proxy"] = False
    out["use_xai_oauth"] = False
    out["verbose"] = False
    return out


_TEMPLATE = _template()


def defaults() -> dict[str, Any]:
    """A fresh dict of the reference's ``litellm_params`` defaults (its containers new each time):
    a copy of one template, several times cheaper than building it key by key."""
    out = _TEMPLATE.copy()
    out["custom_prompt_dict"] = {}
    out["model_alias_map"] = {}
    out["stream_response"] = {}
    return out
