"""Anthropic Messages request → chat completions request, and chat answer → Anthropic message.

Pure data, no I/O. What cannot be translated is refused with ``MessagesRequestError`` (a 400
``invalid_request_error`` naming the field), never dropped silently — except ``thinking``
blocks in the *input*, which carry no instruction a chat model could follow and are dropped
(their signature only means something to Claude).
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import orjson

from ..providers.anthropic import ERROR_TYPE_STATUS, FINISH_REASONS

CALL_TYPE = "anthropic_messages"  # the reference's call type for this API (CallTypes.anthropic_messages)

# chat finish_reason → Anthropic stop_reason: providers/anthropic.py's table read backwards
# ("stop" has three Anthropic sources; end_turn is the ordinary one)
STOP_REASONS: dict[str, str] = {"stop": "end_turn"}
for _anthropic, _openai in FINISH_REASONS.items():
    STOP_REASONS.setdefault(_openai, _anthropic)
STOP_REASONS["function_call"] = "tool_use"

# HTTP status → Anthropic error type, the inverse of the provider's table
ERROR_TYPES: dict[int, str] = {status: kind for kind, status in ERROR_TYPE_STATUS.items()}
ERROR_TYPES.update({408: "timeout_error", 422: "invalid_request_error", 504: "timeout_error"})

# request keys handled here; any other key is refused (a typo must not vanish)
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stream",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
    }
)


class MessagesRequestError(ValueError):
    """A request this API refuses: 400 ``invalid_request_error``."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status_code = 400
        self.param = param


def error_type(status: int) -> str:
    """The Anthropic error type an HTTP status is sent with."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


# ---- the request ----
def check_request(data: dict[str, Any], strict: bool = True) -> None:
    """The checks Anthropic's API makes before any work: required fields and their types;
    ``strict``: no field this module cannot translate (off when the request is passed through)."""
    unknown = sorted(k for k in data if k not in _KNOWN)
    if unknown and strict:
        raise MessagesRequestError(f"{unknown[0]}: Extra inputs are not permitted", unknown[0])
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise MessagesRequestError("model: Field required (a model name from GET /v1/models)", "model")
    max_tokens = data.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise MessagesRequestError("max_tokens: Field required, an integer >= 1", "max_tokens")
    if max_tokens < 1 or max_tokens > 2**31 - 1:
        raise MessagesRequestError(f"max_tokens: must be >= 1 (got {max_tokens})", "max_tokens")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise MessagesRequestError("messages: Field required, a non-empty list", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise MessagesRequestError(f"messages.{i}.role: must be 'user' or 'assistant'", "messages")
        content = m.get("content")
        if not isinstance(content, (str, list)):
            raise MessagesRequestError(
                f"messages.{i}.content: must be a string or a list of blocks", "messages"
            )
        if isinstance(content, list):
            for j, block in enumerate(content):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    raise MessagesRequestError(
                        f"messages.{i}.content.{j}: a block needs a 'type'", "messages"
                    )
    for key, kinds in (
        ("stream", (bool,)),
        ("temperature", (int, float)),
        ("top_p", (int, float)),
        ("top_k", (int,)),
        ("stop_sequences", (list,)),
        ("tools", (list,)),
        ("tool_choice", (dict,)),
        ("metadata", (dict,)),
        ("thinking", (dict,)),
        ("system", (str, list)),
    ):
        value = data.get(key)
        if value is not None and (
            not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
        ):
            raise MessagesRequestError(f"{key}: wrong type ({type(value).__name__})", key)
    temperature = data.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        raise MessagesRequestError("temperature: must be between 0 and 1", "temperature")


def _text_of(content: Any, where: str) -> str:
    """A string, or the text of a list of text blocks."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if block.get("type") != "text":
            raise MessagesRequestError(
                f"{where}: only text blocks are allowed here, got {block.get('type')!r}"
            )
        parts.append(str(block.get("text", "")))
    return "\n\n".join(parts) if len(parts) > 1 else "".join(parts)


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url":
        url = str(source.get("url"))
    else:
        raise MessagesRequestError(f"{where}: image source type {source.get('type')!r} is not supported")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result_content(block: dict[str, Any], where: str) -> Any:
    content = block.get("content")
    if content is None or isinstance(content, str):
        text = content or ""
    else:
        parts = []
        for j, part in enumerate(content):
            if part.get("type") == "text":
                parts.append({"type": "text", "text": part.get("text", "")})
            elif part.get("type") == "image":
                parts.append(_image_part(part, f"{where}.content.{j}"))
            else:
                raise MessagesRequestError(
                    f"{where}.content.{j}: {part.get('type')!r} is not supported in a tool_result"
                )
        if all(p["type"] == "text" for p in parts):
            text = "".join(p["text"] for p in parts)
        else:
            return parts
    if block.get("is_error"):
        return f"Error: {text}"
    return text


def to_chat_messages(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation in chat completions' form: ``system`` first; a user turn's
    ``tool_result`` blocks become ``tool`` messages (before the turn's other content, as
    Anthropic requires them first); an assistant's ``tool_use`` blocks become ``tool_calls``."""
    out: list[dict[str, Any]] = []
    system = data.get("system")
    if system:
        out.append({"role": "system", "content": _text_of(system, "system")})
    for i, m in enumerate(data["messages"]):
        role = m["role"]
        content = m["content"]
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        where = f"messages.{i}.content"
        if role == "assistant":
            texts: list[str] = []
            calls: list[dict[str, Any]] = []
            for j, block in enumerate(content):
                kind = block["type"]
                if kind == "text":
                    texts.append(str(block.get("text", "")))
                elif kind == "tool_use":
                    calls.append(
                        {
                            "id": block.get("id"),
                            "type": "function",
                            "function": {
                                "name": block.get("name"),
                                "arguments": orjson.dumps(block.get("input") or {}).decode(),
                            },
                        }
                    )
                elif kind in ("thinking", "redacted_thinking"):
                    continue  # see the module docstring
                else:
                    raise MessagesRequestError(
                        f"{where}.{j}: {kind!r} blocks are not supported for this model"
                    )
            message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
            if calls:
                message["tool_calls"] = calls
            out.append(message)
            continue
        parts: list[dict[str, Any]] = []
        for j, block in enumerate(content):
            kind = block["type"]
            if kind == "text":
                parts.append({"type": "text", "text": str(block.get("text", ""))})
            elif kind == "image":
                parts.append(_image_part(block, f"{where}.{j}"))
            elif kind == "tool_result":
                out.append(
                    {
                        "role": "tool",
                        "tool_call_id": block.get("tool_use_id"),
                        "content": _tool_result_content(block, f"{where}.{j}"),
                    }
                )
            else:
                raise MessagesRequestError(f"{where}.{j}: {kind!r} blocks are not supported for this model")
        if parts:
            if all(p["type"] == "text" for p in parts):
                out.append({"role": "user", "content": "".join(p["text"] for p in parts)})
            else:
                out.append({"role": "user", "content": parts})
    return out


def _tool(tool: dict[str, Any], i: int) -> dict[str, Any]:
    if tool.get("type") not in (None, "custom") or "input_schema" not in tool:
        raise MessagesRequestError(
            f"tools.{i}: only custom tools (name, input_schema) are supported for this model, "
            f"got type {tool.get('type')!r}",
            "tools",
        )
    fn: dict[str, Any] = {"name": tool.get("name"), "parameters": tool["input_schema"]}
    if tool.get("description"):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: dict[str, Any]) -> tuple[Any, bool | None]:
    kind = choice.get("type")
    if kind == "auto":
        out: Any = "auto"
    elif kind == "any":
        out = "required"
    elif kind == "none":
        out = "none"
    elif kind == "tool":
        out = {"type": "function", "function": {"name": choice.get("name")}}
    else:
        raise MessagesRequestError(f"tool_choice.type: unknown {kind!r}", "tool_choice")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    return out, parallel


def speaks_messages(call_params: Any) -> bool:
    """Whether a call with these parameters reaches a provider that takes the Messages API as
    it is (``messages_request``: Anthropic's own API), so the request is passed through."""
    from ..providers import resolve

    if call_params.get("mock_response") is not None:
        return False
    try:
        provider, _ = resolve(
            str(call_params.get("model") or ""),
            call_params.get("custom_llm_provider"),
            call_params.get("api_base"),
        )
    except Exception:
        return False
    return hasattr(provider, "messages_request")


_BLOCKS = frozenset({"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"})


def _translatable(data: dict[str, Any]) -> dict[str, Any]:
    """The request without what chat completions cannot carry (other block types, server
    tools, images by file id): for the call's record when the request itself is passed through."""

    def keep(block: Any) -> bool:
        if not isinstance(block, dict) or block.get("type") not in _BLOCKS:
            return False
        if block["type"] == "image":
            return (block.get("source") or {}).get("type") in ("base64", "url")
        return True

    def clean(block: dict[str, Any]) -> dict[str, Any]:
        if block["type"] == "tool_result" and isinstance(block.get("content"), list):
            return dict(
                block, content=[b for b in block["content"] if keep(b) and b["type"] in ("text", "image")]
            )
        return block

    out = dict(data)
    if isinstance(data.get("system"), list):
        out["system"] = [b for b in data["system"] if isinstance(b, dict) and b.get("type") == "text"]
    out["messages"] = [
        dict(m, content=[clean(b) for b in m["content"] if keep(b)])
        if isinstance(m.get("content"), list)
        else m
        for m in data["messages"]
    ]
    if data.get("tools"):
        out["tools"] = [t for t in data["tools"] if t.get("type") in (None, "custom") and "input_schema" in t]
    return out


def to_chat(data: dict[str, Any], strict: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(messages, parameters) for ``completion``; ``metadata.user_id`` becomes ``user``.

    ``strict=False`` when the request will be passed through (``speaks_messages``): what a
    chat request cannot carry is left out of this translation instead of refused, since the
    model receives the original."""
    if not strict:
        data = _translatable(data)
    messages = to_chat_messages(data)
    params: dict[str, Any] = {"max_tokens": data["max_tokens"]}
    for key in ("temperature", "top_p", "top_k", "thinking"):
        if data.get(key) is not None:
            params[key] = data[key]
    if data.get("stop_sequences"):
        params["stop"] = list(data["stop_sequences"])
    if data.get("tools"):
        params["tools"] = [_tool(t, i) for i, t in enumerate(data["tools"])]
    if data.get("tool_choice"):
        choice, parallel = _tool_choice(data["tool_choice"])
        params["tool_choice"] = choice
        if parallel is not None:
            params["parallel_tool_calls"] = parallel
    user_id = (data.get("metadata") or {}).get("user_id")
    if user_id:
        params["user"] = str(user_id)
    return messages, params


def passthrough(data: dict[str, Any], headers: Any = None) -> dict[str, Any]:
    """The ``anthropic_passthrough`` control of a call: the request as sent (a Claude
    deployment gets it unchanged; ``metadata`` keeps only Anthropic's ``user_id``, never what
    the proxy stamps there) and the ``anthropic-version`` / ``anthropic-beta`` headers."""
    body = {k: v for k, v in data.items() if k not in ("stream", "metadata")}
    user_id = (data.get("metadata") or {}).get("user_id")
    if user_id is not None:
        body["metadata"] = {"user_id": user_id}
    sent = {}
    for name in ("anthropic-version", "anthropic-beta"):
        value = headers.get(name) if headers is not None else None
        if value:
            sent[name] = str(value)
    return {"body": body, "headers": sent}


# ---- the answer ----
def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


def anthropic_usage(usage: Any) -> dict[str, int]:
    """OpenAI usage → Anthropic's: cached input counted apart from ``input_tokens``
    (the inverse of ``providers.anthropic.usage_from_anthropic``)."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    cache_read = int(details.get("cached_tokens") or 0)
    cache_write = int(details.get("cache_creation_tokens") or 0)
    prompt = int(usage.get("prompt_tokens") or 0)
    return {
        "input_tokens": max(prompt - cache_read - cache_write, 0),
        "output_tokens": int(usage.get("completion_tokens") or 0),
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
    }


def parse_arguments(arguments: Any) -> Any:
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw": arguments}  # a model's broken JSON, kept rather than lost


def stop_reason(finish: Any, stop: Any = None) -> str | None:
    if finish is None:
        return None
    return STOP_REASONS.get(str(finish), "end_turn")


def to_message(response: Any, model: str, raw: bool = True) -> dict[str, Any]:
    """A chat completion → an Anthropic ``message``; a pass-through's answer as it came
    (``raw``: unless something may have changed the response since)."""
    sent = getattr(response, "_anthropic_message", None) if raw else None
    if isinstance(sent, dict):
        return sent
    choice = (response.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "toolu_" + uuid.uuid4().hex[:24],
                "name": fn.get("name"),
                "input": parse_arguments(fn.get("arguments")),
            }
        )
    rid = str(response.get("id") or "")
    return {
        "id": rid if rid.startswith("msg_") else new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason") or "stop"),
        "stop_sequence": None,
        "usage": anthropic_usage(response.get("usage")),
    }


# ---- count_tokens ----
def estimate_input_tokens(data: dict[str, Any]) -> int:
    """An estimate of a request's input tokens, for models whose provider has no counting
    endpoint: the UTF-8 bytes of the translated conversation and tools, 4 to a token (the
    usual average for English text), plus 3 per message for its framing. Images count by
    their encoded size, so they are overestimated."""
    messages, params = to_chat(dict(data, max_tokens=data.get("max_tokens") or 1))
    size = len(orjson.dumps(messages)) + len(orjson.dumps(params.get("tools") or []))
    return math.ceil(size / 4) + 3 * len(messages)
