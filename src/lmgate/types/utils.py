"""The typed dicts of the standard logging payload, under the reference's module name.

Callbacks written for the reference annotate with ``from litellm.types.utils import
StandardLoggingPayload``; with ``import lmgate as litellm`` they write
``from lmgate.types.utils import StandardLoggingPayload``. At run time the payload is a plain
``dict`` (these are ``TypedDict``s, for type checkers and readers only). The fields follow the
reference's 1.109–1.110 payload; ``docs/payload.md`` says what lmgate puts in each, and
``lmgate/schemas/standard_logging_payload.schema.json`` is the JSON Schema.

The response classes are re-exported here too, as the reference's module has them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, Literal, TypedDict

from . import (
    ChatCompletionDeltaToolCall,
    ChatCompletionMessageToolCall,
    Choices,
    Delta,
    Embedding,
    EmbeddingResponse,
    Function,
    ImageObject,
    ImageResponse,
    Message,
    ModelResponse,
    ModelResponseStream,
    StreamingChoices,
    TextChoices,
    TextCompletionResponse,
    TranscriptionResponse,
    Usage,
)


class CallTypes(str, Enum):
    """``kwargs["call_type"]`` values (the ones lmgate makes, and the reference's other common ones)."""

    completion = "completion"
    acompletion = "acompletion"
    embedding = "embedding"
    aembedding = "aembedding"
    text_completion = "text_completion"
    atext_completion = "atext_completion"
    image_generation = "image_generation"
    aimage_generation = "aimage_generation"
    transcription = "transcription"
    atranscription = "atranscription"
    anthropic_messages = "anthropic_messages"
    responses = "responses"
    aresponses = "aresponses"


StandardLoggingPayloadStatus = Literal["success", "failure"]
ZeroCostReason = Literal["missing_pricing_key", "pricing_not_applied", "cost_calculation_error"]
GuardrailStatus = Literal[
    "success", "guardrail_flagged", "guardrail_intervened", "guardrail_failed_to_respond", "not_run"
]


class StandardLoggingUserAPIKeyMetadata(TypedDict, total=False):
    """Who made the call (proxy virtual keys); ``None`` in library mode."""

    user_api_key_hash: str | None
    user_api_key_alias: str | None
    user_api_key_spend: float | None
    user_api_key_max_budget: float | None
    user_api_key_budget_reset_at: str | None
    user_api_key_user_spend: float | None
    user_api_key_user_max_budget: float | None
    user_api_key_team_spend: float | None
    user_api_key_team_max_budget: float | None
    user_api_key_org_id: str | None
    user_api_key_org_alias: str | None
    user_api_key_project_id: str | None
    user_api_key_project_alias: str | None
    user_api_key_team_id: str | None
    user_api_key_user_id: str | None
    user_api_key_user_email: str | None
    user_api_key_team_alias: str | None
    user_api_key_end_user_id: str | None
    user_api_key_request_route: str | None
    user_api_key_auth_metadata: dict[str, Any] | None


class StandardLoggingPromptManagementMetadata(TypedDict):
    prompt_id: str
    prompt_variables: dict[str, Any] | None
    prompt_integration: str


class StandardLoggingMetadata(StandardLoggingUserAPIKeyMetadata, total=False):
    """The payload's ``metadata``."""

    spend_logs_metadata: dict[str, Any] | None
    requester_ip_address: str | None
    user_agent: str | None
    requester_metadata: dict[str, Any] | None
    requester_custom_headers: dict[str, str] | None
    prompt_management_metadata: StandardLoggingPromptManagementMetadata | None
    mcp_tool_call_metadata: dict[str, Any] | None
    vector_store_request_metadata: list[dict[str, Any]] | None
    routing_decision: dict[str, Any] | None
    kubernetes_pod_routing: dict[str, Any] | None
    applied_guardrails: list[str] | None
    usage_object: dict[str, Any] | None
    cold_storage_object_key: str | None
    team_alias: str | None
    team_id: str | None
    used_client_oauth_token: bool | None
    is_silent_experiment: bool


class StandardLoggingAdditionalHeaders(TypedDict, total=False):
    x_ratelimit_limit_requests: int
    x_ratelimit_limit_tokens: int
    x_ratelimit_remaining_requests: int
    x_ratelimit_remaining_tokens: int
    x_ratelimit_reset_requests: str
    x_ratelimit_reset_tokens: str


class StandardLoggingHiddenParams(TypedDict, total=False):
    model_id: str | None
    cache_key: str | None
    api_base: str | None
    response_cost: str | float | None
    litellm_overhead_time_ms: float | None
    additional_headers: StandardLoggingAdditionalHeaders | None
    batch_models: list[str] | None
    batch_successful_requests: int | None
    batch_failed_requests: int | None
    upstream_provider: str | None
    litellm_model_name: str | None
    usage_object: dict[str, Any] | None


class StandardLoggingModelInformation(TypedDict):
    model_map_key: str
    model_map_value: dict[str, Any] | None


class StandardLoggingModelCostFailureDebugInformation(TypedDict, total=False):
    error_str: str
    traceback_str: str
    model: str
    cache_hit: bool | None
    custom_llm_provider: str | None
    base_model: str | None
    call_type: str
    custom_pricing: bool | None


class StandardLoggingZeroCostDiagnostic(TypedDict):
    reason: ZeroCostReason
    pricing_model: str
    missing_pricing_keys: Sequence[str]


class StandardLoggingPayloadErrorInformation(TypedDict, total=False):
    error_code: str | None
    error_class: str | None
    llm_provider: str | None
    traceback: str | None
    error_message: str | None
    error_provider_request_id: str | None
    error_rate_limit_category: str | None
    error_rate_limit_type: str | None
    error_budget_entity_type: str | None
    error_budget_entity_id: str | None
    error_budget_limit: float | None
    error_budget_spend: float | None
    error_cooldown_deployments: Sequence[dict[str, Any]] | None
    normalized_error: str | None


class StandardLoggingPayloadStatusFields(TypedDict, total=False):
    llm_api_status: StandardLoggingPayloadStatus
    guardrail_status: GuardrailStatus


class CostBreakdown(TypedDict, total=False):
    input_cost: float
    cache_read_cost: float
    cache_creation_cost: float
    output_cost: float
    reasoning_cost: float
    total_cost: float
    tool_usage_cost: float
    guardrail_cost: float
    additional_costs: dict[str, float]
    original_cost: float
    discount_percent: float
    discount_amount: float
    margin_percent: float
    margin_fixed_amount: float
    margin_total_amount: float
    service_tier: str
    data_residency: str
    vertex_location: str
    estimated_cost: float  # lmgate: the usage was estimated (a stream that ended early, streaming.py)


class StandardLoggingGuardrailInformation(TypedDict, total=False):
    guardrail_name: str | None
    guardrail_provider: str | None
    guardrail_mode: str | list[str] | None
    guardrail_request: dict[str, Any] | None
    guardrail_response: Any
    guardrail_status: str
    start_time: float | None
    end_time: float | None
    duration: float | None
    masked_entity_count: dict[str, int] | None
    guardrail_id: str | None


class StandardBuiltInToolsParams(TypedDict, total=False):
    web_search_options: dict[str, Any] | None
    file_search: dict[str, Any] | None


class _StandardLoggingPayloadOptional(TypedDict, total=False):
    """The reference's optional (``NotRequired``) fields; lmgate always sets them (see payload.md)."""

    classifier_input: Mapping[str, Any]
    originating_request_masked: Mapping[str, Any]
    cost_finalized: bool
    zero_cost_diagnostic: StandardLoggingZeroCostDiagnostic | None
    request_model_access_groups: Sequence[str]


class StandardLoggingPayload(_StandardLoggingPayloadOptional):
    """``kwargs["standard_logging_object"]``: one call, as every logger receives it."""

    id: str
    trace_id: str
    session_id: str
    litellm_call_id: str | None
    call_type: str
    stream: bool | None
    response_cost: float
    cost_breakdown: CostBreakdown | None
    autorouter_savings: float | None
    autorouter_savings_estimate: Mapping[str, Any] | None
    autorouter_baseline_observation: str | None
    response_cost_failure_debug_info: StandardLoggingModelCostFailureDebugInformation | None
    status: StandardLoggingPayloadStatus
    status_fields: StandardLoggingPayloadStatusFields
    custom_llm_provider: str | None
    total_tokens: int
    prompt_tokens: int
    completion_tokens: int
    startTime: float
    endTime: float
    completionStartTime: float
    response_time: float
    model_map_information: StandardLoggingModelInformation
    model: str
    model_id: str | None
    model_group: str | None
    api_base: str
    metadata: StandardLoggingMetadata
    cache_hit: bool | None
    cache_key: str | None
    saved_cache_cost: float
    request_tags: list[str]
    end_user: str | None
    requester_ip_address: str | None
    user_agent: str | None
    messages: str | list[Any] | dict[str, Any] | None
    response: str | list[Any] | dict[str, Any] | None
    error_str: str | None
    error_information: StandardLoggingPayloadErrorInformation | None
    model_parameters: dict[str, Any]
    hidden_params: StandardLoggingHiddenParams
    guardrail_information: list[StandardLoggingGuardrailInformation] | None
    standard_built_in_tools_params: StandardBuiltInToolsParams | None


class StandardCallbackDynamicParams(TypedDict, total=False):
    """Per-call logging parameters (the ones lmgate reads)."""

    turn_off_message_logging: bool | None
    litellm_disabled_callbacks: list[str] | None


__all__ = [
    "CallTypes",
    "ChatCompletionDeltaToolCall",
    "ChatCompletionMessageToolCall",
    "Choices",
    "CostBreakdown",
    "Delta",
    "Embedding",
    "EmbeddingResponse",
    "Function",
    "GuardrailStatus",
    "ImageObject",
    "ImageResponse",
    "Message",
    "ModelResponse",
    "ModelResponseStream",
    "StandardBuiltInToolsParams",
    "StandardCallbackDynamicParams",
    "StandardLoggingAdditionalHeaders",
    "StandardLoggingGuardrailInformation",
    "StandardLoggingHiddenParams",
    "StandardLoggingMetadata",
    "StandardLoggingModelCostFailureDebugInformation",
    "StandardLoggingModelInformation",
    "StandardLoggingPayload",
    "StandardLoggingPayloadErrorInformation",
    "StandardLoggingPayloadStatus",
    "StandardLoggingPayloadStatusFields",
    "StandardLoggingPromptManagementMetadata",
    "StandardLoggingUserAPIKeyMetadata",
    "StandardLoggingZeroCostDiagnostic",
    "StreamingChoices",
    "TextChoices",
    "TextCompletionResponse",
    "TranscriptionResponse",
    "Usage",
    "ZeroCostReason",
]
