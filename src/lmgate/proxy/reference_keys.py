"""The reference's proxy config keys that lmgate does not act on: which are ignored, which refused.

A config written for the reference should start: a key lmgate has no use for yet (a database,
alerting, fallbacks, a UI setting) is accepted and named in one startup warning. A key whose
absence would quietly weaken security or change what is logged (custom auth, route
restrictions, guardrails, a secret manager) is refused, with the reason: starting without it
would run a different proxy than its owner configured. Settings that only make the proxy
stricter when missing (``database_url``: without it, virtual keys are refused and only the
master key works) are ignored with the warning.

The lists follow the reference's "All settings" page (``docs/proxy/config_settings``); a key in
none of them, and not one of lmgate's own, is a typo: an error naming the nearest known key.
``docs/proxy.md`` "Keys from the reference" lists the same keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# ---------------------------------------------------------------------------- sections

IGNORED_SECTIONS = frozenset(
    {
        "mcp_servers",
        "vector_store_registry",
        "search_tools",
        "files_settings",
        "finetune_settings",
        "assistant_settings",
        "prompts",
        "pass_through_endpoints",
    }
)
REFUSED_SECTIONS = {
    "guardrails": "guardrails (PII masking, content filters) are not implemented in lmgate; starting without "
    "them would send and log what they were meant to stop. Remove the section, or keep the reference proxy",
    "credential_list": "lmgate does not resolve litellm_credential_name; put api_key (os.environ/NAME) "
    "in each deployment's litellm_params instead",
    "include": "lmgate does not merge included files; copy their sections into this file",
}

# ---------------------------------------------------------------------------- litellm_settings

IGNORED_LITELLM_SETTINGS = frozenset(
    {
        "set_verbose",
        "json_logs",
        "telemetry",
        "service_callback",
        "service_callbacks",
        "langfuse_default_tags",
        "modify_params",
        "enable_preview_features",
        "force_ipv4",
        "default_fallbacks",
        "fallbacks",
        "content_policy_fallbacks",
        "context_window_fallbacks",
        "mcp_aliases",
        "disable_end_user_cost_tracking",
        "disable_end_user_cost_tracking_prometheus_only",
        "key_generation_settings",
        "disable_add_transform_inline_image_block",
        "use_chat_completions_url_for_anthropic_messages",
        "disable_hf_tokenizer_download",
        "enable_json_schema_validation",
        "enable_key_alias_format_validation",
        "disable_copilot_system_to_assistant",
        "max_budget",
        "budget_duration",
        "max_end_user_budget",
        "default_team_settings",
        "default_internal_user_params",
        "upperbound_key_generate_params",
        "default_key_generate_params",
        "max_internal_user_budget",
        "internal_user_budget_duration",
        "success_callback_params",
        "cache_responses",
        "enable_caching_on_provider_specific_optional_params",
        "allowed_fails",
        "num_retries_per_request",
        "return_response_headers",
        "datadog_params",
        "otel_params",
    }
)
# these change what reaches a log: accepted when they ask for what lmgate does anyway
# (value False), refused when they ask for redaction lmgate does not do
REFUSED_LITELLM_SETTINGS_WHEN_TRUE = {
    "redact_user_api_key_info": "lmgate's payload carries the key's hash and alias; it cannot redact them "
    "(remove the key, or set it to false)",
    "redact_messages_in_exceptions": "lmgate does not redact messages from exception text "
    "(remove the key, or set it to false)",
}
REFUSED_LITELLM_SETTINGS = {
    "guardrails": "guardrails are not implemented in lmgate; starting without them would send and log "
    "what they were meant to stop",
}

# ---------------------------------------------------------------------------- general_settings

IGNORED_GENERAL_SETTINGS = frozenset(
    {
        "completion_model",
        "store_prompts_in_spend_logs",
        "forward_client_headers_to_llm_api",
        "forward_openai_org_id",
        "disable_spend_logs",
        "disable_spend_updates",
        "disable_master_key_return",
        "disable_retry_on_max_parallel_request_limit_error",
        "disable_reset_budget",
        "disable_adding_master_key_hash_to_db",
        "disable_responses_id_security",
        "maximum_spend_logs_retention_period",
        "maximum_spend_logs_retention_interval",
        "user_mcp_management_mode",
        # without a database lmgate has no virtual keys: only the master key authenticates (fails closed)
        "database_url",
        "database_connection_pool_limit",
        "database_connection_timeout",
        "allow_requests_on_db_unavailable",
        "store_model_in_db",
        "supported_db_objects",
        "disable_prisma_schema_update",
        "max_parallel_requests",
        "global_max_parallel_requests",
        "infer_model_from_keys",
        "background_health_checks",
        "health_check_interval",
        "health_check_details",
        "alerting",
        "alerting_threshold",
        "alerting_args",
        "alert_types",
        "alert_to_webhook_url",
        "spend_report_frequency",
        "image_generation_model",
        "embedding_model",
        "moderation_model",
        "max_response_size_mb",
        "proxy_budget_rescheduler_min_time",
        "proxy_budget_rescheduler_max_time",
        "proxy_batch_write_at",
        "proxy_batch_polling_interval",
        "default_team_disabled",
        "user_api_key_cache_ttl",
        "use_x_forwarded_for",
        "service_account_settings",
        "ui_access_mode",
        "litellm_license",
        "pass_through_endpoints",
        "use_client_credentials_pass_through_routes",
        # the ones below widen access when acted on; ignored, lmgate is stricter without them
        "allow_client_side_credentials",
        "litellm_key_header_name",
        "custom_key_generate",
        "custom_sso",
        "allow_user_auth",
    }
)
REFUSED_GENERAL_SETTINGS = {
    "custom_auth": "lmgate has no custom auth hook; requests would be checked against the master key only, "
    "not by your function. Remove the key to authenticate with general_settings.master_key",
    "enable_jwt_auth": "lmgate does not verify JWTs",
    "litellm_jwtauth": "lmgate does not verify JWTs",
    "enable_oauth2_auth": "lmgate does not do OAuth2 authentication",
    "enable_oauth2_proxy_auth": "lmgate does not do OAuth2 authentication",
    "oauth2_config_mappings": "lmgate does not do OAuth2 authentication",
    "allowed_routes": "lmgate does not restrict routes per key; every route would stay open to every key",
    "public_routes": "lmgate does not configure public routes",
    "admin_only_routes": "lmgate does not restrict routes to admins; every route would stay open to every key",
    "allowed_ips": "lmgate does not filter clients by IP; restrict them at the network or load balancer",
    "enforce_user_param": "lmgate does not require the 'user' parameter; requests without it would pass",
    "reject_clientside_metadata_tags": "lmgate does not reject client-side metadata tags",
    "enforced_params": "lmgate does not enforce required request parameters",
    "key_management_system": "lmgate reads secrets from the environment (os.environ/NAME), not a secret manager",
    "key_management_settings": "lmgate reads secrets from the environment (os.environ/NAME), not a secret manager",
    "use_azure_key_vault": "lmgate reads secrets from the environment (os.environ/NAME), not Azure Key Vault",
    "use_google_kms": "lmgate reads secrets from the environment (os.environ/NAME), not Google KMS",
}

# ---------------------------------------------------------------------------- router_settings

IGNORED_ROUTER_SETTINGS = frozenset(
    {
        "redis_host",
        "redis_port",
        "redis_password",
        "redis_db",
        "redis_url",
        "enable_pre_call_checks",
        "enable_pre_call_check",
        "allowed_fails",
        "cooldown_time",
        "disable_cooldowns",
        "enable_tag_filtering",
        "tag_filtering_match_any",
        "retry_policy",
        "allowed_fails_policy",
        "fallbacks",
        "content_policy_fallbacks",
        "context_window_fallbacks",
        "default_fallbacks",
        "default_max_parallel_requests",
        "default_priority",
        "polling_interval",
        "max_fallbacks",
        "default_litellm_params",
        "timeout",
        "stream_timeout",
        "debug_level",
        "client_ttl",
        "cache_kwargs",
        "routing_strategy_args",
        "model_group_alias",
        "retry_after",
        "provider_budget_config",
        "optional_pre_call_checks",
    }
)
# the reference's strategies lmgate does not have: the default is used, with the warning
REFERENCE_ONLY_ROUTING_STRATEGIES = frozenset(
    {"usage-based-routing", "usage-based-routing-v2", "latency-based-routing", "cost-based-routing"}
)

# ---------------------------------------------------------------------------- model_list entries

# litellm_params keys the reference documents that lmgate's calls do not act on: taken out of
# the call (never sent to a provider) and named in the startup warning
IGNORED_LITELLM_PARAMS = frozenset(
    {
        "stream_timeout",
        "litellm_credential_name",
        "tags",
        "max_budget",
        "budget_duration",
        "merge_reasoning_content_in_choices",
        "configurable_clientside_auth_params",
        "additional_drop_params",
        "input_cost_per_second",
        "output_cost_per_second",
        "use_litellm_proxy",
        "auto_router_config_path",
        "auto_router_default_model",
        "auto_router_embedding_model",
        "mock_testing_fallbacks",
        "cooldown_time",
        "health_check_model",
        "supports_system_message",
    }
)
# parameters of a provider (credentials, regions, projects) and of a request (OpenAI's names and
# the providers' own) that a deployment may set: passed to the call, where the provider takes them
PROVIDER_PARAMS = frozenset(
    {
        # OpenAI request parameters
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "top_p",
        "n",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "user",
        "seed",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "stream_options",
        "reasoning_effort",
        "modalities",
        "audio",
        "prediction",
        "service_tier",
        "store",
        "web_search_options",
        "dimensions",
        "encoding_format",
        "verbosity",
        # other providers' request parameters
        "top_k",
        "thinking",
        "safety_settings",
        "cached_content",
        "labels",
        # credentials and places
        "organization",
        "api_type",
        "azure_ad_token",
        "azure_ad_token_provider",
        "tenant_id",
        "client_id",
        "client_secret",
        "azure_username",
        "azure_password",
        "vertex_project",
        "vertex_location",
        "vertex_credentials",
        "vertex_ai_project",
        "vertex_ai_location",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_region_name",
        "aws_profile_name",
        "aws_role_name",
        "aws_session_name",
        "aws_web_identity_token",
        "aws_sts_endpoint",
        "aws_bedrock_runtime_endpoint",
        "aws_external_id",
        "watsonx_region_name",
        "extra_query",
    }
)


def nearest(key: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``key`` (a likely typo's intended key), or None."""
    matches = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key_message(key: str, known: Iterable[str], listed: Iterable[str] | None = None) -> str:
    """``unknown key; did you mean 'x'?`` — else the keys lmgate acts on (``listed``, default all
    of ``known``) and where the reference's are listed."""
    names = sorted(set(known))
    guess = nearest(key, names)
    if guess is not None:
        return f"unknown key; did you mean {guess!r}?"
    shown = names if listed is None else list(listed)
    more = (
        ' (and the reference\'s keys in docs/proxy.md "Keys from the reference")'
        if len(shown) < len(names)
        else ""
    )
    return f"unknown key; known keys: {', '.join(shown)}{more}"


__all__ = [
    "IGNORED_GENERAL_SETTINGS",
    "IGNORED_LITELLM_PARAMS",
    "IGNORED_LITELLM_SETTINGS",
    "IGNORED_ROUTER_SETTINGS",
    "IGNORED_SECTIONS",
    "PROVIDER_PARAMS",
    "REFERENCE_ONLY_ROUTING_STRATEGIES",
    "REFUSED_GENERAL_SETTINGS",
    "REFUSED_LITELLM_SETTINGS",
    "REFUSED_LITELLM_SETTINGS_WHEN_TRUE",
    "REFUSED_SECTIONS",
    "nearest",
    "unknown_key_message",
]
