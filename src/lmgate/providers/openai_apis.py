"""OpenAI's other generation APIs passed through as they were sent: the Responses API
(``/responses``) and legacy text completions (``/completions``).

A call made with the ``openai_passthrough`` control (``{"api", "body"}``) to a provider that
lists the API in ``passthrough_apis`` sends ``body`` there (the model and the stream flag
this side's). The answer is read back into a chat completion, so usage, cost and callbacks
work as for any call; the body as sent rides on it (``_passthrough_body``), and each stream
event on a chunk (``_passthrough_event``), for the route to answer with unchanged.
"""

from __future__ import annotations

from typing import Any

import orjson

from .. import exceptions as exc
from ..types import ModelResponse, ModelResponseStream
from .base import Endpoint, HttpRequest, StreamTranslator

APIS = ("responses", "completions")


def api_request(provider: Any, ep: Endpoint, api: str, body: dict[str, Any], stream: bool) -> HttpRequest:
    sent = dict(body, model=ep.model)
    sent.pop("stream", None)
    sent.pop("stream_options", None)
    if stream:
        sent["stream"] = True
        if api == "completions":  # the last chunk then carries usage: the cost of a stream is exact
            sent["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return HttpRequest("POST", f"{ep.api_base}/{api}", provider.headers(ep), sent, provider.query(ep))


def _usage_from_responses(usage: Any) -> dict[str, Any]:
    from .._responses.translate import chat_usage

    return chat_usage(usage)


def parse_api(api: str, body: dict[str, Any], ep: Endpoint) -> ModelResponse:
    """The answer of ``api`` as a chat completion, with the body as sent on ``_passthrough_body``."""
    if api == "completions":
        choice = (body.get("choices") or [{}])[0]
        response = ModelResponse(
            {
                "id": body.get("id"),
                "object": "chat.completion",
                "created": body.get("created"),
                "model": body.get("model") or ep.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": choice.get("text") or ""},
                        "finish_reason": choice.get("finish_reason") or "stop",
                    }
                ],
                "usage": body.get("usage") or {},
            }
        )
        response._passthrough_body = body
        return response
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in body.get("output") or []:
        if item.get("type") == "message":
            text += [p.get("text") or "" for p in item.get("content") or [] if p.get("type") == "output_text"]
        elif item.get("type") == "function_call":
            calls.append(
                {
                    "id": item.get("call_id"),
                    "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""},
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
    if calls:
        message["tool_calls"] = calls
    response = ModelResponse(
        {
            "id": body.get("id"),
            "object": "chat.completion",
            "created": int(body.get("created_at") or 0),
            "model": body.get("model") or ep.model,
            "choices": [{"index": 0, "message": message, "finish_reason": _finish(body, bool(calls))}],
            "usage": _usage_from_responses(body.get("usage")),
        }
    )
    response._passthrough_body = body
    return response


def _finish(response: dict[str, Any], called: bool) -> str:
    reason = (response.get("incomplete_details") or {}).get("reason")
    if reason == "max_output_tokens":
        return "length"
    if reason == "content_filter":
        return "content_filter"
    return "tool_calls" if called else "stop"


class ResponsesStream(StreamTranslator):
    """The Responses API's events → chat chunks (text, tool calls, the final usage)."""

    def __init__(self, provider: Any, ep: Endpoint) -> None:
        self.provider = provider
        self.ep = ep
        self.id = ""
        self.model = ep.model
        self.tools: dict[int, int] = {}  # output_index → tool index
        self.called = False

    def _chunk(
        self, delta: dict[str, Any], finish: str | None = None, usage: Any = None
    ) -> ModelResponseStream:
        data: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            data["usage"] = usage
        return ModelResponseStream(data)

    def feed(self, event: str, data: str) -> list[ModelResponseStream]:
        if not data or data.strip() == "[DONE]":
            return []
        obj = orjson.loads(data)
        chunks = self._feed(obj)
        if self.keep_events:
            if not chunks:
                chunks = [self._chunk({})]
            chunks[0]._passthrough_event = obj
        return chunks

    def _feed(self, obj: dict[str, Any]) -> list[ModelResponseStream]:
        kind = obj.get("type")
        if kind == "error" or (kind is None and obj.get("error")):
            error: dict[str, Any] = obj["error"] if isinstance(obj.get("error"), dict) else obj
            raise exc.APIError(str(error.get("message") or "stream error"), self.provider.name, self.ep.model)
        if kind == "response.created":
            response = obj.get("response") or {}
            self.id = response.get("id") or self.id
            self.model = response.get("model") or self.model
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "response.output_text.delta":
            return [self._chunk({"content": obj.get("delta") or ""})]
        if kind == "response.output_item.added" and (obj.get("item") or {}).get("type") == "function_call":
            item = obj["item"]
            index = self.tools[obj.get("output_index", 0)] = len(self.tools)
            self.called = True
            call = {
                "index": index,
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if kind == "response.function_call_arguments.delta":
            index = self.tools.get(obj.get("output_index", 0), 0)
            return [
                self._chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": obj.get("delta") or ""}}]}
                )
            ]
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            response = obj.get("response") or {}
            self.done = True
            if kind == "response.failed":
                error = response.get("error") or {}
                raise exc.APIError(
                    str(error.get("message") or "the response failed"), self.provider.name, self.ep.model
                )
            usage = _usage_from_responses(response.get("usage"))
            return [self._chunk({}, _finish(response, self.called), usage)]
        return []


class CompletionsStream(StreamTranslator):
    """Legacy completion chunks → chat chunks."""

    def __init__(self, provider: Any, ep: Endpoint) -> None:
        self.provider = provider
        self.ep = ep

    def feed(self, event: str, data: str) -> list[ModelResponseStream]:
        if not data:
            return []
        if data.strip() == "[DONE]":
            self.done = True
            return []
        obj = orjson.loads(data)
        if obj.get("error"):
            error = obj["error"] if isinstance(obj["error"], dict) else {"message": str(obj["error"])}
            raise exc.APIError(str(error.get("message") or "stream error"), self.provider.name, self.ep.model)
        choices = [
            {
                "index": c.get("index", 0),
                "delta": {"content": c.get("text") or ""},
                "finish_reason": c.get("finish_reason"),
            }
            for c in obj.get("choices") or []
        ]
        chunk_data = {
            "id": obj.get("id"),
            "object": "chat.completion.chunk",
            "model": obj.get("model") or self.ep.model,
            "choices": choices,
        }
        if obj.get("usage"):
            chunk_data["usage"] = obj["usage"]
        chunk = ModelResponseStream(chunk_data)
        if self.keep_events:
            chunk._passthrough_event = obj
        return [chunk]


def stream_translator(provider: Any, api: str, ep: Endpoint) -> StreamTranslator:
    return CompletionsStream(provider, ep) if api == "completions" else ResponsesStream(provider, ep)
