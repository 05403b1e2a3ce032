"""``mock_response=``: the embedded default for demos and tests, with no key and no server.

The whole pipeline runs (callbacks, cost, streaming, caching, retries): ``MockProvider`` builds
the request like any provider, and ``respond`` is the transport — it answers with an
httpx-shaped ``MockResponse`` instead of going to the network. Only the answer is made up.
Usage is fixed (10 prompt, 20 completion tokens, as the reference implementation
reports) so costs are deterministic, streamed or not.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from typing import Any, ClassVar

from .. import exceptions as exc
from ..types import (
    ChatCompletionDeltaToolCall,
    ChatCompletionMessageToolCall,
    Choices,
    Delta,
    Embedding,
    EmbeddingResponse,
    Function,
    Message,
    ModelResponse,
    ModelResponseStream,
    StreamingChoices,
    Usage,
    new_completion_id,
)
from .base import Endpoint, HttpRequest, Provider

MOCK_PROMPT_TOKENS = 10
# the answer when only mock_tool_calls or mock_timeout asked for a mock (the reference's text)
MOCK_DEFAULT_TEXT = "This is a mock request"
MOCK_COMPLETION_TOKENS = 20
MOCK_STREAM_CHUNK_CHARS = 3
MOCK_EMBEDDING_DIMENSIONS = 8
# a mock answer is built on the caller's thread (the proxy's event loop): these bound its size
MOCK_MAX_CHOICES = 128
MOCK_MAX_EMBEDDING_VALUES = 2**20  # inputs × dimensions

# the reference's own messages for the error names its mock documents; any other error class
# of lmgate.exceptions may be named too ("litellm.NotFoundError"), with its own status
_MAGIC_MESSAGES = {
    "RateLimitError": "this is a mock rate limit error",
    "ContextWindowExceededError": "this is a mock context window exceeded error",
    "ContentPolicyViolationError": "mock content policy violation",
    "InternalServerError": "this is a mock internal server error",
    "ServiceUnavailableError": "mock service unavailable",
    "AuthenticationError": "mock authentication error",
    "Timeout": "mock timeout",
}
_NOT_MOCKABLE = frozenset({"LmgateError", "CallbackError", "ConfigError"})
# "Exception: <message>" strings: the reference raises a provider error carrying that message
_EXCEPTION_PREFIX = "Exception: "
MOCK_STREAMING_ERROR = "Exception: mock_streaming_error"  # fails mid-stream, after the first chunk
_MOCK_STREAMING_ERROR_STATUS = 529  # what the reference's mock reports (Anthropic's "overloaded")


def asks_for_mock(params: Any) -> bool:
    """Whether these call (or deployment) parameters mock the call: as the reference, any of
    ``mock_response``, ``mock_tool_calls`` and ``mock_timeout`` does (never a real request)."""
    return (
        params.get("mock_response") is not None
        or bool(params.get("mock_tool_calls"))
        or bool(params.get("mock_timeout"))
    )


def _named_error(name: str) -> type[exc.LmgateError] | None:
    cls = getattr(exc, name, None)
    if isinstance(cls, type) and issubclass(cls, exc.LmgateError) and name not in _NOT_MOCKABLE:
        return cls
    return None


def mock_error(mock_response: Any, provider: str, model: str, stream: bool = False) -> BaseException | None:
    """The exception a mock_response asks for, or None.

    Forms: an exception instance; an error class name (``"litellm.RateLimitError"``,
    ``"lmgate.NotFoundError"``); ``"Exception: <message>"`` (a provider error with that message:
    400 for ``content_filter_policy``, else 500). ``MOCK_STREAMING_ERROR`` fails a stream
    after its first chunk (``mock_chunks``) and a plain call at once.
    """
    if isinstance(mock_response, BaseException):
        if isinstance(mock_response, exc.LmgateError):
            mock_response.llm_provider = mock_response.llm_provider or provider
            mock_response.model = mock_response.model or model
            return mock_response
        if not isinstance(mock_response, Exception):
            return mock_response  # KeyboardInterrupt and the like are not provider errors
        # any other exception: the reference wraps it in its own error (status 500 unless the
        # exception carries one), mapped through the exception tree like a provider's answer
        status = getattr(mock_response, "status_code", None)
        status = status if isinstance(status, int) and 400 <= status <= 599 else 500
        message = getattr(mock_response, "text", None) or str(mock_response)
        return exc.exception_for_status(status)(str(message), provider, model, status_code=status)
    if not isinstance(mock_response, str):
        return None
    if mock_response.startswith(("litellm.", "lmgate.")):
        name = mock_response.split(".", 1)[1]
        cls = _named_error(name)
        if cls is not None:
            status = getattr(cls, "status_code", None) or 500
            return cls(_MAGIC_MESSAGES.get(name, f"mock {name}"), provider, model, status_code=status)
        return None
    if mock_response.startswith(_EXCEPTION_PREFIX):
        if mock_response == MOCK_STREAMING_ERROR:
            return None if stream else streaming_error(provider, model)
        message = mock_response[len(_EXCEPTION_PREFIX) :]
        if message.startswith("content_filter_policy"):
            return exc.BadRequestError(mock_response, provider, model, status_code=400)
        return exc.InternalServerError(message, provider, model, status_code=500)
    return None


def streaming_error(provider: str, model: str) -> exc.LmgateError:
    return exc.ServiceUnavailableError(
        "This is a mock error raised mid-stream", provider, model, status_code=_MOCK_STREAMING_ERROR_STATUS
    )


def _usage() -> Usage:
    return Usage._build(
        {
            "prompt_tokens": MOCK_PROMPT_TOKENS,
            "completion_tokens": MOCK_COMPLETION_TOKENS,
            "total_tokens": MOCK_PROMPT_TOKENS + MOCK_COMPLETION_TOKENS,
        }
    )


def _whole(value: Any, name: str, maximum: int, model: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise exc.BadRequestError(
            f"mock: {name} must be a whole number from 1 to {maximum}, got {value!r}", "mock", model
        )
    return value


def mock_chat(
    model: str, mock_response: Any, n: int = 1, tool_calls: list[Any] | None = None
) -> ModelResponse:
    """The response a mock call answers with; ``n`` is at most ``MOCK_MAX_CHOICES``."""
    n = _whole(1 if n is None else n, "n", MOCK_MAX_CHOICES, model)
    if isinstance(mock_response, ModelResponse):
        return mock_response
    if isinstance(mock_response, dict):
        response = ModelResponse(mock_response)
        if response.get("usage") is None:
            response["usage"] = _usage()
        for choice in response.get("choices") or ():
            if isinstance(choice, dict) and choice.get("finish_reason") is None:
                choice["finish_reason"] = (
                    "stop"  # the reference's Choices default (its own copy: ours to change)
                )
        response.setdefault("model", model)
        return response
    content = str(mock_response)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    finish = "stop"
    if tool_calls:
        message["tool_calls"] = [ChatCompletionMessageToolCall(t) for t in tool_calls]
        message["content"] = None if not mock_response else content
        finish = "tool_calls"
    choices = [
        Choices._build(
            {"index": i, "message": Message._build(dict(message)), "finish_reason": finish, "logprobs": None}
        )
        for i in range(n)
    ]
    return ModelResponse._build(
        {
            "id": new_completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": _usage(),
        }
    )


def _then_fail(chunks: list[ModelResponseStream], error: BaseException) -> Any:
    yield chunks[0]
    raise error


def mock_chunks(response: ModelResponse, chunk_chars: int = MOCK_STREAM_CHUNK_CHARS) -> Any:
    """A complete response cut into the chunks a provider would have streamed (a list), or, for a
    response marked with ``_mock_stream_error``, the first chunk and then that error (a generator)."""
    error = response.__dict__.get("_mock_stream_error")
    if error is not None:
        return _then_fail(_chunks(response, chunk_chars), error)
    return _chunks(response, chunk_chars)


def _chunks(response: ModelResponse, chunk_chars: int) -> list[ModelResponseStream]:
    base = {
        "id": response.get("id"),
        "object": "chat.completion.chunk",
        "created": response.get("created"),
        "model": response.get("model"),
    }

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> ModelResponseStream:
        data = dict(base)
        data["choices"] = [
            StreamingChoices._build(
                {"index": index, "delta": Delta._build(delta), "finish_reason": finish, "logprobs": None}
            )
        ]
        return ModelResponseStream._build(data)

    chunks: list[ModelResponseStream] = []
    for choice in response.get("choices") or []:
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        text = message.get("content") or ""
        first: dict[str, Any] = {"role": "assistant", "content": text[:chunk_chars]}
        if message.get("reasoning_content"):  # a cached reasoning answer replays its reasoning too
            first["reasoning_content"] = message["reasoning_content"]
        chunks.append(chunk(index, first))
        for start in range(chunk_chars, len(text), chunk_chars):
            chunks.append(chunk(index, {"content": text[start : start + chunk_chars]}))
        for i, call in enumerate(message.get("tool_calls") or []):
            fn = call.get("function") or {}
            chunks.append(
                chunk(
                    index,
                    {
                        "tool_calls": [
                            ChatCompletionDeltaToolCall._build(
                                {
                                    "index": i,
                                    "id": call.get("id"),
                                    "type": "function",
                                    "function": Function._build(
                                        {"name": fn.get("name"), "arguments": fn.get("arguments", "")}
                                    ),
                                }
                            )
                        ]
                    },
                )
            )
        chunks.append(chunk(index, {}, choice.get("finish_reason") or "stop"))
    if not chunks:
        chunks.append(chunk(0, {"role": "assistant", "content": ""}, "stop"))
    usage = response.get("usage")
    if usage is not None:
        last = dict(chunks[-1])
        last["usage"] = usage
        chunks[-1] = ModelResponseStream._build(last)
    return chunks


def mock_embedding(
    model: str, inputs: list[Any], dimensions: int | None = None, vector: list[float] | None = None
) -> EmbeddingResponse:
    """Deterministic unit vectors derived from each input's text, or ``vector`` for every input.

    Each vector repeats the 32 bytes of the input's SHA-256 (scaled to -1..1), so building it
    is a list repetition whatever the size; inputs × dimensions is at most
    ``MOCK_MAX_EMBEDDING_VALUES``. ``vector`` is an embedding call's ``mock_response`` given as
    a list of numbers: the reference answers each input with that list.
    """
    if vector is not None:
        size = len(vector)
    else:
        size = (
            MOCK_EMBEDDING_DIMENSIONS
            if dimensions is None
            else _whole(dimensions, "dimensions", 2**31, model)
        )
    if len(inputs) * size > MOCK_MAX_EMBEDDING_VALUES:
        raise exc.BadRequestError(
            f"mock: {len(inputs)} inputs × {size} dimensions is over the mock's limit of "
            f"{MOCK_MAX_EMBEDDING_VALUES} values",
            "mock",
            model,
        )
    whole, rest = divmod(size, 32)
    data = []
    for i, item in enumerate(inputs):
        if vector is not None:
            data.append(Embedding._build({"object": "embedding", "index": i, "embedding": list(vector)}))
            continue
        digest = hashlib.sha256(str(item).encode()).digest()
        cycle = [(b - 127.5) / 127.5 for b in digest]
        norm = math.sqrt(whole * sum(v * v for v in cycle) + sum(v * v for v in cycle[:rest])) or 1.0
        cycle = [v / norm for v in cycle]
        data.append(
            Embedding._build({"object": "embedding", "index": i, "embedding": cycle * whole + cycle[:rest]})
        )
    tokens = sum(max(1, len(str(x)) // 4) for x in inputs)
    return EmbeddingResponse._build(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": Usage._build({"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}),
        }
    )


# ------------------------------------------------------------------ the mock provider and transport


class MockProvider(Provider):
    """The wire side of a mock call: the request body a real provider would get (what callbacks see)."""

    name = "mock"
    requires_key = False

    def chat_request(
        self, ep: Endpoint, messages: list[dict[str, Any]], params: dict[str, Any], stream: bool
    ) -> HttpRequest:
        return HttpRequest("POST", "mock:", {}, {"model": ep.model, "messages": messages, **params})

    def embedding_request(self, ep: Endpoint, input: list[Any], params: dict[str, Any]) -> HttpRequest:
        return HttpRequest("POST", "mock:", {}, {"model": ep.model, "input": input, **params})


MOCK_PROVIDER = MockProvider()


@functools.lru_cache(maxsize=256)
def mock_endpoint(provider: str, model: str) -> Endpoint:
    """A mock call's endpoint: no address, no key (cached: building a frozen dataclass costs ~1 µs a call)."""
    return Endpoint(provider, model, "")


class MockResponse:
    """An httpx-shaped answer, already read, whose body (``content``) is already decoded: the
    response, or the error asked for."""

    __slots__ = ("status_code", "content")

    is_closed = True  # read and closed: the loop takes ``content`` without reading
    headers: ClassVar[dict[str, str]] = {}  # never written to (the loop copies it)

    def __init__(self, status_code: int, content: Any) -> None:
        self.status_code = status_code
        self.content = content


def respond(call: Any) -> MockResponse:
    """The mock transport: what a provider would have answered this call."""
    if call.control.get("mock_timeout") is True and call.timeout is not None:
        # the reference's mock_timeout: the call waited its timeout (see _attempt) and timed out
        return MockResponse(
            408, exc.Timeout("This is a mock timeout error", call.provider_name, call.model_name)
        )
    error = mock_error(call.mock, call.provider_name, call.model_name, stream=bool(call.stream))
    if error is not None:
        return MockResponse(getattr(error, "status_code", None) or 500, error)
    if call.kind == "chat":
        streaming_failure = call.mock == MOCK_STREAMING_ERROR
        response = mock_chat(
            call.model_name,
            "" if streaming_failure else call.mock,
            n=call.params.get("n") or 1,
            tool_calls=call.control.get("mock_tool_calls"),
        )
        if streaming_failure:
            response._mock_stream_error = streaming_error(call.provider_name, call.model_name)
        return MockResponse(200, response)
    vector = call.mock if _is_vector(call.mock) else None
    return MockResponse(
        200, mock_embedding(call.model_name, call.payload, call.params.get("dimensions"), vector)
    )


def _is_vector(value: Any) -> bool:
    """An embedding's ``mock_response`` given as the vector itself (``[0.1, 0.2]``), as the reference takes it."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
