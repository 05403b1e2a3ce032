"""Secret masking and message redaction.

Two layers keep keys out of logs, payloads and error messages:

* every key lmgate sends is remembered (a bounded set) and masked wherever its exact text
  appears, whatever its shape;
* patterns catch the shapes keys usually have (``sk-…``, ``Bearer …``, ``x-api-key: …``),
  for secrets lmgate never saw (a key quoted back in a provider's error body, say).

Message redaction (``turn_off_message_logging``) replaces prompt and completion text in what
callbacks receive; the response returned to the caller is never touched.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any

REDACTED_TEXT = "redacted-by-lmgate"
_MAX_REMEMBERED_SECRETS = 512
_SECRET_HEADER_WORDS = ("authorization", "api-key", "api_key", "apikey", "token", "secret", "password", "key")

_PATTERNS = [
    # provider-style keys: sk-..., sk-ant-..., sk-proj-...
    re.compile(r"\b(sk-[A-Za-z0-9_\-]{4})[A-Za-z0-9_\-]{8,}"),
    # Authorization header values
    re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9_\-\.=:/+]{6,}"),
    re.compile(r"(?i)\b(basic\s+)[A-Za-z0-9+/=]{6,}"),
    # key=value pairs in URLs, logs and reprs
    re.compile(r"(?i)((?:api[_-]?key|x-api-key|access[_-]?token|password|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&}]{4,}"),
]

_known_lock = threading.Lock()
_known: OrderedDict[str, str] = OrderedDict()


def mask_key(secret: str | None) -> str | None:
    """A form of ``secret`` safe to show: a short prefix and the last four characters."""
    if secret is None:
        return None
    secret = str(secret)
    if len(secret) < 16:
        return "****"
    return f"{secret[:3]}****{secret[-4:]}"


def remember_secret(secret: str | None) -> None:
    """Mask this exact text wherever it appears from now on."""
    if not secret or len(secret) < 6:
        return
    with _known_lock:
        if secret in _known:
            _known.move_to_end(secret)
            return
        _known[secret] = mask_key(secret) or "****"
        while len(_known) > _MAX_REMEMBERED_SECRETS:
            _known.popitem(last=False)


def mask_secrets(text: str) -> str:
    """``text`` with every known key and every key-shaped string masked."""
    if not text:
        return text
    if _known:
        with _known_lock:
            pairs = list(_known.items())
        for secret, masked in pairs:
            if secret in text:
                text = text.replace(secret, masked)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "****", text)
    return text


def is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_HEADER_WORDS)


def mask_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``headers`` with credential-bearing values masked."""
    if not headers:
        return {}
    return {k: (mask_key(str(v)) if is_secret_header(k) else v) for k, v in headers.items()}


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


def _redact_tool_call(call: Any) -> Any:
    if not isinstance(call, dict):
        return call
    call = dict(call)
    fn = call.get("function")
    if isinstance(fn, dict):
        fn = dict(fn)
        fn["arguments"] = REDACTED_TEXT
        call["function"] = fn
    return call


def redact_response(response: Any) -> Any:
    """A plain-dict copy of a response with generated text (and embeddings) removed."""
    if not isinstance(response, dict):
        return {"text": REDACTED_TEXT} if response is not None else None
    out = {k: v for k, v in response.items()}
    if isinstance(out.get("choices"), list):
        choices = []
        for c in out["choices"]:
            c = dict(c)
            for part in ("message", "delta"):
                if isinstance(c.get(part), dict):
                    msg = dict(c[part])
                    if msg.get("content") is not None:
                        msg["content"] = REDACTED_TEXT
                    if msg.get("tool_calls"):
                        msg["tool_calls"] = [_redact_tool_call(t) for t in msg["tool_calls"]]
                    c[part] = msg
            choices.append(c)
        out["choices"] = choices
    if out.get("object") == "list" and isinstance(out.get("data"), list):
        out["data"] = []
    return out
