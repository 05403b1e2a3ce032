"""A fake Google AI Studio Gemini API: a real HTTP/1.1 server on 127.0.0.1 speaking generativelanguage ``v1beta``.

Written from the API reference and the official SDK:

* https://ai.google.dev/api/generate-content — ``POST /v1beta/{model=models/*}:generateContent`` and
  ``:streamGenerateContent`` (``?alt=sse``: one ``data: <GenerateContentResponse>`` event per chunk, no end
  marker, the stream ends when the body does), ``GenerateContentRequest`` (``contents``,
  ``systemInstruction``, ``tools[].functionDeclarations``, ``toolConfig.functionCallingConfig``,
  ``generationConfig``: ``temperature``, ``topP``, ``topK``, ``candidateCount``, ``maxOutputTokens``,
  ``stopSequences``, ``responseMimeType``, ``responseSchema``, ``responseJsonSchema``, ``thinkingConfig``
  {``thinkingBudget``, ``includeThoughts``}, …), ``GenerateContentResponse`` (``candidates[].content.parts``,
  ``finishReason``, ``index``, ``promptFeedback.blockReason``, ``usageMetadata`` {``promptTokenCount``,
  ``candidatesTokenCount``, ``totalTokenCount``, ``cachedContentTokenCount``, ``thoughtsTokenCount``},
  ``modelVersion``, ``responseId``);
* https://ai.google.dev/api/embeddings — ``:embedContent`` (``{"content": {"parts": [...]}}`` →
  ``{"embedding": {"values": [...]}}``) and ``:batchEmbedContents`` (``{"requests": [{"model": "models/…",
  "content": …}]}`` → ``{"embeddings": [{"values": [...]}]}``);
* https://ai.google.dev/api/caching#Content and #Part — a part holds exactly one of ``text``, ``inlineData``
  {``mimeType``, ``data``}, ``fileData`` {``mimeType``, ``fileUri``}, ``functionCall`` {``name``, ``args``},
  ``functionResponse`` {``name``, ``response``}; roles are ``user`` and ``model``;
* errors: ``{"error": {"code": <http status>, "message", "status": <google.rpc code name>, "details"}}``;
  a bad key is ``400 INVALID_ARGUMENT`` with ``details[].reason == "API_KEY_INVALID"``; an unknown field is
  ``400 INVALID_ARGUMENT`` "Invalid JSON payload received. Unknown name …";
* the key travels in ``x-goog-api-key`` (googleapis/python-genai ``google/genai/_api_client.py``) or ``?key=``;
  field names are accepted in both JSON forms (camelCase and snake_case), as the API's proto JSON parser does.
"""

from __future__ import annotations

import collections
import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .provider import DEFAULT_TEXT, BackgroundHTTPServer, BaseHandler, RecordedRequest, fake_embedding

__all__ = ["FakeGemini", "GeminiReply"]

_RPC = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
        429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}  # fmt: skip

# the request fields the API knows, by message (camelCase; snake_case spellings are accepted too)
_KNOWN = {
    "request": {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
                "cachedContent", "labels", "model"},
    "generationConfig": {"temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences",
                         "responseMimeType", "responseSchema", "responseJsonSchema", "thinkingConfig", "seed",
                         "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs",
                         "responseModalities", "mediaResolution"},
    "thinkingConfig": {"thinkingBudget", "includeThoughts", "thinkingLevel"},
    "part": {"text", "inlineData", "fileData", "functionCall", "functionResponse", "thought", "thoughtSignature",
             "executableCode", "codeExecutionResult", "videoMetadata"},
    "content": {"role", "parts"},
    "functionDeclaration": {"name", "description", "parameters", "parametersJsonSchema", "response",
                            "responseJsonSchema", "behavior"},
}  # fmt: skip


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


@dataclass
class GeminiReply:
    """A scripted answer, consumed FIFO. ``finish_reason`` is Gemini's vocabulary (STOP, MAX_TOKENS, SAFETY, …)."""

    status: int = 200
    json: Any = None  # whole body override
    text: str | None = DEFAULT_TEXT
    thoughts: str | None = None  # a thought part (sent only when the request asks includeThoughts)
    tool_calls: list[dict[str, Any]] | None = None  # [{"name", "args", "signature"?}]
    finish_reason: str = "STOP"
    block_reason: str | None = None  # the prompt is blocked: no candidates, promptFeedback.blockReason
    usage: dict[str, int] = field(
        default_factory=lambda: {"prompt": 7, "candidates": 5}
    )  # + thoughts, cached
    error_message: str | None = None
    error_reason: str | None = None  # details[].reason (API_KEY_INVALID, …)
    stream_error: dict[str, Any] | None = None  # sent as an event after the content
    chunk_size: int = 3
    cut_after_chunks: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHandler):
    def dispatch(self) -> None:
        body = self.read_body()
        url = urlsplit(self.path)
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = ...
        rec = RecordedRequest(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=self.header_dict(),
            json=None if parsed is ... else parsed,
            raw=body,
        )
        owner: FakeGemini = self.server.owner
        owner._record(rec)
        owner._handle(self, rec, parsed is not ...)


class FakeGemini(BackgroundHTTPServer):
    """Fake Gemini API. ``expect_key`` (None = any key) is checked against x-goog-api-key or ?key=."""

    handler_class = _Handler

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._cond = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._queue: collections.deque[GeminiReply] = collections.deque()
        self.expect_key: str | None = None

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    def enqueue(self, *replies: GeminiReply) -> None:
        with self._cond:
            self._queue.extend(replies)

    def reset(self) -> None:
        with self._cond:
            self._requests.clear()
            self._queue.clear()
            self.expect_key = None

    def _record(self, rec: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(rec)
            self._cond.notify_all()

    def _next(self) -> GeminiReply:
        with self._cond:
            return self._queue.popleft() if self._queue else GeminiReply()

    # -- errors --------------------------------------------------------------------------------
    @staticmethod
    def error_body(status: int, message: str, reason: str | None = None) -> dict[str, Any]:
        err: dict[str, Any] = {"code": status, "message": message, "status": _RPC.get(status, "UNKNOWN")}
        if reason:
            err["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": reason,
                    "domain": "googleapis.com",
                }
            ]
        return {"error": err}

    def _error(self, h: BaseHandler, status: int, message: str, reason: str | None = None) -> None:
        h.send_json(status, self.error_body(status, message, reason))

    # -- validation ----------------------------------------------------------------------------
    def _unknown(self, obj: Any, kind: str, where: str) -> str | None:
        if not isinstance(obj, dict):
            return f"Invalid value at '{where}': expected an object"
        for key in obj:
            if _camel(key) not in _KNOWN[kind]:
                return (
                    f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
                )
        return None

    def _invalid(self, body: Any, method: str) -> str | None:
        if not isinstance(body, dict):
            return "Invalid JSON payload received. Expected an object."
        if method in ("embedContent", "batchEmbedContents"):
            items = body.get("requests") if method == "batchEmbedContents" else [body]
            if not isinstance(items, list) or not items:
                return "* BatchEmbedContentsRequest.requests: at least one request is required"
            for item in items:
                parts = ((item or {}).get("content") or {}).get("parts")
                if not parts or not all(isinstance(p, dict) and "text" in p for p in parts):
                    return "* EmbedContentRequest.content: contents must have text parts"
            return None
        problem = self._unknown(body, "request", "")
        if problem:
            return problem
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return "* GenerateContentRequest.contents: contents is not specified"
        for i, content in enumerate(contents):
            problem = self._unknown(content, "content", f"contents[{i}]")
            if problem:
                return problem
            if content.get("role") not in ("user", "model"):
                return f"Please use a valid role: user, model. (contents[{i}].role={content.get('role')!r})"
            for j, part in enumerate(content.get("parts") or []):
                problem = self._unknown(part, "part", f"contents[{i}].parts[{j}]")
                if problem:
                    return problem
                data = [k for k in part if _camel(k) not in ("thought", "thoughtSignature")]
                if len(data) != 1:
                    return f"* contents[{i}].parts[{j}]: a part must hold exactly one data field, got {data}"
            if not content.get("parts"):
                return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        system = body.get("systemInstruction") or body.get("system_instruction")
        if system is not None and not (system.get("parts") or []):
            return "* GenerateContentRequest.system_instruction.parts: must not be empty"
        for t, tool in enumerate(body.get("tools") or []):
            for d, decl in enumerate(
                tool.get("functionDeclarations") or tool.get("function_declarations") or []
            ):
                problem = self._unknown(decl, "functionDeclaration", f"tools[{t}].function_declarations[{d}]")
                if problem:
                    return problem
                params = decl.get("parameters")
                if (
                    isinstance(params, dict)
                    and params.get("type") == "object"
                    and not params.get("properties")
                ):
                    return f"* tools[{t}].function_declarations[{d}].parameters.properties: should be non-empty for OBJECT type"
                if isinstance(params, dict) and "additionalProperties" in json.dumps(params):
                    return "Invalid JSON payload received. Unknown name \"additionalProperties\" at 'tools[0].function_declarations[0].parameters'"
        config = body.get("generationConfig") or body.get("generation_config")
        if config is not None:
            problem = self._unknown(config, "generationConfig", "generation_config")
            if problem:
                return problem
            thinking = config.get("thinkingConfig") or config.get("thinking_config")
            if thinking is not None:
                problem = self._unknown(thinking, "thinkingConfig", "generation_config.thinking_config")
                if problem:
                    return problem
            schema = config.get("responseSchema")
            if schema is not None and "additionalProperties" in json.dumps(schema):
                return "Invalid JSON payload received. Unknown name \"additionalProperties\" at 'generation_config.response_schema'"
        return None

    # -- handling ------------------------------------------------------------------------------
    def _handle(self, h: BaseHandler, rec: RecordedRequest, json_ok: bool) -> None:
        # lmgate sends v1beta; the google-genai SDK (3.x) sends v1 unless told otherwise: both are served
        prefix = next((p for p in ("/v1beta/models/", "/v1/models/") if rec.path.startswith(p)), None)
        if prefix is None or ":" not in rec.path:
            self._error(h, 404, f"Requested entity was not found. ({rec.path})")
            return
        model, _, method = rec.path[len(prefix) :].rpartition(":")
        if method not in ("generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents"):
            self._error(h, 404, f"Method {method} not found.")
            return
        if rec.method != "POST":
            self._error(h, 405, "Method not allowed.")
            return
        key = rec.headers.get("x-goog-api-key") or rec.query.get("key")
        if not key:
            self._error(h, 403, "Method doesn't allow unregistered callers. Please use API Key.")
            return
        if self.expect_key is not None and key != self.expect_key:
            self._error(h, 400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID")
            return
        if not json_ok:
            self._error(h, 400, "Invalid JSON payload received.")
            return
        problem = self._invalid(rec.json, method)
        if problem:
            self._error(h, 400, problem)
            return
        reply = self._next()
        if reply.status >= 400:
            if reply.json is not None:
                h.send_json(reply.status, reply.json, reply.headers)
            else:
                message = reply.error_message or f"HTTP {reply.status}"
                h.send_json(
                    reply.status, self.error_body(reply.status, message, reply.error_reason), reply.headers
                )
            return
        if reply.json is not None:
            h.send_json(200, reply.json, reply.headers)
            return
        if method == "embedContent":
            h.send_json(200, {"embedding": {"values": self._vector(rec.json)}}, reply.headers)
            return
        if method == "batchEmbedContents":
            h.send_json(
                200,
                {"embeddings": [{"values": self._vector(r)} for r in rec.json["requests"]]},
                reply.headers,
            )
            return
        if method == "streamGenerateContent":
            if rec.query.get("alt") != "sse":
                # without alt=sse the API streams one JSON array: this fake speaks only the SSE form
                self._error(h, 400, "this fake answers streamGenerateContent with alt=sse only")
                return
            self._stream(h, rec.json, model, reply)
            return
        h.send_json(200, self._response(rec.json, model, reply), reply.headers)

    @staticmethod
    def _vector(request: dict[str, Any]) -> list[float]:
        text = "".join(p["text"] for p in request["content"]["parts"])
        dims = int(request.get("outputDimensionality") or request.get("output_dimensionality") or 4)
        return fake_embedding(text, dims)

    # -- bodies --------------------------------------------------------------------------------
    @staticmethod
    def _config(body: dict[str, Any]) -> dict[str, Any]:
        return body.get("generationConfig") or body.get("generation_config") or {}

    def _include_thoughts(self, body: dict[str, Any]) -> bool:
        thinking = self._config(body).get("thinkingConfig") or {}
        return bool(thinking.get("includeThoughts") or thinking.get("include_thoughts"))

    def _usage(self, reply: GeminiReply) -> dict[str, int]:
        u = reply.usage
        out = {
            "promptTokenCount": u.get("prompt", 0),
            "candidatesTokenCount": u.get("candidates", 0),
            "totalTokenCount": u.get("prompt", 0) + u.get("candidates", 0) + u.get("thoughts", 0),
        }
        if u.get("thoughts"):
            out["thoughtsTokenCount"] = u["thoughts"]
        if u.get("cached"):
            out["cachedContentTokenCount"] = u["cached"]
        return out

    def _parts(self, body: dict[str, Any], reply: GeminiReply) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if reply.thoughts and self._include_thoughts(body):
            parts.append({"text": reply.thoughts, "thought": True})
        if reply.text is not None and not (reply.tool_calls and reply.text == DEFAULT_TEXT):
            parts.append({"text": reply.text})
        for call in reply.tool_calls or []:
            part: dict[str, Any] = {"functionCall": {"name": call["name"], "args": call.get("args", {})}}
            if call.get(
                "signature"
            ):  # a thinking model signs its calls (thoughtSignature beside functionCall)
                part["thoughtSignature"] = call["signature"]
            parts.append(part)
        return parts

    def _response(self, body: dict[str, Any], model: str, reply: GeminiReply) -> dict[str, Any]:
        out: dict[str, Any] = {
            "usageMetadata": self._usage(reply),
            "modelVersion": model,
            "responseId": "resp-fake1",
        }
        if reply.block_reason:
            out["promptFeedback"] = {"blockReason": reply.block_reason}
            return out
        n = int(self._config(body).get("candidateCount") or 1)
        out["candidates"] = [
            {
                "content": {"role": "model", "parts": self._parts(body, reply)},
                "finishReason": reply.finish_reason,
                "index": i,
                "safetyRatings": [],
            }
            for i in range(n)
        ]
        return out

    def _events(self, body: dict[str, Any], model: str, reply: GeminiReply) -> list[bytes]:
        def event(obj: dict[str, Any]) -> bytes:
            return b"data: " + json.dumps(obj).encode() + b"\r\n\r\n"  # the API frames events with CRLF

        base = {"modelVersion": model, "responseId": "resp-fake1"}
        if reply.block_reason:
            return [
                event(
                    {
                        **base,
                        "promptFeedback": {"blockReason": reply.block_reason},
                        "usageMetadata": self._usage(reply),
                    }
                )
            ]
        n = int(self._config(body).get("candidateCount") or 1)
        events: list[bytes] = []
        partial_usage = {
            "promptTokenCount": reply.usage.get("prompt", 0),
            "totalTokenCount": reply.usage.get("prompt", 0),
        }
        for index in range(n):
            parts = self._parts(body, reply)
            pieces: list[dict[str, Any]] = []
            for part in parts:
                if "text" in part:
                    text = part["text"]
                    size = reply.chunk_size or len(text) or 1
                    pieces.extend({**part, "text": text[i : i + size]} for i in range(0, len(text), size))
                else:
                    pieces.append(part)
            for piece in pieces:
                cand = {"content": {"role": "model", "parts": [piece]}, "index": index}
                events.append(event({**base, "candidates": [cand], "usageMetadata": partial_usage}))
        if reply.stream_error is not None:
            events.append(
                event(
                    {
                        "error": {
                            "code": 500,
                            "message": "Internal error",
                            "status": "INTERNAL",
                            **reply.stream_error,
                        }
                    }
                )
            )
            return events
        for index in range(n):
            last = {
                "content": {"role": "model", "parts": [{"text": ""}]},
                "finishReason": reply.finish_reason,
                "index": index,
            }
            events.append(event({**base, "candidates": [last], "usageMetadata": self._usage(reply)}))
        return events

    def _stream(self, h: BaseHandler, body: dict[str, Any], model: str, reply: GeminiReply) -> None:
        h.start_chunked(200, "text/event-stream", reply.headers)
        try:
            for i, chunk in enumerate(self._events(body, model, reply)):
                if reply.cut_after_chunks is not None and i >= reply.cut_after_chunks:
                    h.cut()
                    return
                h.write_chunk(chunk)
            h.end_chunked()
        except OSError:
            h.close_connection = True
