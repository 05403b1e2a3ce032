"""OpenAI Responses request → chat completions request, and chat answer → Responses ``response``.

Pure data, no I/O. What a chat request cannot carry is refused with ``ResponsesRequestError``
(a 400 ``invalid_request_error`` naming the parameter), never dropped silently — except
``reasoning`` items in the *input*, which carry no instruction a chat model could follow
(their encrypted content only means something to OpenAI), and request options that only
steer OpenAI's own service (``include``, ``truncation``, ``service_tier``, …, see ``_IGNORED``).
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import orjson

# the reference's call types for this API (CallTypes.responses / aresponses)
CALL_TYPE = "responses"
ACALL_TYPE = "aresponses"

# request keys translated here
_TRANSLATED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "stream",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "temperature",
        "top_p",
        "text",
        "reasoning",
        "metadata",
        "user",
        "store",
        "previous_response_id",
    }
)
# keys of OpenAI's API that steer its service, not the model's answer: accepted, not sent on
_IGNORED = frozenset(
    {"include", "truncation", "service_tier", "prompt_cache_key", "safety_identifier", "stream_options"}
)
# keys of OpenAI's API a chat model cannot honour: refused when the request is translated
_UNTRANSLATABLE = frozenset(
    {"background", "conversation", "prompt", "max_tool_calls", "top_logprobs", "context_management"}
)

# chat finish_reason → (status, incomplete_details.reason)
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


class ResponsesRequestError(ValueError):
    """A request this API refuses: ``status`` (400 by default) ``invalid_request_error``."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.status_code = status
        self.param = param
        self.code = code


def new_id(prefix: str) -> str:
    """``prefix_`` and 32 random hex digits: ids need uniqueness, not cryptographic strength."""
    return f"{prefix}_{_ids.getrandbits(128):032x}"


# the ids' own generator (seeded from os.urandom, again in a forked child): a response id keys the
# response store, and a program that seeds the module's ``random`` before each request must not
# draw the same id again (``previous_response_id`` would continue another conversation)
_ids = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.seed)


# ---- the request ----
def check_request(data: dict[str, Any], strict: bool = True) -> None:
    """The checks OpenAI's API makes before any work: required fields and their types;
    ``strict``: nothing this module cannot translate (off when the request is passed through)."""
    if strict:
        for key in data:
            if key in _UNTRANSLATABLE:
                raise ResponsesRequestError(
                    f"{key!r} is not supported for this model (only OpenAI deployments take it)", key
                )
            if key not in _TRANSLATED and key not in _IGNORED:
                raise ResponsesRequestError(f"Unknown parameter: '{key}'.", key, "unknown_parameter")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise ResponsesRequestError(
            "Missing required parameter: 'model'.", "model", "missing_required_parameter"
        )
    items = data.get("input")
    if items is None and not data.get("previous_response_id"):
        raise ResponsesRequestError(
            "Missing required parameter: 'input'.", "input", "missing_required_parameter"
        )
    if items is not None and not isinstance(items, (str, list)):
        raise ResponsesRequestError(
            "Invalid type for 'input': expected a string or an array of input items.", "input", "invalid_type"
        )
    if isinstance(items, list):
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ResponsesRequestError(
                    f"Invalid type for 'input[{i}]': expected an object.", f"input[{i}]"
                )
    for key, kinds in (
        ("stream", (bool,)),
        ("store", (bool,)),
        ("parallel_tool_calls", (bool,)),
        ("temperature", (int, float)),
        ("top_p", (int, float)),
        ("max_output_tokens", (int,)),
        ("instructions", (str,)),
        ("tools", (list,)),
        ("tool_choice", (str, dict)),
        ("text", (dict,)),
        ("reasoning", (dict,)),
        ("metadata", (dict,)),
        ("user", (str,)),
        ("previous_response_id", (str,)),
    ):
        value = data.get(key)
        if value is not None and (
            not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
        ):
            raise ResponsesRequestError(
                f"Invalid type for '{key}': got {type(value).__name__}.", key, "invalid_type"
            )
    temperature = data.get("temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        raise ResponsesRequestError(
            f"Invalid 'temperature': decimal above maximum value. Expected a value <= 2, got {temperature}.",
            "temperature",
            "decimal_above_max_value" if temperature > 2 else "decimal_below_min_value",
        )
    tokens = data.get("max_output_tokens")
    if tokens is not None and tokens < 16:
        raise ResponsesRequestError(
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, got {tokens}.",
            "max_output_tokens",
            "integer_below_min_value",
        )


def _part(part: Any, where: str) -> dict[str, Any]:
    """One content part of an input message → a chat content part."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal", ""))}
    if kind == "input_image":
        url = part.get("image_url")
        if not url:
            raise ResponsesRequestError(
                f"{where}: an image by file_id is not supported for this model", where
            )
        image: dict[str, Any] = {"url": url}
        if part.get("detail") and part["detail"] != "auto":
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise ResponsesRequestError(f"{where}: content of type {kind!r} is not supported for this model", where)


def _content(content: Any, where: str) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ResponsesRequestError(f"Invalid type for '{where}': expected a string or an array.", where)
    parts = [_part(p, f"{where}[{j}]") for j, p in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_text(output: Any) -> Any:
    """A function_call_output's ``output``: a string, or a list of content parts."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return _content(output, "output")
    return orjson.dumps(output).decode()


def input_items(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's ``input`` as a list of items (a string is one user message)."""
    items = data.get("input")
    if items is None:
        return []
    if isinstance(items, str):
        return [{"type": "message", "role": "user", "content": items}]
    return list(items)


def to_chat_messages(instructions: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation in chat completions' form: ``instructions`` first as a system message;
    an assistant message and the function calls after it become one assistant turn with
    ``tool_calls``; a ``function_call_output`` becomes a ``tool`` message."""
    out: list[dict[str, Any]] = []
    if instructions:
        out.append({"role": "system", "content": instructions})
    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise ResponsesRequestError(
                    f"Invalid value for '{where}.role': {role!r}; expected user, assistant, system or developer.",
                    f"{where}.role",
                )
            content = _content(item.get("content", ""), f"{where}.content")
            if role == "assistant":
                text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
                out.append({"role": "assistant", "content": text})
            else:
                out.append({"role": "system" if role == "developer" else role, "content": content})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"},
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": _output_text(item.get("output")),
                }
            )
        elif kind == "reasoning":
            continue  # see the module docstring
        else:
            raise ResponsesRequestError(
                f"{where}: input items of type {kind!r} are not supported for this model", f"{where}.type"
            )
    for m in out:  # an assistant turn that only called tools says so with content None
        if m["role"] == "assistant" and m.get("tool_calls") and m.get("content") == "":
            m["content"] = None
    return out


def _tool(tool: Any, i: int) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function" or not tool.get("name"):
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise ResponsesRequestError(
            f"tools[{i}]: only function tools (type, name, parameters) are supported for this model, "
            f"got type {kind!r}",
            f"tools[{i}].type",
        )
    fn: dict[str, Any] = {"name": tool["name"], "parameters": tool.get("parameters") or {"type": "object"}}
    if tool.get("description"):
        fn["description"] = tool["description"]
    if tool.get("strict") is not None:
        fn["strict"] = tool["strict"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise ResponsesRequestError(
        "tool_choice: only 'auto', 'none', 'required' or a function ({type: function, name}) "
        "are supported for this model",
        "tool_choice",
    )


def _response_format(text: dict[str, Any]) -> dict[str, Any] | None:
    fmt = text.get("format")
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("schema"), dict) or not fmt.get("name"):
            raise ResponsesRequestError(
                "text.format: a json_schema format needs 'name' and 'schema'", "text.format"
            )
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise ResponsesRequestError(f"text.format.type: unknown {fmt.get('type')!r}", "text.format.type")


def to_chat(data: dict[str, Any], strict: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(messages, parameters) for ``completion``. ``strict=False`` when the request will be
    passed through: what a chat request cannot carry is left out of this translation (the
    record's view of the call) instead of refused, since the model receives the original."""
    items = input_items(data)
    if not strict:
        items = [
            i
            for i in items
            if (i.get("type") or "message") in ("message", "function_call", "function_call_output")
        ]
        items = [
            dict(
                i, content=[p for p in i["content"] if p.get("type") in ("input_text", "output_text", "text")]
            )
            if isinstance(i.get("content"), list)
            else i
            for i in items
        ]
    messages = to_chat_messages(data.get("instructions"), items)
    params: dict[str, Any] = {}
    if data.get("max_output_tokens") is not None:
        params["max_tokens"] = data["max_output_tokens"]
    for key in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if data.get(key) is not None:
            params[key] = data[key]
    tools = data.get("tools")
    if tools:
        if not strict:
            tools = [t for t in tools if isinstance(t, dict) and t.get("type") == "function"]
        if tools:
            params["tools"] = [_tool(t, i) for i, t in enumerate(tools)]
    if data.get("tool_choice") is not None and (strict or params.get("tools")):
        try:
            params["tool_choice"] = _tool_choice(data["tool_choice"])
        except ResponsesRequestError:
            if strict:
                raise
    if data.get("text"):
        fmt = _response_format(data["text"])
        if fmt is not None:
            params["response_format"] = fmt
    effort = (data.get("reasoning") or {}).get("effort")
    if effort:
        params["reasoning_effort"] = effort
    return messages, params


# ---- the answer ----
def responses_usage(usage: Any) -> dict[str, Any]:
    """OpenAI chat usage → the Responses API's usage object."""
    usage = usage or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


def chat_usage(usage: Any) -> dict[str, Any]:
    """The Responses API's usage → chat usage (the inverse of ``responses_usage``), for cost."""
    usage = usage or {}
    prompt = int(usage.get("input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
        "prompt_tokens_details": {
            "cached_tokens": int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0)
        },
        "completion_tokens_details": {
            "reasoning_tokens": int((usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0)
        },
    }


def message_item(text: str, status: str = "completed", item_id: str | None = None) -> dict[str, Any]:
    return {
        "id": item_id or new_id("msg"),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [output_text(text)] if status == "completed" else [],
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(
    call_id: str, name: str, arguments: str, status: str = "completed", item_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": item_id or new_id("fc"),
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def reasoning_item(text: str) -> dict[str, Any]:
    return {
        "id": new_id("rs"),
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def skeleton(data: dict[str, Any], response_id: str, model: str, metadata: Any = None) -> dict[str, Any]:
    """A ``response`` object echoing the request's settings, with no output yet (``in_progress``)."""
    fmt = (data.get("text") or {}).get("format") or {"type": "text"}
    reasoning = data.get("reasoning") or {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": data.get("instructions"),
        "max_output_tokens": data.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": data.get("parallel_tool_calls", True) is not False,
        "previous_response_id": data.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": data.get("store", True) is not False,
        "temperature": data.get("temperature", 1.0),
        "text": {"format": fmt},
        "tool_choice": data.get("tool_choice", "auto"),
        "tools": list(data.get("tools") or []),
        "top_p": data.get("top_p", 1.0),
        "truncation": data.get("truncation") or "disabled",
        "usage": None,
        "user": data.get("user"),
        "metadata": dict(metadata if metadata is not None else data.get("metadata") or {}),
    }


def finish(response: dict[str, Any], finish_reason: Any, usage: Any) -> dict[str, Any]:
    """The response's end: its status from the chat finish reason, and its usage."""
    reason = _INCOMPLETE.get(str(finish_reason))
    response["status"] = "incomplete" if reason else "completed"
    response["incomplete_details"] = {"reason": reason} if reason else None
    response["usage"] = responses_usage(usage)
    return response


def to_response(
    result: Any, data: dict[str, Any], response_id: str, model: str, metadata: Any = None, raw: bool = True
) -> dict[str, Any]:
    """A chat completion → a Responses ``response``; a pass-through's answer as it came, its id
    OpenAI's (``raw``: unless something may have changed the response since)."""
    sent = getattr(result, "_passthrough_body", None) if raw else None
    if isinstance(sent, dict) and sent.get("object") == "response":
        return sent
    out = skeleton(data, response_id, model, metadata)
    choice = (result.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    items: list[dict[str, Any]] = []
    if message.get("reasoning_content"):
        items.append(reasoning_item(message["reasoning_content"]))
    if message.get("content"):
        items.append(message_item(message["content"]))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments or {}).decode()
        items.append(
            function_call_item(call.get("id") or new_id("call"), str(fn.get("name") or ""), arguments)
        )
    out["output"] = items
    return finish(out, choice.get("finish_reason") or "stop", result.get("usage"))


def error_body(
    message: str, type_: str = "invalid_request_error", param: Any = None, code: Any = None
) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
