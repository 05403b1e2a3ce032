"""OpenAI, and every server that speaks its API (vLLM, Ollama's ``/v1``, LM Studio, …)."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from .. import exceptions as exc
from ..types import EmbeddingResponse, ModelResponse, ModelResponseStream
from ..types.decoded import chat_chunk, chat_completion, is_plain_chunk
from .base import Endpoint, HttpRequest, Provider, StreamTranslator, is_context_window_error


class OpenAIProvider(Provider):
    name: ClassVar[str] = "openai"
    key_env: tuple[str, ...] = ("OPENAI_API_KEY",)
    base_env: tuple[str, ...] = ("OPENAI_BASE_URL", "OPENAI_API_BASE")
    default_api_base: ClassVar[str | None] = "https://api.openai.com/v1"
    # OpenAI's other generation APIs this provider takes as they are (``openai_apis.py``)
    passthrough_apis: ClassVar[tuple[str, ...]] = ("responses", "completions")

    def headers(self, ep: Endpoint) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if ep.api_key:
            headers["Authorization"] = f"Bearer {ep.api_key}"
        return headers

    def chat_url(self, ep: Endpoint) -> str:
        return f"{ep.api_base}/chat/completions"

    def embeddings_url(self, ep: Endpoint) -> str:
        return f"{ep.api_base}/embeddings"

    def query(self, ep: Endpoint) -> dict[str, str]:
        return {}

    def chat_request(
        self, ep: Endpoint, messages: list[dict[str, Any]], params: dict[str, Any], stream: bool
    ) -> HttpRequest:
        body: dict[str, Any] = {"model": ep.model, "messages": messages}
        body.update(params)
        if stream:
            body["stream"] = True
            # the last chunk then carries usage, which makes the cost of a stream exact
            options = dict(body.get("stream_options") or {})
            options.setdefault("include_usage", True)
            body["stream_options"] = options
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return HttpRequest("POST", self.chat_url(ep), self.headers(ep), body, self.query(ep))

    def parse_chat(self, body: dict[str, Any], ep: Endpoint) -> ModelResponse:
        return chat_completion(body)

    def stream_translator(self, ep: Endpoint) -> StreamTranslator:
        return _OpenAIStream(self, ep)

    def api_request(self, ep: Endpoint, api: str, body: dict[str, Any], stream: bool) -> HttpRequest:
        from .openai_apis import api_request

        return api_request(self, ep, api, body, stream)

    def parse_api(self, api: str, body: dict[str, Any], ep: Endpoint) -> ModelResponse:
        from .openai_apis import parse_api

        return parse_api(api, body, ep)

    def api_stream_translator(self, api: str, ep: Endpoint) -> StreamTranslator:
        from .openai_apis import stream_translator

        return stream_translator(self, api, ep)

    def embedding_request(self, ep: Endpoint, input: list[Any], params: dict[str, Any]) -> HttpRequest:
        body: dict[str, Any] = {"model": ep.model, "input": input}
        body.update(params)
        return HttpRequest("POST", self.embeddings_url(ep), self.headers(ep), body, self.query(ep))

    def parse_embedding(self, body: dict[str, Any], ep: Endpoint) -> EmbeddingResponse:
        return EmbeddingResponse(body)


class _OpenAIStream(StreamTranslator):
    def __init__(self, provider: OpenAIProvider, ep: Endpoint) -> None:
        self.provider = provider
        self.ep = ep
        self.done = False

    def feed(self, event: str, data: str) -> list[ModelResponseStream]:
        if not data:
            return []
        if data.strip() == "[DONE]":
            self.done = True
            return []
        obj = orjson.loads(data)
        if isinstance(obj, dict) and obj.get("error"):
            message, code = self.provider.error_message(obj)
            status = _status_from_error(obj["error"])
            cls: type[exc.LmgateError] = exc.exception_for_status(status)
            if status == 400 and is_context_window_error(message, code):
                cls = exc.ContextWindowExceededError
            raise cls(message, self.provider.name, self.ep.model, status_code=status, body=obj)
        if self.plain_chunks and is_plain_chunk(obj):  # the typed chunk would hold just this
            return [obj]  # type: ignore[list-item]
        return [chat_chunk(obj)]


# an error sent mid-stream has no HTTP status of its own: infer one from its code or type
_ERROR_NAME_STATUS = {
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "invalid_api_key": 401,
    "authentication_error": 401,
    "permission_error": 403,
    "model_not_found": 404,
    "not_found_error": 404,
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "insufficient_quota": 429,
    "requests": 429,
    "tokens": 429,
    "server_error": 500,
    "api_error": 500,
    "overloaded_error": 529,
}


def _status_from_error(err: Any) -> int:
    if not isinstance(err, dict):
        return 500
    for key in ("status_code", "code", "status"):
        value = err.get(key)
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return int(value)
    for key in ("code", "type"):  # the code is the more specific of the two
        value = err.get(key)
        if isinstance(value, str) and value in _ERROR_NAME_STATUS:
            return _ERROR_NAME_STATUS[value]
    return 500
