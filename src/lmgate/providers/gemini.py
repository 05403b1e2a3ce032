"""Google AI Studio's Gemini API (``gemini/<model>``), translated to and from OpenAI shapes.

Wire format: the generativelanguage ``v1beta`` REST API (``GenerateContentRequest`` /
``GenerateContentResponse``, ``embedContent`` / ``batchEmbedContents``), with the key in the
``x-goog-api-key`` header, as the official ``google-genai`` SDK sends it; field names in the
API's JSON (camelCase) form.

Requests: ``system``/``developer`` messages → ``systemInstruction``; turns → ``contents``
(``assistant`` → role ``model``; consecutive turns of one role merged, as the API wants them to
alternate); image parts → ``inlineData`` (data URLs) or ``fileData`` (links); assistant
``tool_calls`` → ``functionCall`` parts and ``tool`` results → ``functionResponse`` parts
(named after the call they answer); ``tools`` → ``functionDeclarations``; ``tool_choice`` →
``toolConfig.functionCallingConfig``; sampling parameters, ``stop``, ``n``, JSON mode and
schemas, and thinking (``reasoning_effort`` or ``thinking``) → ``generationConfig``.

Responses: text parts join into ``content`` and thought parts into ``reasoning_content``;
``functionCall`` parts become ``tool_calls`` (ids made up when the API gives none);
``finishReason`` → ``finish_reason`` (safety blocks → ``content_filter``); ``usageMetadata``
→ usage with cached tokens (``cachedContentTokenCount``) and thought tokens
(``thoughtsTokenCount``, counted in ``completion_tokens`` as OpenAI counts reasoning).
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Any, ClassVar

import orjson

from .. import exceptions as exc
from ..types import (
    ChatCompletionDeltaToolCall,
    ChatCompletionMessageToolCall,
    Choices,
    Delta,
    EmbeddingResponse,
    Function,
    Message,
    ModelResponse,
    ModelResponseStream,
    StreamingChoices,
    Usage,
)
from .base import Endpoint, HttpRequest, Provider, StreamTranslator

API_VERSION = "v1beta"
DEFAULT_API_BASE = "https://generativelanguage.googleapis.com"

#: ``reasoning_effort`` → ``thinkingConfig.thinkingBudget`` (the reference's budgets)
THINKING_BUDGETS = {"minimal": 128, "low": 1024, "medium": 2048, "high": 4096}

# google.rpc status names (Gemini's ``error.status``) → the HTTP status they are sent with
RPC_STATUS_HTTP = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

_FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "stop",
    "OTHER": "stop",
    "MALFORMED_FUNCTION_CALL": "stop",
    "FINISH_REASON_UNSPECIFIED": "stop",
}

# JSON Schema keywords the OpenAPI-subset ``responseSchema`` refuses (``responseJsonSchema`` takes them)
_SCHEMA_ONLY_KEYS = frozenset({"additionalProperties", "$schema", "strict", "$id", "$comment"})


class GeminiProvider(Provider):
    name: ClassVar[str] = "gemini"
    key_env: tuple[str, ...] = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    base_env: tuple[str, ...] = ("GEMINI_API_BASE",)
    default_api_base: ClassVar[str | None] = DEFAULT_API_BASE
    parallel_tool_calls_by_default = True  # parallel_tool_calls=True accepted; False refused
    supported_params: ClassVar[frozenset[str] | None] = frozenset(
        {
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "top_p",
            "top_k",
            "n",
            "stop",
            "stream",
            "stream_options",
            "tools",
            "tool_choice",
            "response_format",
            "reasoning_effort",
            "thinking",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "logprobs",
            "top_logprobs",
            "safety_settings",
            "cached_content",
            "labels",
        }
    )


    def endpoint(
        self, model: str, api_base: str | None, api_key: str | None, api_version: str | None
    ) -> Endpoint:
        ep = super().endpoint(model, api_base, api_key, api_version)
        base = ep.api_base
        for suffix in ("/" + API_VERSION, "/v1"):  # accept https://host, https://host/v1beta
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        model = ep.model[len("models/") :] if ep.model.startswith("models/") else ep.model
        return dataclasses.replace(ep, api_base=base, model=model)

    def _url(self, ep: Endpoint, method: str) -> str:
        return f"{ep.api_base}/{API_VERSION}/models/{ep.model}:{method}"

    def _headers(self, ep: Endpoint) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if ep.api_key:
            headers["x-goog-api-key"] = ep.api_key
        return headers

    # -- chat --
    def chat_request(
        self, ep: Endpoint, messages: list[dict[str, Any]], params: dict[str, Any], stream: bool
    ) -> HttpRequest:
        system, contents = translate_messages(messages)
        body: dict[str, Any] = {"contents": contents}
        if system is not None:
            body["systemInstruction"] = system
        if params.get("tools"):
            body["tools"] = [{"functionDeclarations": [translate_tool(t) for t in params["tools"]]}]
        tool_config = translate_tool_choice(params.get("tool_choice"))
        if tool_config is not None:
            body["toolConfig"] = tool_config
        config = generation_config(ep.model, params)
        if config:
            body["generationConfig"] = config
        if params.get("safety_settings"):
            body["safetySettings"] = params["safety_settings"]
        if params.get("cached_content"):
            body["cachedContent"] = params["cached_content"]
        if params.get("labels"):
            body["labels"] = params["labels"]
        if stream:
            return HttpRequest(
                "POST", self._url(ep, "streamGenerateContent"), self._headers(ep), body, {"alt": "sse"}
            )
        return HttpRequest("POST", self._url(ep, "generateContent"), self._headers(ep), body)

    def parse_chat(self, body: dict[str, Any], ep: Endpoint) -> ModelResponse:
        choices = []
        candidates = body.get("candidates") or []
        for position, cand in enumerate(candidates):
            message, finish = _candidate_message(cand)
            choices.append(
                Choices._build(
                    {
                        "index": cand.get("index", position),
                        "message": Message._build(message),
                        "finish_reason": finish,
                        "logprobs": None,
                    }
                )
            )
        if not choices:  # the prompt itself was blocked: no candidates, a promptFeedback.blockReason
            choices.append(
                Choices._build(
                    {
                        "index": 0,
                        "message": Message._build({"role": "assistant", "content": None}),
                        "finish_reason": "content_filter",
                        "logprobs": None,
                    }
                )
            )
        data: dict[str, Any] = {
            "id": body.get("responseId") or _new_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("modelVersion") or ep.model,
            "choices": choices,
        }
        if body.get("usageMetadata") is not None:
            data["usage"] = usage_from_gemini(body["usageMetadata"])
        response = ModelResponse._build(data)
        feedback = body.get("promptFeedback")
        if feedback:
            response._hidden_params["prompt_feedback"] = feedback
        return response  # type: ignore[no-any-return]

    def stream_translator(self, ep: Endpoint) -> StreamTranslator:
        return _GeminiStream(self, ep)

    # -- embeddings --
    def embedding_request(self, ep: Endpoint, input: list[Any], params: dict[str, Any]) -> HttpRequest:
        extra: dict[str, Any] = {}
        if params.get("dimensions") is not None:
            extra["outputDimensionality"] = params["dimensions"]
        for ours, theirs in (("task_type", "taskType"), ("title", "title")):
            if params.get(ours) is not None:
                extra[theirs] = params[ours]
        unknown = sorted(set(params) - {"dimensions", "task_type", "title", "encoding_format", "user"})
        if unknown:
            raise exc.UnsupportedParamsError(
                f"gemini embeddings do not support the parameter(s) {', '.join(unknown)}", self.name, ep.model
            )
        for item in input:
            if not isinstance(item, str):
                raise exc.BadRequestError(
                    "gemini embeddings take strings, not token lists", self.name, ep.model
                )
        if len(input) == 1:
            body = {"content": {"parts": [{"text": input[0]}]}, **extra}
            return HttpRequest("POST", self._url(ep, "embedContent"), self._headers(ep), body)
        requests = [
            {"model": f"models/{ep.model}", "content": {"parts": [{"text": t}]}, **extra} for t in input
        ]
        return HttpRequest(
            "POST", self._url(ep, "batchEmbedContents"), self._headers(ep), {"requests": requests}
        )

    def parse_embedding(self, body: dict[str, Any], ep: Endpoint) -> EmbeddingResponse:
        vectors = body.get("embeddings")
        if vectors is None:
            vectors = [body.get("embedding") or {}]
        data = [
            {"object": "embedding", "index": i, "embedding": v.get("values") or []}
            for i, v in enumerate(vectors)
        ]
        out: dict[str, Any] = {"object": "list", "data": data, "model": ep.model}
        # the API reports no token counts for embeddings: usage stays absent (cost None, with its reason)
        return EmbeddingResponse(out)

    # -- errors --
    def error_message(self, body: Any) -> tuple[str, str | None]:
        """Gemini's ``{"error": {"code", "message", "status", "details"}}``; code is the rpc status."""
        if isinstance(body, list) and body and isinstance(body[0], dict):
            body = body[0]  # a streamed error may come as a one-item array
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            return str(err.get("message") or ""), err.get("status")
        return super().error_message(body)

    def error(self, status: int, headers: dict[str, str], body_text: str, model: str) -> exc.LmgateError:
        error = super().error(status, headers, body_text, model)
        # a bad key is answered 400 INVALID_ARGUMENT with the reason API_KEY_INVALID
        if status == 400 and _is_key_error(error.body):
            return exc.AuthenticationError(
                str(error.message),
                self.name,
                model,
                status_code=401,
                response_headers=headers,
                body=error.body,
            )
        if status == 400 and "exceeds the maximum number of tokens" in str(error.message):
            return exc.ContextWindowExceededError(
                str(error.message),
                self.name,
                model,
                status_code=400,
                response_headers=headers,
                body=error.body,
            )
        return error


def _is_key_error(body: Any) -> bool:
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return False
    for detail in body["error"].get("details") or ():
        if isinstance(detail, dict) and detail.get("reason") == "API_KEY_INVALID":
            return True
    return False


def _new_id() -> str:
    return f"chatcmpl-{random.getrandbits(116):029x}"


#: a tool call id carries the call's thought signature after this separator (the reference's form,
#: ``call_<id>__thought__<signature>``): the id is what every client sends back with the result
THOUGHT_SIGNATURE_SEPARATOR = "__thought__"


def _call_id(call: dict[str, Any]) -> str:
    """The OpenAI id of a functionCall: its own id or a fresh one, with its thought signature appended."""
    base = call.get("id") or f"call_{random.getrandbits(96):024x}"
    signature = call.get("_signature")
    return f"{base}{THOUGHT_SIGNATURE_SEPARATOR}{signature}" if signature else str(base)


# ---------------------------------------------------------------- requests


def translate_tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function", tool)
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    params = fn.get("parameters")
    # the API refuses an object schema without properties: a function without arguments has none
    if params and (params.get("properties") or params.get("type") != "object"):
        out["parameters"] = _openapi_schema(params)
    return out


def translate_tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"functionCallingConfig": {"mode": "AUTO"}}
    if choice == "required":
        return {"functionCallingConfig": {"mode": "ANY"}}
    if choice == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if name:
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    raise exc.BadRequestError(f"unsupported tool_choice {choice!r}", "gemini")


def generation_config(model: str, params: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if params.get(ours) is not None:
            config[theirs] = params[ours]
    max_tokens = params.get("max_completion_tokens") or params.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    if params.get("n") not in (None, 1):
        config["candidateCount"] = params["n"]
    stop = params.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if params.get("logprobs"):
        config["responseLogprobs"] = True
        if params.get("top_logprobs") is not None:
            config["logprobs"] = params["top_logprobs"]
    config.update(_response_format(model, params.get("response_format")))
    thinking = _thinking_config(params)
    if thinking is not None:
        config["thinkingConfig"] = thinking
    return config


def _response_format(model: str, fmt: Any) -> dict[str, Any]:
    if not fmt:
        return {}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        out: dict[str, Any] = {"responseMimeType": "application/json"}
        if schema is not None:
            if _takes_json_schema(model):
                out["responseJsonSchema"] = schema
            else:
                out["responseSchema"] = _openapi_schema(schema)
        return out
    raise exc.BadRequestError(
        f"unsupported response_format {fmt!r}: use text, json_object or json_schema", "gemini", model
    )


def _takes_json_schema(model: str) -> bool:
    """responseJsonSchema (full JSON Schema) is for Gemini 2.5 and later; older models take responseSchema."""
    return not model.startswith(("gemini-1", "gemini-2.0", "gemini-pro", "gemini-exp"))


def _openapi_schema(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _openapi_schema(v) for k, v in schema.items() if k not in _SCHEMA_ONLY_KEYS}
    if isinstance(schema, list):
        return [_openapi_schema(v) for v in schema]
    return schema


def _thinking_config(params: dict[str, Any]) -> dict[str, Any] | None:
    effort = params.get("reasoning_effort")
    thinking = params.get("thinking")
    if effort is not None:
        if effort in ("none", "disable"):
            return {"thinkingBudget": 0}
        if effort not in THINKING_BUDGETS:
            raise exc.BadRequestError(
                f"reasoning_effort must be one of none, {', '.join(THINKING_BUDGETS)}; got {effort!r}",
                "gemini",
            )
        return {"thinkingBudget": THINKING_BUDGETS[effort], "includeThoughts": True}
    if isinstance(thinking, dict):  # the Anthropic-style {"type": "enabled", "budget_tokens": N}
        if thinking.get("type") == "disabled":
            return {"thinkingBudget": 0}
        out: dict[str, Any] = {"includeThoughts": True}
        if thinking.get("budget_tokens") is not None:
            out["thinkingBudget"] = thinking["budget_tokens"]
        return out
    return None


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            parts.append({"text": part.get("text", "")})
        elif kind == "image_url":
            image = part["image_url"]
            url = image["url"] if isinstance(image, dict) else image
            parts.append(_media_part(url, None))
        elif kind == "file":
            file = part.get("file") or {}
            data = file.get("file_data") or file.get("file_id") or ""
            parts.append(_media_part(data, file.get("format")))
        else:
            raise exc.BadRequestError(f"gemini cannot take a message part of type {kind!r}", "gemini")
    return parts


def _media_part(url: str, mime: str | None) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media = header[len("data:") :].split(";")[0] or mime or "application/octet-stream"
        return {"inlineData": {"mimeType": media, "data": data}}
    return {"fileData": {"mimeType": mime or _guess_mime(url), "fileUri": url}}


_EXTENSION_MIME = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "pdf": "application/pdf",
    "mp3": "audio/mp3",
    "wav": "audio/wav",
    "mp4": "video/mp4",
    "txt": "text/plain",
}


def _guess_mime(url: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0]
    extension = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return _EXTENSION_MIME.get(extension, "image/jpeg")


def _tool_response(content: Any) -> dict[str, Any]:
    """A tool result as the object ``functionResponse.response`` needs."""
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if isinstance(content, str):
        try:
            parsed = orjson.loads(content)
        except orjson.JSONDecodeError:
            parsed = content
        if isinstance(parsed, dict):
            return parsed
        return {"content": parsed}
    return {"content": content}


def translate_messages(messages: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(systemInstruction, contents) in Gemini's form."""
    system_parts: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name: functionResponse is named, not id'd

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": list(parts)})

    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            system_parts.extend(_parts(m.get("content")))
        elif role == "assistant":
            parts = _parts(m.get("content"))
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                args = fn.get("arguments") or "{}"
                try:
                    parsed = orjson.loads(args) if isinstance(args, (str, bytes)) else args
                except orjson.JSONDecodeError as error:
                    raise exc.BadRequestError(
                        f"tool call {call.get('id')!r} has arguments that are not JSON: {args!r}", "gemini"
                    ) from error
                if call.get("id"):
                    names[call["id"]] = str(fn.get("name"))
                part: dict[str, Any] = {"functionCall": {"name": fn.get("name"), "args": parsed}}
                # Gemini wants a thinking model's signature back with its call (Gemini 3 refuses the turn without)
                _, sep, signature = str(call.get("id") or "").partition(THOUGHT_SIGNATURE_SEPARATOR)
                if sep and signature:
                    part["thoughtSignature"] = signature
                parts.append(part)
            add("model", parts)
        elif role in ("tool", "function"):
            name = m.get("name") or names.get(m.get("tool_call_id") or "")
            if not name:
                raise exc.BadRequestError(
                    f"tool message for call {m.get('tool_call_id')!r} answers no earlier assistant tool call",
                    "gemini",
                )
            add("user", [{"functionResponse": {"name": name, "response": _tool_response(m.get("content"))}}])
        else:
            add("user", _parts(m.get("content")))
    system = {"parts": system_parts} if system_parts else None
    return system, contents


# ---------------------------------------------------------------- responses


def usage_from_gemini(u: dict[str, Any]) -> Usage:
    """promptTokenCount includes cached tokens; thoughts are billed as output, so completion includes them."""
    prompt = int(u.get("promptTokenCount") or 0) + int(u.get("toolUsePromptTokenCount") or 0)
    thoughts = int(u.get("thoughtsTokenCount") or 0)
    completion = int(u.get("candidatesTokenCount") or 0) + thoughts
    cached = int(u.get("cachedContentTokenCount") or 0)
    return Usage._build(  # type: ignore[no-any-return]
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": thoughts},
        }
    )


def _split_parts(parts: list[dict[str, Any]]) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """(text pieces, thought pieces, function calls) of a candidate's parts."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts:
        if "functionCall" in part:
            call = dict(part["functionCall"])
            if part.get("thoughtSignature"):
                call["_signature"] = part["thoughtSignature"]
            calls.append(call)
        elif "text" in part:
            (thoughts if part.get("thought") else texts).append(part["text"])
    return texts, thoughts, calls


def _finish(reason: str | None, has_calls: bool) -> str | None:
    if reason is None:
        return None
    finish = _FINISH_REASONS.get(reason, "stop")
    if finish == "stop" and has_calls:
        return "tool_calls"
    return finish


def _candidate_message(cand: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    texts, thoughts, calls = _split_parts((cand.get("content") or {}).get("parts") or [])
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = [
            ChatCompletionMessageToolCall._build(
                {
                    "id": _call_id(call),
                    "type": "function",
                    "function": Function._build(
                        {"name": call.get("name"), "arguments": orjson.dumps(call.get("args") or {}).decode()}
                    ),
                }
            )
            for call in calls
        ]
    return message, _finish(cand.get("finishReason") or "STOP", bool(calls))


class _GeminiStream(StreamTranslator):
    """``streamGenerateContent?alt=sse`` events (each a partial GenerateContentResponse) → OpenAI chunks.

    The stream has no end marker: it ends when the server closes it. Usage (cumulative on each
    event) rides on the chunk that carries the finish reason.
    """

    def __init__(self, provider: GeminiProvider, ep: Endpoint) -> None:
        self.provider = provider
        self.ep = ep
        self.done = False
        self.id = _new_id()
        self.created = int(time.time())
        self.model = ep.model
        self.started: set[int] = set()
        self.tool_counts: dict[int, int] = {}
        self.saw_calls: set[int] = set()

    def _chunk(
        self, index: int, delta: dict[str, Any], finish: str | None = None, usage: Usage | None = None
    ) -> Any:
        data: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                StreamingChoices._build(
                    {"index": index, "delta": Delta._build(delta), "finish_reason": finish, "logprobs": None}
                )
            ],
        }
        if usage is not None:
            data["usage"] = usage
        return ModelResponseStream._build(data)

    def feed(self, event: str, data: str) -> list[ModelResponseStream]:
        if not data or data.strip() == "[DONE]":
            return []
        obj = orjson.loads(data)
        if isinstance(obj, list):  # a proxy that answers the JSON-array stream form
            return [c for item in obj for c in self._feed_one(item)]
        return self._feed_one(obj)

    def _feed_one(self, obj: dict[str, Any]) -> list[ModelResponseStream]:
        if isinstance(obj.get("error"), dict):
            err = obj["error"]
            status = (
                err.get("code")
                if isinstance(err.get("code"), int)
                else RPC_STATUS_HTTP.get(err.get("status"), 500)
            )
            cls: type[exc.LmgateError] = exc.exception_for_status(status)
            raise cls(
                str(err.get("message") or "stream error"),
                self.provider.name,
                self.ep.model,
                status_code=status,
                body=obj,
            )
        if obj.get("responseId") and len(self.started) == 0:
            self.id = obj["responseId"]
        self.model = str(obj.get("modelVersion") or self.model)
        usage = usage_from_gemini(obj["usageMetadata"]) if obj.get("usageMetadata") else None
        out: list[ModelResponseStream] = []
        candidates = obj.get("candidates") or []
        if not candidates and (obj.get("promptFeedback") or {}).get("blockReason"):
            return [self._chunk(0, {"role": "assistant", "content": None}, "content_filter", usage)]
        for position, cand in enumerate(candidates):
            index = cand.get("index", position)
            delta: dict[str, Any] = {}
            if index not in self.started:
                self.started.add(index)
                delta["role"] = "assistant"
            texts, thoughts, calls = _split_parts((cand.get("content") or {}).get("parts") or [])
            if texts:
                delta["content"] = "".join(texts)
            if thoughts:
                delta["reasoning_content"] = "".join(thoughts)
            if calls:
                self.saw_calls.add(index)
                first = self.tool_counts.get(index, 0)
                delta["tool_calls"] = [
                    ChatCompletionDeltaToolCall._build(
                        {
                            "index": first + i,
                            "id": _call_id(call),
                            "type": "function",
                            "function": Function._build(
                                {
                                    "name": call.get("name"),
                                    "arguments": orjson.dumps(call.get("args") or {}).decode(),
                                }
                            ),
                        }
                    )
                    for i, call in enumerate(calls)
                ]
                self.tool_counts[index] = first + len(calls)
            finish = _finish(cand.get("finishReason"), index in self.saw_calls)
            if delta or finish:
                out.append(self._chunk(index, delta, finish, usage if finish else None))
        return out
