"""The provider seam: pure translation between OpenAI shapes and a provider's wire format.

A provider never does I/O. The pipeline asks it where to send (``endpoint``), what to send
(``chat_request`` / ``embedding_request``), how to read the answer (``parse_chat``,
``parse_embedding``, a ``StreamTranslator`` fed one server-sent event at a time) and what an
error status means (``error``). The sync and async shells in ``_call.py`` do the sending.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from .. import exceptions as exc
from .._retry import retry_after_seconds
from .._secrets import SENSITIVE_HEADERS, scrub_values
from ..types import EmbeddingResponse, ModelResponse, ModelResponseStream


@dataclass(frozen=True)
class Endpoint:
    """Where one call goes: the resolved provider settings."""

    provider: str
    model: str  # the model name the provider is asked for (the deployment name on Azure)
    api_base: str
    api_key: str | None = None
    api_version: str | None = None
    #: the query written into ``api_base`` (``?api-key=…``), kept apart so paths can be appended
    #: to ``api_base``; it is sent with every request
    base_query: str = ""
    #: what ``Provider.configure`` resolved beyond key and base (Bedrock: region and AWS credentials)
    options: Any = None
    #: further secrets of this endpoint, masked like the key wherever the call's data leaves it
    secrets: tuple[str, ...] = ()


@dataclass
class HttpRequest:
    """What to send: built by a provider, sent by the pipeline."""

    method: str
    url: str
    headers: dict[str, str]
    json: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)
    # the encoded body, kept: the call's record snapshots it and the attempt sends it (one encoding)
    _body: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def body_bytes(self) -> bytes:
        """The body as JSON, encoded once (``json`` is not changed once the request is built)."""
        body = self._body
        if body is None:
            body = self._body = encode_body(self.json)
        return body


def encode_body(data: Any) -> bytes:
    """A request body as JSON; a value JSON cannot hold is the caller's mistake (BadRequestError)."""
    # non-str keys are valid in provider params (logit_bias={50256: -100}); JSON makes them strings
    try:
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError as error:
        reason = "it is nested too deeply" if "recursion" in str(error).lower() else str(error)
        raise exc.BadRequestError(f"the request body cannot be encoded as JSON: {reason}") from None


class StreamTranslator:
    """Turns a provider's server-sent events into OpenAI chunks, one event at a time.

    A provider whose ``stream_format`` is not ``"sse"`` is fed the raw body instead, one piece
    at a time as it arrives (``feed_bytes``), and decodes its framing itself.
    """

    done: bool = False
    # set by the call for a pass-through (``messages_request``): each provider event is kept on
    # a chunk as ``_anthropic_event``; translators of other APIs ignore it
    keep_events: bool = False
    # set by the call when nothing reads its chunks but as plain mappings and JSON (the proxy's
    # stream without stream hooks or chunk callbacks): a translator that can may then give the
    # decoded event itself where it is what its typed chunk would hold (OpenAI's; the rest ignore it)
    plain_chunks: bool = False

    def feed(self, event: str, data: str) -> list[ModelResponseStream]:  # pragma: no cover - interface
        raise NotImplementedError

    def feed_bytes(self, data: bytes) -> list[ModelResponseStream]:  # pragma: no cover - interface
        raise NotImplementedError


class TokenSource:
    """Short-lived credentials a provider's requests carry (Vertex AI's OAuth access tokens).

    The one place a provider's auth does I/O: the attempt loop asks for the header with its
    ``AUTH`` operation, the sync driver calls ``auth_header`` inline and the async driver in a
    thread, unless ``cached_header`` already has a header that is not about to expire.
    """

    def cached_header(self) -> dict[str, str] | None:  # pragma: no cover - interface
        """The current header when it is still good; never does I/O."""
        raise NotImplementedError

    def auth_header(self, refused: dict[str, str] | None = None) -> dict[str, str]:  # pragma: no cover
        """The header, refreshed first when expiring, or when it is still ``refused`` (the header a 401
        answered: concurrent calls refused the same token refresh it once); may block."""
        raise NotImplementedError


class Provider:
    """The interface every provider module implements."""

    name: ClassVar[str] = "base"
    #: environment variables read for the key and base URL, in order of preference
    key_env: tuple[str, ...] = ()
    base_env: tuple[str, ...] = ()
    version_env: tuple[str, ...] = ()
    default_api_base: ClassVar[str | None] = None
    default_api_version: ClassVar[str | None] = None
    #: True when the provider refuses to be called without a key
    requires_key: ClassVar[bool] = True
    #: an explicit api_base may point at a key-less server (a local proxy); not so where every
    #: call names a base (Azure), or a missing key would only surface as the server's 401
    key_optional_with_api_base: ClassVar[bool] = True
    #: chat parameters this provider accepts; None means "pass everything through"
    supported_params: ClassVar[frozenset[str] | None] = None
    #: ``parallel_tool_calls=True`` accepted though not sent: the models call tools in parallel anyway
    parallel_tool_calls_by_default: ClassVar[bool] = False
    supports_embeddings: ClassVar[bool] = True
    #: how a streamed answer is framed: ``"sse"`` (server-sent events, fed to ``StreamTranslator.feed``)
    #: or ``"bytes"`` (a binary framing such as AWS event-stream, fed to ``StreamTranslator.feed_bytes``)
    stream_format: ClassVar[str] = "sse"

    def check_params(self, params: dict[str, Any]) -> list[str]:
        """The chat parameters this provider cannot take (only asked when ``supported_params`` is set)."""
        supported = self.supported_params or frozenset()
        lenient = self.parallel_tool_calls_by_default
        return [
            k
            for k in params
            if k not in supported and not (lenient and k == "parallel_tool_calls" and params[k] is True)
        ]

    def endpoint(
        self, model: str, api_base: str | None, api_key: str | None, api_version: str | None
    ) -> Endpoint:
        base = api_base or _first_env(self.base_env) or self.default_api_base
        if not base:
            names = " or ".join(self.base_env) or "api_base"
            raise exc.BadRequestError(
                f"no api_base for {self.name}/{model}: pass api_base= or set {names}", self.name, model
            )
        key = api_key if api_key is not None else _first_env(self.key_env)
        if self.requires_key and not key and (api_base is None or not self.key_optional_with_api_base):
            names = " or ".join(self.key_env)
            raise exc.AuthenticationError(
                f"no API key for {self.name}: pass api_key= or set {names}", self.name, model, status_code=401
            )
        version = api_version or _first_env(self.version_env) or self.default_api_version
        base, _, query = base.partition("?")
        return Endpoint(self.name, model, base.rstrip("/"), key, version, query.partition("#")[0])

    def configure(self, ep: Endpoint, options: dict[str, Any]) -> Endpoint:
        """The endpoint completed from the call's control parameters (``options``); as it is by default.

        Bedrock reads its region and AWS credentials here (``aws_region_name``, ``aws_access_key_id``, …).
        """
        return ep

    def sign(self, req: HttpRequest, body: bytes, ep: Endpoint) -> HttpRequest:
        """The request as sent, once its body is final; unchanged by default.

        Computed, not fetched: a signature (Bedrock's SigV4) from credentials ``configure`` resolved.
        Runs for each attempt, after ``extra_headers`` and the ``api_base`` query are added.
        """
        return req

    def for_model(self, model: str) -> Provider:
        """The provider that serves ``model`` under this prefix (``vertex_ai/claude-*`` speaks Anthropic's API)."""
        return self

    def credentials(self, ep: Endpoint, options: dict[str, Any]) -> tuple[Endpoint, TokenSource | None]:
        """The endpoint completed from the call's provider options (``vertex_project``, …) and the
        token source its requests are authenticated with; key-based providers have none."""
        return ep, None

    # -- chat --
    def chat_request(
        self, ep: Endpoint, messages: list[dict[str, Any]], params: dict[str, Any], stream: bool
    ) -> HttpRequest:  # pragma: no cover - interface
        raise NotImplementedError

    def parse_chat(self, body: dict[str, Any], ep: Endpoint) -> ModelResponse:  # pragma: no cover - interface
        raise NotImplementedError

    def stream_translator(self, ep: Endpoint) -> StreamTranslator:  # pragma: no cover - interface
        raise NotImplementedError

    # -- embeddings --
    def embedding_request(self, ep: Endpoint, input: list[Any], params: dict[str, Any]) -> HttpRequest:
        raise exc.BadRequestError(f"{self.name} does not offer embeddings", self.name, ep.model)

    def parse_embedding(self, body: dict[str, Any], ep: Endpoint) -> EmbeddingResponse:
        return EmbeddingResponse(body)

    # -- errors --
    def error_message(self, body: Any) -> tuple[str, str | None]:
        """(message, code) from an error body."""
        if isinstance(body, dict):
            err = body.get("error", body)
            if isinstance(err, dict):
                return str(err.get("message") or err), err.get("code") or err.get("type")
            return str(err), None
        return str(body or ""), None

    def error(self, status: int, headers: dict[str, str], body_text: str, model: str) -> exc.LmgateError:
        """Map an error answer to the most specific exception."""
        try:
            body: Any = orjson.loads(body_text) if body_text else None
        except orjson.JSONDecodeError:
            body = body_text
        message, code = self.error_message(body)
        message = message or f"HTTP {status}"
        cls: type[exc.LmgateError] = exc.exception_for_status(status)
        if status == 400 and is_context_window_error(message, code):
            cls = exc.ContextWindowExceededError
        elif status == 400 and is_content_policy_error(message, code):
            cls = exc.ContentPolicyViolationError
        return cls(
            message,
            self.name,
            model,
            status_code=status,
            response_headers=headers,
            body=body,
            retry_after=retry_after_seconds(headers),
        )


def _first_env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


_CONTEXT_HINTS = ("context_length_exceeded", "maximum context length", "prompt is too long", "context window")


def is_context_window_error(message: str, code: str | None) -> bool:
    text = f"{code or ''} {message}".lower()
    return any(h in text for h in _CONTEXT_HINTS)


_CONTENT_POLICY_HINTS = (
    "content_policy_violation",
    "content_filter",
    "content management policy",
    "safety system",
)


def is_content_policy_error(message: str, code: str | None) -> bool:
    text = f"{code or ''} {message}".lower()
    return any(h in text for h in _CONTENT_POLICY_HINTS)


def rate_limit_headers(headers: dict[str, str], secrets: Iterable[str | None] = ()) -> dict[str, str]:
    """Response headers worth surfacing: rate limits as they are, the rest prefixed ``llm_provider-``.

    Credential headers (``SENSITIVE_HEADERS``: ``set-cookie``, ``authorization``, …) are left
    out and ``secrets`` masked in the values: these headers reach callbacks and the client.
    """
    # what ``upstream_headers`` would pass on, less the hop-by-hop ones, each name lowered once:
    # scrubbing works value by value, so checking only the values kept gives the same answer
    names: list[str] = []
    values: list[str] = []
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _LEFT_OUT:
            continue
        names.append(lowered)
        values.append(str(value))
    if not names:  # nothing to pass on (a server that sends only its framing headers): nothing to scrub
        return {}
    out: dict[str, str] = {}
    for lowered, value in zip(names, scrub_values(values, tuple(secrets)), strict=True):
        if lowered.startswith(("x-ratelimit-", "anthropic-ratelimit-", "retry-after")):
            out[lowered] = value
        out["llm_provider-" + lowered] = value
    return out


_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "content-type",
        "date",
        "server",
        "set-cookie",
        "upgrade",
    }
)
_LEFT_OUT = _HOP_BY_HOP | SENSITIVE_HEADERS  # rate_limit_headers drops both
