"""Cache keys: which parts of a call decide its answer, hashed.

A key is the SHA-256 (hex) of a canonical JSON document (orjson, keys sorted at every level)::

    {"v": 1, "kind": "chat", "provider": "openai", "model": "gpt-4o-mini",
     "api_base": None, "api_version": None, "messages": [...], "params": {...}}

``params`` holds every provider parameter (temperature, tools, response_format, seed, …)
except the few that never change the answer (``NON_KEY_PARAMS``). lmgate's own parameters
(api_key, metadata, timeout, retries, callbacks, mock_response, …) are not provider
parameters, so they never enter the key. ``stream`` is not part of the key either: a streamed
call and a plain call with the same input share one entry.

Embeddings get one key per input (``"kind": "embedding"`` and ``"input"`` instead of
``"messages"``), so an input cached by one call serves any later call that contains it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

#: bump when the canonical document changes shape, so old entries are never misread
KEY_VERSION = 1
#: provider parameters that never change the answer
NON_KEY_PARAMS = frozenset({"stream", "stream_options", "user"})

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _default(value: Any) -> Any:
    """Objects orjson cannot encode: schemas for pydantic classes and models, else ``repr``.

    ``repr`` of an arbitrary object may hold its address, so such a call never hits: a missed
    hit costs a provider call, a wrong hit would return someone else's answer.
    """
    schema = getattr(value, "model_json_schema", None)
    if isinstance(value, type) and callable(schema):
        return {"__schema__": schema()}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
    return repr(value)


def _params(params: dict[str, Any]) -> dict[str, Any]:
    if not NON_KEY_PARAMS.intersection(params):
        return params
    return {k: v for k, v in params.items() if k not in NON_KEY_PARAMS}


def _head(call: Any, kind: str) -> dict[str, Any]:
    control = call.control
    return {
        "v": KEY_VERSION,
        "kind": kind,
        "provider": call.provider_name,
        "model": call.model_name,
        # a different server answers differently, even under the same model name
        "api_base": control.get("api_base") or control.get("base_url"),
        "api_version": control.get("api_version"),
        "params": _params(call.params),
    }


def chat_key(call: Any) -> str:
    """The key of a chat call."""
    doc = _head(call, "chat")
    doc["messages"] = call.payload
    return hashlib.sha256(orjson.dumps(doc, default=_default, option=_OPTIONS)).hexdigest()


def embedding_keys(call: Any) -> list[str]:
    """One key per input of an embedding call, in input order."""
    doc = _head(call, "embedding")
    keys = []
    for item in call.payload:
        doc["input"] = item
        keys.append(hashlib.sha256(orjson.dumps(doc, default=_default, option=_OPTIONS)).hexdigest())
    return keys


def combined_key(keys: list[str]) -> str:
    """The key shown for a call that has several (an embedding call with several inputs)."""
    if len(keys) == 1:
        return keys[0]
    return hashlib.sha256(",".join(keys).encode()).hexdigest()
