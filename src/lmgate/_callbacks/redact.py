"""Message redaction (``turn_off_message_logging``).

Prompt and completion text are replaced in what callbacks receive; the response returned to
the caller is never touched. Secret masking lives in ``lmgate._secrets``.
"""

from __future__ import annotations

from typing import Any

# the reference's placeholder: receivers that filter redacted records match on this very string
REDACTED_TEXT = "redacted-by-litellm"


def redact_messages(messages: Any) -> Any:
    """Messages with their text replaced, keeping roles and structure."""
    if not isinstance(messages, list):
        return [{"role": "user", "content": REDACTED_TEXT}] if messages else messages
    out = []
    for m in messages:
        if isinstance(m, dict):
            m = dict(m)
            if m.get("content") is not None:
                m["content"] = REDACTED_TEXT
            if m.get("tool_calls"):
                m["tool_calls"] = [_redact_tool_call(t) for t in m["tool_calls"]]
        out.append(m)
    return out


def _like(original: Any, items: dict[str, Any]) -> Any:
    """``items`` as an object of ``original``'s class (``Choices``, ``Message``, …), so a redacted
    ``response_obj.choices[0].message.content`` reads as the reference's does; plain dicts stay plain."""
    build = getattr(type(original), "_build", None)
    return items if build is None else build(items)


def _redact_tool_call(call: Any) -> Any:
    if not isinstance(call, dict):
        return call
    out = dict(call)
    fn = out.get("function")
    if isinstance(fn, dict):
        fn_out = dict(fn)
        fn_out["arguments"] = REDACTED_TEXT
        out["function"] = _like(fn, fn_out)
    return _like(call, out)


def redact_response(response: Any) -> Any:
    """A copy of a response with generated text (and embeddings) removed; nested response types kept."""
    if not isinstance(response, dict):
        return {"text": REDACTED_TEXT} if response is not None else None
    out = {k: v for k, v in response.items()}
    if isinstance(out.get("choices"), list):
        choices = []
        for choice in out["choices"]:
            if not isinstance(choice, dict):
                choices.append(choice)
                continue
            c = dict(choice)
            for part in ("message", "delta"):
                if isinstance(c.get(part), dict):
                    msg = dict(c[part])
                    if msg.get("content") is not None:
                        msg["content"] = REDACTED_TEXT
                    if msg.get("tool_calls"):
                        msg["tool_calls"] = [_redact_tool_call(t) for t in msg["tool_calls"]]
                    c[part] = _like(c[part], msg)
            choices.append(_like(choice, c))
        out["choices"] = choices
    if out.get("object") == "list" and isinstance(out.get("data"), list):
        out["data"] = []
    return out


__all__ = [
    "REDACTED_TEXT",
    "redact_messages",
    "redact_response",
]
