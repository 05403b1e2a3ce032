"""The standard logging payload (``standard_logging_object``): an adapter over ``CallSummary``.

``build_payload(summary)`` gives the payload's parts as a dict whose large parts (messages,
response) are pre-encoded ``orjson.Fragment``s; ``summary.payload_json()`` encodes it once for
every sink, and ``payload_copy`` gives one reader a plain dict of its own. The schema is
``lmgate/schemas/standard_logging_payload.schema.json``; ``docs/payload.md`` describes it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from .._secrets import MASK, is_secret_name, json_may_need_masking, mask_data, scrub
from .encoding import ENCODING_ERRORS_KEY
from .redact import redact_messages, redact_response

if TYPE_CHECKING:
    from .summary import CallSummary

# metadata keys of the reference implementation's payload (StandardLoggingMetadata), present
# (None) unless set
STANDARD_METADATA_KEYS = (
    "user_api_key_hash",
    "user_api_key_alias",
    "user_api_key_spend",
    "user_api_key_max_budget",
    "user_api_key_budget_reset_at",
    "user_api_key_user_spend",
    "user_api_key_user_max_budget",
    "user_api_key_team_spend",
    "user_api_key_team_max_budget",
    "user_api_key_org_alias",
    "user_api_key_project_id",
    "user_api_key_project_alias",
    "user_api_key_team_id",
    "user_api_key_user_id",
    "user_api_key_user_email",
    "user_api_key_org_id",
    "user_api_key_team_alias",
    "user_api_key_end_user_id",
    "user_api_key_request_route",
    "user_api_key_auth_metadata",
    "spend_logs_metadata",
    "requester_ip_address",
    "user_agent",
    "requester_custom_headers",
    "prompt_management_metadata",
    "mcp_tool_call_metadata",
    "vector_store_request_metadata",
    "routing_decision",
    "kubernetes_pod_routing",
    "applied_guardrails",
    "usage_object",
    "cold_storage_object_key",
    "team_alias",
    "team_id",
    "used_client_oauth_token",
)
_EMPTY_METADATA: dict[str, Any] = dict.fromkeys(STANDARD_METADATA_KEYS)
# the reference's fields that hold free-form data (a caller's or an admin's): masked like the rest
_FREE_FORM_METADATA = frozenset(
    {
        "user_api_key_auth_metadata",
        "spend_logs_metadata",
        "requester_custom_headers",
        "prompt_management_metadata",
        "mcp_tool_call_metadata",
        "vector_store_request_metadata",
        "routing_decision",
        "kubernetes_pod_routing",
        "cold_storage_object_key",
    }
)
# metadata fields lmgate itself fills with ids, names, numbers and flags (the store keeps most as
# columns, as they are): not searched for secrets. Every other field - the caller's own metadata,
# ``requester_metadata``, a key's admin metadata (``user_api_key_auth_metadata``) - is masked where
# the payload is built (``_masked_metadata``), so no logger, store, page or export holds it unmasked.
# Those lmgate fills only when the caller did not (``usage_object``, ``applied_guardrails``, …)
# are the caller's when it set them: a proxy client sends its metadata as it likes, so they are
# masked too; the ``user_api_key_*`` ones a proxy client cannot set (``proxy.identity.stamp``).
_CALLER_MAY_FILL = frozenset(
    {"usage_object", "applied_guardrails", "used_client_oauth_token", "answered_by_pre_call_hook"}
)
_OWN_METADATA_FIELDS = (
    (frozenset(STANDARD_METADATA_KEYS) - _FREE_FORM_METADATA) | {"user_api_end_user_max_budget"}
) - _CALLER_MAY_FILL

# fields lmgate knows that are not credential names, and the values that are nothing to mask (an
# empty container or text, a flag, None): ``_masked_metadata`` gives such fields back as they are
_KNOWN_NOT_SECRET = frozenset(
    name
    for name in (_FREE_FORM_METADATA | _CALLER_MAY_FILL | {"requester_metadata"})
    if not is_secret_name(name)
)
_EMPTY_TYPES = frozenset({dict, list, str, bool, type(None)})

# the price-map fields of an entry, as the reference's ``model_map_information`` shows them
_NO_PRICE_KEYS = ("input_cost_per_token", "output_cost_per_token")


def model_map_information(price_key: str | None, model: str | None) -> dict[str, Any]:
    """The price-map entry the cost came from (``model_map_value`` None when there is none).

    The price table is loaded once and never changes, so the answer for a (price key, model) is
    kept: payloads are encoded, never changed, and a reader gets a copy of its own
    (``payload_copy``). Made afresh each call it cost ~15,000 instructions (the import and copy)."""
    key = (price_key, model)
    known = _model_map_cache.get(key)
    if known is None:
        value = None
        if price_key:
            from ..cost import price_table  # loaded already: the call was priced with it

            entry = price_table().get(price_key)
            value = dict(entry) if entry is not None else None
        known = {"model_map_key": price_key or model or "", "model_map_value": value}
        if len(_model_map_cache) >= _MODEL_MAP_CACHE_SIZE:
            _model_map_cache.clear()  # bounded: clients choose model names
        _model_map_cache[key] = known
    return known


_model_map_cache: dict[tuple[str | None, str | None], dict[str, Any]] = {}
_MODEL_MAP_CACHE_SIZE = 1024


def zero_cost_diagnostic(
    cost: float | None, cache_hit: bool | None, model: str | None
) -> dict[str, Any] | None:
    """Why the cost is not a positive number: no price known (cost null), or none applied."""
    if cost is None:
        return {
            "reason": "missing_pricing_key",
            "pricing_model": model or "",
            "missing_pricing_keys": list(_NO_PRICE_KEYS),
        }
    if cost == 0 and not cache_hit:
        return {"reason": "pricing_not_applied", "pricing_model": model or "", "missing_pricing_keys": []}
    return None


_NO_ERROR: dict[str, str] = {
    "error_code": "",
    "error_class": "",
    "llm_provider": "",
    "traceback": "",
    "error_message": "",
}


def request_tags(metadata: dict[str, Any]) -> tuple[list[str], str | None]:
    """``metadata["tags"]`` as the payload's ``request_tags`` (a list of strings), and what was
    wrong with it, if anything: a string or a dict is not taken apart into characters or keys."""
    tags = metadata.get("tags")
    if tags is None:
        return [], None
    if isinstance(tags, (list, tuple)) and all(isinstance(t, str) for t in tags):
        return list(tags), None
    if isinstance(tags, (list, tuple)):
        kinds = ", ".join(sorted({type(t).__name__ for t in tags if not isinstance(t, str)}))
        kept = [t for t in tags if isinstance(t, str)]
        return kept, f"metadata.tags must hold strings only; left out: {kinds}"
    return [], f"metadata.tags must be a list of strings, got {type(tags).__name__}"


def payload_copy(summary: CallSummary, redact: bool = False) -> dict[str, Any]:
    """A private copy of the payload (redacted for loggers that asked for it)."""
    return orjson.loads(summary.payload_json(redact))  # type: ignore[no-any-return]


def payload_json(summary: CallSummary, redact: bool = False) -> bytes:
    """The payload as JSON for one reader: the shared encoding, or (redacted for this reader only)
    one encoded for it."""
    return summary.payload_json(redact)


_other_names: dict[tuple[Any, ...], tuple[tuple[Any, ...], bool]] = {}


def _masked_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` with credentials masked: a value under a credential name (``api_key``,
    ``password``, ``Authorization``, ``…_token``) whole, key-shaped text (``sk-…``, ``Bearer …``)
    and every secret lmgate knows inside any other string, at any depth (``_secrets.mask_data``).
    ``metadata`` itself when nothing in it needs masking: the fields lmgate fills are skipped and
    the rest is checked once, encoded (no copy of a clean record's metadata)."""
    # the names besides lmgate's own, kept per key tuple: a proxy's calls share one (~21 keys),
    # and the set difference of each call's keys cost ~10,000 instructions; a tuple and a lookup
    # cost a fraction
    shape = tuple(metadata)
    known = _other_names.get(shape)
    if known is None:
        if len(_other_names) >= 256:  # callers whose metadata keys vary: bounded
            _other_names.clear()
        other = metadata.keys() - _OWN_METADATA_FIELDS
        known = _other_names[shape] = (tuple(other), other <= _KNOWN_NOT_SECRET)
    names, all_known = known
    if not names:
        return metadata
    # the usual proxy call: the only fields besides lmgate's own are known ones left empty (its
    # `requester_metadata: {}`); masking gives back the same, so the check's encoding and
    # searches (~15,000 instructions) are skipped
    if all_known:
        for name in names:
            value = metadata[name]
            if type(value) not in _EMPTY_TYPES or value:
                break
        else:
            return metadata
    theirs = {
        name: value
        for name, value in metadata.items()
        if value is not None and name not in _OWN_METADATA_FIELDS
    }
    if not theirs:
        return metadata
    try:
        if not json_may_need_masking(orjson.dumps(theirs).decode()):
            return metadata
    except (TypeError, ValueError):  # not JSON as it is (the record's encoder flags it): look at every part
        pass
    out: dict[str, Any] = {}
    for name, value in metadata.items():
        if value is None or name in _OWN_METADATA_FIELDS:
            out[name] = value
        elif isinstance(name, str) and is_secret_name(name):
            out[name] = MASK
        else:
            out[name] = mask_data(value)
    return out


def build_payload(s: CallSummary) -> dict[str, Any]:
    # the summary's own mappings, not its read-only views: they are encoded, never handed out
    usage, cost_breakdown, optional_params, _, hidden_params = s.encodable()
    usage = usage or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    total = int(usage.get("total_tokens") or (prompt + completion))
    response_id = s.response_id or s.call_id
    if s.cache_hit:
        response_id = f"{response_id}_cache_hit{int(time.time())}"
    end = s.end
    completion_start = s.completion_start if s.completion_start is not None else end
    metadata: dict[str, Any] = _EMPTY_METADATA.copy()  # a copy: ~1/10 of dict.fromkeys' cost
    given = _masked_metadata(s.metadata) if isinstance(s.metadata, dict) else {}
    metadata.update(given)
    metadata.pop(ENCODING_ERRORS_KEY, None)  # ours: set below, never taken from the caller
    metadata.setdefault("requester_metadata", given)
    if metadata["applied_guardrails"] is None:
        metadata["applied_guardrails"] = []  # the reference's empty list
    if metadata["usage_object"] is None:
        metadata["usage_object"] = usage or None  # the reference repeats the usage here
    flags: dict[str, str] = {}
    if s.metadata and not isinstance(s.metadata, dict):
        flags["metadata"] = f"must be an object, got {type(s.metadata).__name__}; left out"
    tags, tags_error = request_tags(metadata)
    if tags_error:
        flags["request_tags"] = tags_error
    if flags:
        metadata[ENCODING_ERRORS_KEY] = flags
        s.flag_payload()
    error_info = _NO_ERROR  # encoded, never changed: one dict for every successful call
    error_str = None
    if s.error is not None:
        error_str = scrub(str(s.error))
        error_info = {
            "error_code": str(getattr(s.error, "status_code", "") or ""),
            "error_class": type(s.error).__name__,
            "llm_provider": getattr(s.error, "llm_provider", None) or s.provider or "",
            "traceback": s.traceback or "",
            "error_message": scrub(str(getattr(s.error, "message", None) or s.error)),
        }
    raw_messages, messages_copy = s.messages_snapshot
    messages: Any = orjson.Fragment(raw_messages) if raw_messages is not None else messages_copy
    if s.redact_all:
        messages = redact_messages(s.messages)
    response: Any = orjson.Fragment(s.response_json) if s.response_json else {}
    if s.redact_all and s.response_json:
        response = redact_response(s.response_snapshot)
    # filled into copies of templates that hold every key in the payload's order: a dict
    # literal of ~60 keys costs ~40,000 instructions (it grows and rehashes as it is built), a
    # template's copy and ~45 stores into keys it has about a third of that
    hidden = _HIDDEN_TEMPLATE.copy()
    hidden["model_id"] = s.model_id
    hidden["cache_key"] = s.cache_key
    hidden["api_base"] = s.api_base
    hidden["response_cost"] = s.cost
    hidden["litellm_overhead_time_ms"] = s.overhead_ms
    hidden["additional_headers"] = (hidden_params or {}).get("additional_headers") or {}
    hidden["litellm_model_name"] = s.model
    hidden["usage_object"] = usage or None
    status = s.status or "failure"
    p = _PAYLOAD_TEMPLATE.copy()
    p["id"] = response_id
    p["litellm_call_id"] = s.call_id
    p["trace_id"] = s.trace_id
    p["call_type"] = s.call_type
    p["stream"] = s.stream
    p["stream_status"] = s.stream_status
    p["status"] = status
    p["status_fields"] = {"llm_api_status": status, "guardrail_status": "not_run"}
    p["response_cost"] = p["cost"] = s.cost
    p["cost_breakdown"] = cost_breakdown
    p["response_cost_failure_debug_info"] = None if s.cost is not None else {"error_str": s.cost_reason}
    p["zero_cost_diagnostic"] = zero_cost_diagnostic(s.cost, s.cache_hit, s.model)
    p["custom_llm_provider"] = s.provider
    p["total_tokens"] = total
    p["prompt_tokens"] = prompt
    p["completion_tokens"] = completion
    p["usage"] = usage
    p["startTime"] = s.start
    p["endTime"] = end
    p["completionStartTime"] = completion_start
    p["response_time"] = end - s.start
    p["model_map_information"] = model_map_information(s.price_key, s.model)
    p["model"] = s.model
    p["response_model"] = s.response_model
    p["model_id"] = s.model_id
    p["model_group"] = s.model_group
    p["api_base"] = (s.api_base or "").rstrip("/")
    p["metadata"] = metadata
    p["cache_hit"] = s.cache_hit
    p["cache_key"] = s.cache_key
    p["saved_cache_cost"] = s.saved_cache_cost
    p["request_tags"] = tags
    p["request_model_access_groups"] = []
    p["end_user"] = s.user
    p["requester_ip_address"] = metadata.get("requester_ip_address")
    p["messages"] = messages
    p["response"] = response
    p["error_str"] = error_str
    p["error_information"] = error_info
    p["model_parameters"] = optional_params
    p["hidden_params"] = hidden
    p["classifier_input"] = {}
    p["originating_request_masked"] = {}
    return p


# every key of the payload in its order, with the values that never change (the rest is
# filled per call by ``build_payload``; a key missing here would land at the end)
_PAYLOAD_TEMPLATE: dict[str, Any] = {
    "id": None,
    "litellm_call_id": None,
    "trace_id": None,
    "session_id": "",
    "call_type": None,
    "stream": None,
    "stream_status": None,
    "status": None,
    "status_fields": None,
    "response_cost": None,
    "cost": None,
    "cost_breakdown": None,
    "response_cost_failure_debug_info": None,
    "cost_finalized": True,  # a library call's cost is final when the event fires
    "zero_cost_diagnostic": None,
    "autorouter_savings": None,
    "autorouter_savings_estimate": None,
    "autorouter_baseline_observation": None,
    "custom_llm_provider": None,
    "total_tokens": None,
    "prompt_tokens": None,
    "completion_tokens": None,
    "usage": None,
    "startTime": None,
    "endTime": None,
    "completionStartTime": None,
    "response_time": None,
    "model_map_information": None,
    "model": None,
    "response_model": None,
    "model_id": None,
    "model_group": None,
    "api_base": None,
    "metadata": None,
    "cache_hit": None,
    "cache_key": None,
    "saved_cache_cost": None,
    "request_tags": None,
    "request_model_access_groups": None,
    "end_user": None,
    "requester_ip_address": None,
    "user_agent": None,
    "messages": None,
    "response": None,
    "error_str": None,
    "error_information": None,
    "model_parameters": None,
    "hidden_params": None,
    "guardrail_information": None,
    "standard_built_in_tools_params": None,
    "classifier_input": None,
    "originating_request_masked": None,
}
_HIDDEN_TEMPLATE: dict[str, Any] = {
    "model_id": None,
    "cache_key": None,
    "api_base": None,
    "response_cost": None,
    "litellm_overhead_time_ms": None,
    "additional_headers": None,
    "litellm_model_name": None,
    "batch_models": None,
    "batch_successful_requests": None,
    "batch_failed_requests": None,
    "upstream_provider": None,
    "usage_object": None,
}
