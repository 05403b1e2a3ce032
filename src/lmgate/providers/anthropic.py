"""Anthropic's Messages API, translated to and from OpenAI shapes.

Requests: system messages move to ``system``; ``stop`` becomes ``stop_sequences``; tool
definitions, tool choices, assistant tool calls and ``tool`` results take Anthropic's block
form; consecutive messages of one role are merged (the API wants turns to alternate);
``max_tokens`` gets a default because the API requires it.

Responses: text blocks join into ``message.content``, ``tool_use`` blocks become
``tool_calls``, ``stop_reason`` becomes ``finish_reason``, and usage counts cache reads and
writes as prompt tokens (with ``prompt_tokens_details.cached_tokens``). Streams: the SSE
events (``message_start``, ``content_block_*``, ``message_delta``, ``error``) become chunks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import orjson

from .. import exceptions as exc
from ..types import (
    ChatCompletionDeltaToolCall,
    ChatCompletionMessageToolCall,
    Choices,
    Delta,
    Function,
    Message,
    ModelResponse,
    ModelResponseStream,
    StreamingChoices,
    Usage,
)
from .base import Endpoint, HttpRequest, Provider, StreamTranslator, is_context_window_error

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

# the HTTP status each documented error type is sent with; an error event mid-stream has only the type
ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicProvider(Provider):
    name: ClassVar[str] = "anthropic"
    key_env: tuple[str, ...] = ("ANTHROPIC_API_KEY",)
    base_env: tuple[str, ...] = ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE")
    default_api_base: ClassVar[str | None] = "https://api.anthropic.com"
    supported_params: ClassVar[frozenset[str] | None] = frozenset(
        {
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "top_p",
            "top_k",
            "stop",
            "stream",
            "stream_options",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "user",
            "n",
            "thinking",
        }
    )
    supports_embeddings: ClassVar[bool] = False

    def endpoint(
        self, model: str, api_base: str | None, api_key: str | None, api_version: str | None
    ) -> Endpoint:
        ep = super().endpoint(model, api_base, api_key, api_version)
        base = ep.api_base
        if base.endswith("/v1"):  # accept both https://host and https://host/v1
            base = base[: -len("/v1")]
        return dataclasses.replace(ep, api_base=base)

    def check_params(self, params: dict[str, Any]) -> list[str]:
        """Names this API cannot take (beyond the unsupported-name list: n > 1)."""
        bad = [k for k in params if k not in (self.supported_params or ())]
        if params.get("n") not in (None, 1) and "n" not in bad:
            bad.append("n")
        return bad

    def chat_request(
        self, ep: Endpoint, messages: list[dict[str, Any]], params: dict[str, Any], stream: bool
    ) -> HttpRequest:
        system, turns = translate_messages(messages)
        body: dict[str, Any] = {"model": ep.model, "messages": turns}
        if system:
            body["system"] = system
        max_tokens = params.get("max_tokens") or params.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
        body["max_tokens"] = max_tokens
        for key in ("temperature", "top_p", "top_k", "thinking"):
            if params.get(key) is not None:
                body[key] = params[key]
        stop = params.get("stop")
        if stop:
            body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if params.get("tools"):
            body["tools"] = [translate_tool(t) for t in params["tools"]]
        choice = translate_tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))
        if choice is not None:
            body["tool_choice"] = choice
        if params.get("user"):
            body["metadata"] = {"user_id": params["user"]}
        if stream:
            body["stream"] = True
        headers = {"Content-Type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if ep.api_key:
            headers["x-api-key"] = ep.api_key
        return HttpRequest("POST", f"{ep.api_base}/v1/messages", headers, body)

    def messages_request(
        self, ep: Endpoint, body: dict[str, Any], headers: dict[str, str], stream: bool, path: str = ""
    ) -> HttpRequest:
        """A Messages API request passed through as the client sent it (``anthropic_messages``
        on a Claude deployment): only the model, the stream flag and the key are this side's;
        the client's ``anthropic-version`` and ``anthropic-beta`` go with it. ``path``
        ``"count_tokens"``: the same request to the token counter."""
        sent = dict(body, model=ep.model)
        sent.pop("stream", None)
        if stream:
            sent["stream"] = True
        out = {"Content-Type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        out.update({k: v for k, v in headers.items() if k in ("anthropic-version", "anthropic-beta")})
        if ep.api_key:
            out["x-api-key"] = ep.api_key
        url = f"{ep.api_base}/v1/messages" + (f"/{path}" if path else "")
        return HttpRequest("POST", url, out, sent)

    def parse_chat(self, body: dict[str, Any], ep: Endpoint) -> ModelResponse:
        text_parts: list[str] = []
        tool_calls: list[ChatCompletionMessageToolCall] = []
        for block in body.get("content") or []:
            kind = block.get("type")
            if kind == "text":
                text_parts.append(block.get("text", ""))
            elif kind == "tool_use":
                tool_calls.append(
                    ChatCompletionMessageToolCall._build(
                        {
                            "id": block.get("id"),
                            "type": "function",
                            "function": Function._build(
                                {
                                    "name": block.get("name"),
                                    "arguments": orjson.dumps(block.get("input") or {}).decode(),
                                }
                            ),
                        }
                    )
                )
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(text_parts) if text_parts else None,
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        finish = FINISH_REASONS.get(body.get("stop_reason") or "", body.get("stop_reason"))
        response = ModelResponse._build(
            {
                "id": body.get("id"),
                "object": "chat.completion",
                "created": _now(),
                "model": body.get("model") or ep.model,
                "choices": [
                    Choices._build(
                        {
                            "index": 0,
                            "message": Message._build(message),
                            "finish_reason": finish,
                            "logprobs": None,
                        }
                    )
                ],
                "usage": usage_from_anthropic(body.get("usage") or {}),
            }
        )
        response._anthropic_message = body  # the answer as sent, for a pass-through (never serialised)
        return response

    def stream_translator(self, ep: Endpoint) -> StreamTranslator:
        return _AnthropicStream(self, ep)

    def error_message(self, body: Any) -> tuple[str, str | None]:
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            return str(err.get("message") or ""), err.get("type")
        return super().error_message(body)


def _now() -> int:
    import time

    return int(time.time())


def usage_from_anthropic(u: dict[str, Any]) -> Usage:
    """Anthropic counts cached input apart; OpenAI's prompt_tokens include it."""
    cache_read = int(u.get("cache_read_input_tokens") or 0)
    cache_write = int(u.get("cache_creation_input_tokens") or 0)
    prompt = int(u.get("input_tokens") or 0) + cache_read + cache_write
    completion = int(u.get("output_tokens") or 0)
    return Usage._build(
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cache_read, "cache_creation_tokens": cache_write},
        }
    )


def translate_tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function", tool)
    out = {"name": fn["name"], "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def translate_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        out = {"type": "tool", "name": name}
    else:
        raise exc.BadRequestError(f"unsupported tool_choice {choice!r}", "anthropic")
    if parallel is False:
        out = dict(out or {"type": "auto"})
        out["disable_parallel_tool_use"] = True
    return out


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
            if url.startswith("data:"):
                header, _, data = url.partition(",")
                media = header[len("data:") :].split(";")[0]
                blocks.append(
                    {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
                )
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        else:
            blocks.append(part)
    return blocks


def translate_messages(messages: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """(system, turns) in Anthropic's form."""
    system_parts: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": list(blocks)})

    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            content = m.get("content")
            if isinstance(content, list):
                system_parts.extend(p.get("text", "") for p in content if p.get("type") == "text")
            elif content:
                system_parts.append(str(content))
        elif role == "tool":
            content = m.get("content")
            add(
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": m.get("tool_call_id"),
                        "content": content if isinstance(content, str) else _content_blocks(content),
                    }
                ],
            )
        elif role == "assistant":
            blocks = _content_blocks(m.get("content"))
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                args = fn.get("arguments") or "{}"
                try:
                    parsed = orjson.loads(args) if isinstance(args, (str, bytes)) else args
                except orjson.JSONDecodeError:
                    parsed = {"_raw": args}
                blocks.append(
                    {"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": parsed}
                )
            add("assistant", blocks)
        else:
            add("user", _content_blocks(m.get("content")))
    system: Any = "\n\n".join(system_parts) if system_parts else None
    # collapse single-text turns back to strings: smaller bodies, identical meaning
    for t in turns:
        c = t["content"]
        if len(c) == 1 and c[0].get("type") == "text":
            t["content"] = c[0]["text"]
    return system, turns


class _AnthropicStream(StreamTranslator):
    """Anthropic SSE events → OpenAI chunks."""

    def __init__(self, provider: AnthropicProvider, ep: Endpoint) -> None:
        self.provider = provider
        self.ep = ep
        self.done = False
        self.id = ""
        self.model = ep.model
        self.created = _now()
        self.input_usage: dict[str, Any] = {}
        self.tool_index_by_block: dict[int, int] = {}
        # keep_events (a pass-through): every event rides on a chunk (``_anthropic_event``),
        # one with no delta of its own (ping, content_block_stop, message_stop) on an empty chunk

    def feed(self, event: str, data: str) -> list[ModelResponseStream]:
        chunks = self._feed(event, data)
        if self.keep_events and data:
            if not chunks:
                chunks = [self._chunk({})]
            chunks[0]._anthropic_event = orjson.loads(data)
        return chunks

    def _chunk(
        self, delta: dict[str, Any], finish: str | None = None, usage: Usage | None = None
    ) -> ModelResponseStream:
        data: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                StreamingChoices._build(
                    {"index": 0, "delta": Delta._build(delta), "finish_reason": finish, "logprobs": None}
                )
            ],
        }
        if usage is not None:
            data["usage"] = usage
        return ModelResponseStream._build(data)

    def _feed(self, event: str, data: str) -> list[ModelResponseStream]:
        if not data:
            return []
        obj = orjson.loads(data)
        kind = obj.get("type") or event
        if kind == "message_start":
            msg = obj.get("message") or {}
            self.id = msg.get("id") or self.id
            self.model = msg.get("model") or self.model
            self.input_usage = msg.get("usage") or {}
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = obj.get("content_block") or {}
            if block.get("type") == "tool_use":
                tool_index = len(self.tool_index_by_block)
                self.tool_index_by_block[obj.get("index", 0)] = tool_index
                call = ChatCompletionDeltaToolCall._build(
                    {
                        "index": tool_index,
                        "id": block.get("id"),
                        "type": "function",
                        "function": Function._build({"name": block.get("name"), "arguments": ""}),
                    }
                )
                return [self._chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = obj.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                tool_index = self.tool_index_by_block.get(obj.get("index", 0), 0)
                call = ChatCompletionDeltaToolCall._build(
                    {
                        "index": tool_index,
                        "function": Function._build({"arguments": delta.get("partial_json", "")}),
                    }
                )
                return [self._chunk({"tool_calls": [call]})]
            return []
        if kind == "message_delta":
            delta = obj.get("delta") or {}
            usage = dict(self.input_usage)
            usage.update({k: v for k, v in (obj.get("usage") or {}).items() if v is not None})
            finish = FINISH_REASONS.get(delta.get("stop_reason") or "", delta.get("stop_reason"))
            return [self._chunk({}, finish=finish, usage=usage_from_anthropic(usage))]
        if kind == "message_stop":
            self.done = True
            return []
        if kind == "error":
            err = obj.get("error") or {}
            status = ERROR_TYPE_STATUS.get(err.get("type") or "", 500)
            message = str(err.get("message") or "stream error")
            cls: type[exc.LmgateError] = exc.exception_for_status(status)
            if status == 400 and is_context_window_error(message, err.get("type")):
                cls = exc.ContextWindowExceededError
            raise cls(message, "anthropic", self.ep.model, status_code=status, body=obj)
        return []  # ping, content_block_stop and future event types
