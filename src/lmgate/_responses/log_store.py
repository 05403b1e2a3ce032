"""Stored responses read back from the log store (``callbacks: ["store"]``, docs/store.md).

A response lmgate answered itself has an id that names its call: ``resp_`` + 32 hex digits,
the call's ``litellm_call_id`` being the same digits in UUID form (``call_id_for``). The log
store keeps every call's payload under that id — the chat messages sent and the chat answer —
so a response the in-process store no longer holds (a restart, another worker, evicted) is
rebuilt from it: the conversation as Responses input items, the answer as a ``response``. What
the payload does not carry is not rebuilt: the request's echoed settings (``instructions``,
``tools``, ``metadata``, …) read as their defaults, and ``instructions`` come back as the
conversation's first ``system`` message. A payload with its messages redacted
(``turn_off_message_logging``) or cut (``max_record_bytes``) cannot be continued: not found.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from .._callbacks.redact import REDACTED_TEXT
from .translate import function_call_item, message_item, to_response

logger = logging.getLogger("lmgate.responses")

_HEX = frozenset("0123456789abcdef")


def call_id_for(response_id: str) -> str | None:
    """The ``litellm_call_id`` of the call that answered ``response_id`` (None: not lmgate's)."""
    digits = response_id[5:] if response_id.startswith("resp_") else ""
    if len(digits) != 32 or not _HEX.issuperset(digits):
        return None
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def log_store() -> Any:
    """The log store the ``store`` logger writes to, when that logger is on; else None."""
    import sys

    from ..settings import DEFAULT

    loggers = sys.modules.get("lmgate.loggers.store")  # imported by anyone who made a StoreLogger
    for names in DEFAULT.callback_lists:
        for entry in names or ():
            if loggers is not None and isinstance(entry, loggers.StoreLogger):
                return entry.store
            if entry == "store":  # a name, resolved when a call is made
                from .._callbacks.registry import resolve_callback

                try:
                    return resolve_callback("store").store
                except Exception as error:  # noqa: BLE001 - no store: the in-process one answers alone
                    logger.warning("responses: the log store cannot be read: %s", error)
                    return None
    return None


def _part(part: Any) -> dict[str, Any]:
    if isinstance(part, dict) and part.get("type") == "image_url":
        image = part.get("image_url") or {}
        return {"type": "input_image", "image_url": image.get("url"), "detail": image.get("detail", "auto")}
    return {"type": "input_text", "text": str(part.get("text", "") if isinstance(part, dict) else part)}


def chat_to_items(messages: list[Any]) -> list[dict[str, Any]]:
    """Chat messages → Responses input items (the inverse of ``translate.to_chat_messages``)."""
    items: list[dict[str, Any]] = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        role, content = m.get("role"), m.get("content")
        if role == "tool":
            items.append(
                {"type": "function_call_output", "call_id": m.get("tool_call_id"), "output": content or ""}
            )
        elif role == "assistant":
            if content:
                items.append(
                    message_item(content if isinstance(content, str) else orjson.dumps(content).decode())
                )
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                items.append(
                    function_call_item(call.get("id"), fn.get("name") or "", fn.get("arguments") or "{}")
                )
        elif role in ("user", "system", "developer"):
            parts = content if isinstance(content, str) else [_part(p) for p in content or []]
            items.append({"type": "message", "role": role, "content": parts})
    return items


def from_log_store(response_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], str | None] | None:
    """(response, conversation, owner key hash) rebuilt from the log store, or None."""
    call_id = call_id_for(response_id)
    store = log_store() if call_id else None
    if store is None:
        return None
    try:
        row = store.get(call_id)
    except Exception as error:  # noqa: BLE001 - a locked or missing database: not found
        logger.warning("responses: reading %s from the log store failed: %s", response_id, error)
        return None
    payload = (row or {}).get("payload")
    if not isinstance(payload, dict) or payload.get("status") != "success":
        return None
    if payload.get("call_type") not in ("responses", "aresponses"):
        return None
    messages, answer = payload.get("messages"), payload.get("response")
    if not isinstance(messages, list) or not isinstance(answer, dict) or not answer.get("choices"):
        return None  # cut
    if REDACTED_TEXT.encode() in orjson.dumps([messages, answer]):
        return None  # redacted: nothing to continue from
    model = str(payload.get("model_group") or payload.get("model") or "")
    response = to_response(answer, {"model": model}, response_id, model)
    response["created_at"] = int(payload.get("startTime") or response["created_at"])
    owner = (payload.get("metadata") or {}).get("user_api_key_hash")
    return response, chat_to_items(messages), owner
