"""Amazon Bedrock (``bedrock/<model id>``), translated to and from OpenAI shapes.

Wire format: the Bedrock Runtime REST API on ``https://bedrock-runtime.{region}.amazonaws.com``:
``POST /model/{modelId}/converse`` and ``/converse-stream`` for chat (the model-agnostic
Converse API; the stream is ``application/vnd.amazon.eventstream``), ``POST /model/{modelId}/invoke``
(InvokeModel, the model's own body) for Titan and Cohere embeddings. Requests are signed with
AWS Signature Version 4 (service ``bedrock``) by botocore, imported only when a Bedrock call is made.

Requests: ``system``/``developer`` messages → ``system`` blocks; turns → ``messages`` (one role
per turn, consecutive turns of one role merged); image parts → ``image`` blocks (data URLs, base64
``bytes``; ``s3://`` links → ``s3Location``); assistant ``tool_calls`` → ``toolUse`` blocks and
``tool`` results → ``toolResult`` blocks in a user turn; ``cache_control`` on a part or message →
a ``cachePoint`` block after it; ``tools``/``tool_choice`` → ``toolConfig``; ``max_tokens``,
``temperature``, ``top_p``, ``stop`` → ``inferenceConfig``; ``top_k`` and thinking
(``reasoning_effort``/``thinking``) → ``additionalModelRequestFields``; ``guardrailConfig``,
``additionalModelRequestFields``, ``additionalModelResponseFieldPaths``, ``performanceConfig``,
``promptVariables``, ``requestMetadata`` pass through as they are.

Responses: text blocks → ``content``, ``reasoningContent`` → ``reasoning_content``, ``toolUse`` →
``tool_calls``; ``stopReason`` → ``finish_reason``; usage with cache reads and writes
(``cacheReadInputTokens``/``cacheWriteInputTokens``, counted in ``prompt_tokens`` as OpenAI counts
cached input). Cross-region inference profile ids (``us.``, ``eu.``, ``apac.``, ``global.`` …) are
priced as their base model (``lmgate.cost.find_price``).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import os
import random
import re
import threading
import time
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

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
from ._sigv4 import Signer
from .base import Endpoint, HttpRequest, Provider, StreamTranslator, is_context_window_error

SERVICE = "bedrock"  # the SigV4 signing name of bedrock-runtime
REGION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION")
BASE_ENV = ("AWS_BEDROCK_RUNTIME_ENDPOINT",)

#: ``reasoning_effort`` → Claude's ``thinking.budget_tokens`` (the reference's budgets)
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096}

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

#: Bedrock's error types (the ``x-amzn-ErrorType`` header, the stream's ``:exception-type``) → status
ERROR_TYPE_STATUS = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "ExpiredTokenException": 403,
    "ResourceNotFoundException": 404,
    "ModelNotReadyException": 503,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ModelStreamErrorException": 424,
    "ThrottlingException": 429,
    "ServiceQuotaExceededException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
    "ServiceUnavailable": 503,
}
# signature and token failures: the caller's credentials are wrong, not its permissions
_AUTH_ERRORS = frozenset(
    {"UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"}
)
# types whose status alone would pick the wrong class: the model timed out, or failed mid-answer ("retry")
_CLASS_BY_TYPE: dict[str, type[exc.LmgateError]] = {
    "ModelTimeoutException": exc.Timeout,
    "ModelErrorException": exc.InternalServerError,
    "ModelStreamErrorException": exc.InternalServerError,
}
_CONTEXT_HINTS = ("input is too long", "too many input tokens", "prompt is too long", "too many tokens")

#: request fields of the Converse API passed through as they are when given as parameters
PASSTHROUGH = (
    "guardrailConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "performanceConfig",
    "promptVariables",
    "requestMetadata",
)

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_DOC_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "text/plain": "txt",
    "text/html": "html",
    "text/markdown": "md",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}


@dataclasses.dataclass(frozen=True)
class AwsAuth:
    """What signing needs: the region and a botocore credentials object (refreshes itself if a role's)."""

    region: str
    credentials: Any
    #: botocore's SigV4 signer, kept for the deployment (re-made when the credentials change)
    signer: Signer = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "signer", Signer(self.credentials, SERVICE, self.region))


class BedrockProvider(Provider):
    name: ClassVar[str] = "bedrock"
    requires_key: ClassVar[bool] = False
    stream_format: ClassVar[str] = "bytes"  # application/vnd.amazon.eventstream
    parallel_tool_calls_by_default = True  # parallel_tool_calls=True accepted; False refused
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
            "reasoning_effort",
            "thinking",
            *PASSTHROUGH,
        }
    )

    def endpoint(
        self, model: str, api_base: str | None, api_key: str | None, api_version: str | None
    ) -> Endpoint:
        # the default base depends on the region, known only in ``configure``
        return _bare_endpoint(model, api_base)

    def configure(self, ep: Endpoint, options: dict[str, Any]) -> Endpoint:
        if not _have_botocore():
            raise exc.BadRequestError(
                "bedrock/ models need botocore: pip install 'lmgate[bedrock]'", self.name, ep.model
            )
        key_id, secret = options.get("aws_access_key_id"), options.get("aws_secret_access_key")
        explicit = None  # explicit keys and region: the endpoint depends on these options alone
        if key_id and secret and options.get("aws_region_name") and not options.get("aws_role_name"):
            base = ep.api_base or options.get("aws_bedrock_runtime_endpoint") or _first_env(BASE_ENV)
            explicit = (
                id(ep),
                key_id,
                secret,
                options.get("aws_session_token"),
                options["aws_region_name"],
                base,
            )
            kept = _explicit.get(explicit)
            if kept is not None and kept[0] is ep:  # the id is not reused: ep is held
                return kept[1]
        region = options.get("aws_region_name") or _first_env(REGION_ENV)
        profile = options.get("aws_profile_name")
        if bool(key_id) != bool(secret):
            raise exc.AuthenticationError(
                "bedrock needs aws_access_key_id and aws_secret_access_key together; pass both or neither",
                self.name,
                ep.model,
                status_code=401,
            )
        try:
            credentials, region, frozen = self._credentials(ep, options, region, profile)
        except exc.LmgateError:
            raise
        except Exception as error:  # botocore's: an unknown profile, STS refusing a role, a bad config file
            raise exc.AuthenticationError(
                f"could not get AWS credentials for bedrock: {type(error).__name__}: {error}",
                self.name,
                ep.model,
                status_code=401,
            ) from error
        if not region:
            raise exc.BadRequestError(
                f"no AWS region for bedrock/{ep.model}: pass aws_region_name= or set AWS_REGION "
                "(or AWS_DEFAULT_REGION, or region in the profile's config)",
                self.name,
                ep.model,
            )
        base = ep.api_base or options.get("aws_bedrock_runtime_endpoint") or _first_env(BASE_ENV)
        # a deployment's calls configure alike: the endpoint made for these inputs is kept, keyed by
        # the credentials' current values too (a refreshed token is masked from the next call on)
        key = (id(ep), region, base, id(credentials), frozen)
        found = _configured.get(key)
        if found is not None and found[0] is ep and found[1] is credentials:  # ids not reused: held
            if explicit is not None:
                _keep_explicit(explicit, ep, found[2])
            return found[2]
        base = (base or f"https://bedrock-runtime.{region}.amazonaws.com").rstrip("/")
        # the token travels (X-Amz-Security-Token) and an error may quote it; chain credentials included
        secrets = tuple(s for s in (frozen.secret_key, frozen.token) if s)
        # made directly: dataclasses.replace costs more than the rest of this method
        configured = Endpoint(ep.provider, ep.model, base, ep.api_key, ep.api_version, ep.base_query,
                              _aws_auth(region, credentials), secrets)  # fmt: skip
        if len(_configured) >= _MAX_KEPT:
            _configured.clear()
        _configured[key] = (ep, credentials, configured)
        if explicit is not None:
            _keep_explicit(explicit, ep, configured)
        return configured

    def _credentials(
        self, ep: Endpoint, options: dict[str, Any], region: str | None, profile: str | None
    ) -> tuple[Any, str | None, Any]:
        """(credentials, region, their frozen values now): explicit keys, else the chain; a role on top."""
        key_id, secret = options.get("aws_access_key_id"), options.get("aws_secret_access_key")
        if key_id:
            credentials: Any = _static_credentials(key_id, str(secret), options.get("aws_session_token"))
        else:
            credentials = chain_credentials(profile)
            if credentials is None:
                raise exc.AuthenticationError(
                    "no AWS credentials for bedrock: pass aws_access_key_id= and aws_secret_access_key=, set "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a profile (aws_profile_name= or "
                    "AWS_PROFILE) or a role the AWS credential chain can find",
                    self.name,
                    ep.model,
                    status_code=401,
                )
        if not region:
            region = chain_region(profile)
        if options.get("aws_role_name"):  # the reference's explicit role: assumed through STS with the above
            credentials = assumed_role(
                str(options["aws_role_name"]),
                options.get("aws_session_name"),
                credentials,
                profile,
                region,
                external_id=options.get("aws_external_id"),
                sts_endpoint=options.get("aws_sts_endpoint"),
            )
        return credentials, region, credentials.get_frozen_credentials()

    def sign(self, req: HttpRequest, body: bytes, ep: Endpoint) -> HttpRequest:
        """SigV4 over the final method, URL (query included), headers and body, by botocore."""
        auth: AwsAuth = ep.options
        url = f"{req.url}?{urlencode(req.params)}" if req.params else req.url
        # Host given to the signer, not derived from the URL by botocore (saves ~60 µs a call)
        host, derived = _host(url)
        signed = auth.signer.headers(req.method, url, {"Host": host, **req.headers}, body)
        if derived:  # the client sends this very Host itself
            del signed["Host"]
        # the query is now part of the signed URL: sent as it is, not encoded a second time
        return HttpRequest(req.method, url, signed, req.json)

    def _url(self, ep: Endpoint, action: str) -> str:
        # the model id is one path segment: ":" of versions and "/" of ARNs are escaped, as boto3 does
        return f"{ep.api_base}/model/{_model_segment(ep.model)}/{action}"

    # -- chat --
    def chat_request(
        self, ep: Endpoint, messages: list[dict[str, Any]], params: dict[str, Any], stream: bool
    ) -> HttpRequest:
        system, turns = translate_messages(messages)
        body: dict[str, Any] = {"messages": turns}
        if system:
            body["system"] = system
        if params:  # the optional members, looked for only when the call has parameters
            _add_params(body, params, turns)
        action = "converse-stream" if stream else "converse"
        headers = {"Content-Type": "application/json"}
        if stream:
            headers["Accept"] = "application/vnd.amazon.eventstream"
        return HttpRequest("POST", self._url(ep, action), headers, body)

    def parse_chat(self, body: dict[str, Any], ep: Endpoint) -> ModelResponse:
        content = ((body.get("output") or {}).get("message") or {}).get("content") or []
        texts, reasoning, calls, thinking = _split_blocks(content)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        if thinking:
            message["thinking_blocks"] = thinking
        if calls:
            message["tool_calls"] = [
                ChatCompletionMessageToolCall._build(
                    {
                        "id": call.get("toolUseId") or _new_call_id(),
                        "type": "function",
                        "function": Function._build(
                            {
                                "name": call.get("name"),
                                "arguments": orjson.dumps(call.get("input") or {}).decode(),
                            }
                        ),
                    }
                )
                for call in calls
            ]
        choice = Choices._build(
            {
                "index": 0,
                "message": Message._build(message),
                "finish_reason": finish_reason(body.get("stopReason"), bool(calls)),
                "logprobs": None,
            }
        )
        data: dict[str, Any] = {
            "id": _new_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": ep.model,
            "choices": [choice],
        }
        if body.get("usage") is not None:
            data["usage"] = usage_from_bedrock(body["usage"])
        response = ModelResponse._build(data)
        for key in ("metrics", "trace", "additionalModelResponseFields"):
            if body.get(key) is not None:
                response._hidden_params[key] = body[key]
        return response  # type: ignore[no-any-return]

    def stream_translator(self, ep: Endpoint) -> StreamTranslator:
        return _ConverseStream(ep)

    # -- embeddings --
    def embedding_request(self, ep: Endpoint, input: list[Any], params: dict[str, Any]) -> HttpRequest:
        for item in input:
            if not isinstance(item, str):
                raise exc.BadRequestError(
                    "bedrock embeddings take strings, not token lists", self.name, ep.model
                )
        family = _base_model(ep.model)
        allowed = {"encoding_format", "user"}
        if family.startswith("amazon.titan-embed"):
            allowed |= {"dimensions", "normalize", "embeddingTypes"}
            if len(input) != 1:
                raise exc.BadRequestError(
                    f"{ep.model} embeds one input per request; send the {len(input)} inputs one at a time",
                    self.name,
                    ep.model,
                )
            body: dict[str, Any] = {"inputText": input[0]}
            for name in ("dimensions", "normalize", "embeddingTypes"):
                if params.get(name) is not None:
                    body[name] = params[name]
        elif family.startswith("cohere.embed"):
            allowed |= {"input_type", "truncate", "embedding_types", "dimensions"}
            body = {"texts": list(input), "input_type": params.get("input_type") or "search_document"}
            for ours, theirs in (("truncate", "truncate"), ("embedding_types", "embedding_types")):
                if params.get(ours) is not None:
                    body[theirs] = params[ours]
            if params.get("dimensions") is not None:
                body["output_dimension"] = params["dimensions"]
        else:
            raise exc.BadRequestError(
                f"bedrock embeddings support Amazon Titan (amazon.titan-embed-*) and Cohere (cohere.embed-*) "
                f"models, not {ep.model!r}",
                self.name,
                ep.model,
            )
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise exc.UnsupportedParamsError(
                f"bedrock embeddings for {ep.model} do not support the parameter(s) {', '.join(unknown)}",
                self.name,
                ep.model,
            )
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        return HttpRequest("POST", self._url(ep, "invoke"), headers, body)

    def parse_embedding(self, body: dict[str, Any], ep: Endpoint) -> EmbeddingResponse:
        if "embeddings" in body:  # Cohere: {"embeddings": [[...]] or {"float": [[...]]}, "texts", "id"}
            vectors = body["embeddings"]
            if isinstance(vectors, dict):
                vectors = vectors.get("float") or next(iter(vectors.values()), [])
        else:  # Titan: {"embedding": [...], "inputTextTokenCount": n}
            vectors = [body.get("embedding") or []]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        out: dict[str, Any] = {"object": "list", "data": data, "model": ep.model}
        if body.get("inputTextTokenCount") is not None:
            tokens = int(body["inputTextTokenCount"])
            out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        # Cohere on Bedrock reports no token counts in the body: usage stays absent (cost None, with its reason)
        return EmbeddingResponse(out)

    # -- errors --
    def error_message(self, body: Any) -> tuple[str, str | None]:
        if isinstance(body, dict) and ("message" in body or "Message" in body):
            return str(body.get("message") or body.get("Message") or ""), None
        return super().error_message(body)

    def error(self, status: int, headers: dict[str, str], body_text: str, model: str) -> exc.LmgateError:
        error = super().error(status, headers, body_text, model)
        lowered = {k.lower(): v for k, v in headers.items()}
        kind = error_type(lowered.get("x-amzn-errortype") or "")
        if not kind and isinstance(error.body, dict):
            kind = error_type(str(error.body.get("__type") or ""))
        return bedrock_error(kind, str(error.message), model, status, headers, error.body, error.retry_after)


# ---------------------------------------------------------------- credentials (read once, cached)

# Kept per deployment rather than made per call: the signer (and the signing key it derives once a
# day) lives on the AwsAuth, so the same keys and region must give the same AwsAuth. Bounded: a
# process that sees ever new keys starts the maps afresh instead of growing without end.
_MAX_KEPT = 256
_static: dict[tuple[str, str, str | None], Any] = {}
_auths: dict[tuple[str, int], tuple[Any, AwsAuth]] = {}
_configured: dict[tuple[Any, ...], tuple[Endpoint, Any, Endpoint]] = {}
# explicit keys and region (no environment, file or role read): the configured endpoint by those options
_explicit: dict[tuple[Any, ...], tuple[Endpoint, Endpoint]] = {}


def _keep_explicit(key: tuple[Any, ...], ep: Endpoint, configured: Endpoint) -> None:
    if len(_explicit) >= _MAX_KEPT:
        _explicit.clear()
    _explicit[key] = (ep, configured)


_botocore_found = False


def _have_botocore() -> bool:
    """Whether botocore (signing, the credential chain, event-stream decoding) imports; once found,
    not asked again (an import statement per call costs more than the rest of a configured call)."""
    global _botocore_found
    if not _botocore_found:
        try:
            import botocore  # noqa: F401
        except ImportError:
            return False
        _botocore_found = True
    return True


@functools.lru_cache(maxsize=_MAX_KEPT)
def _bare_endpoint(model: str, api_base: str | None) -> Endpoint:
    """The endpoint before ``configure`` (immutable, so one per model and base is shared)."""
    if model.startswith("converse/"):  # the reference's explicit route (bedrock/converse/<id>): the same call
        model = model[len("converse/") :]
    base, _, query = (api_base or "").partition("?")
    return Endpoint(BedrockProvider.name, model, base.rstrip("/"), None, None, query.partition("#")[0])


def _static_credentials(key_id: str, secret: str, token: str | None) -> Any:
    """botocore ``Credentials`` for explicit keys, one object per key set (its identity keys the signer)."""
    key = (key_id, secret, token)
    found = _static.get(key)
    if found is None:
        from botocore.credentials import Credentials

        if len(_static) >= _MAX_KEPT:
            _static.clear()
        found = _static[key] = Credentials(key_id, secret, token)
    return found


def _aws_auth(region: str, credentials: Any) -> AwsAuth:
    """The deployment's signing state: one per region and credentials object."""
    key = (region, id(credentials))
    found = _auths.get(key)
    if found is not None and found[0] is credentials:  # the object itself held: its id is not reused
        return found[1]
    if len(_auths) >= _MAX_KEPT:
        _auths.clear()
    auth = AwsAuth(region, credentials)
    _auths[key] = (credentials, auth)
    return auth


_chain_lock = threading.Lock()
_chain_cache: dict[tuple[str | None, ...], tuple[Any, str | None]] = {}
_CHAIN_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def _chain(profile: str | None) -> tuple[Any, str | None]:
    """(credentials, region) from botocore's chain: env, shared files, SSO, assumed roles, container, instance.

    Cached per profile and per the environment the chain reads, so a call reads files once; a
    role's credentials are refreshable and renew themselves when they near expiry.
    """
    key = (profile, *(os.environ.get(name) for name in _CHAIN_ENV))
    found = _chain_cache.get(key)
    if found is not None:
        return found
    with _chain_lock:
        found = _chain_cache.get(key)
        if found is None:
            import botocore.session

            session = botocore.session.Session(profile=profile)
            credentials = session.get_credentials()
            found = (credentials, session.get_config_variable("region"))
            if credentials is not None:  # none found: look again next time (env may be set later)
                _chain_cache[key] = found
    return found


_roles: dict[tuple[Any, ...], Any] = {}


def assumed_role(
    role_arn: str,
    session_name: str | None,
    source: Any,
    profile: str | None,
    region: str | None,
    external_id: str | None = None,
    sts_endpoint: str | None = None,
) -> Any:
    """Refreshable credentials of ``role_arn``, assumed (STS AssumeRole, by botocore) with ``source``.

    Built once per role, session name and source key; STS is asked at the first signature and again
    when the credentials near expiry, never per call.
    """
    key = (role_arn, session_name, source.access_key, profile, region, external_id, sts_endpoint)
    found = _roles.get(key)
    if found is not None:
        return found
    with _chain_lock:
        found = _roles.get(key)
        if found is None:
            import botocore.session
            from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

            session = botocore.session.Session(profile=profile)
            extra = {"RoleSessionName": session_name or "lmgate"}
            if external_id:
                extra["ExternalId"] = external_id
            fetcher = AssumeRoleCredentialFetcher(
                functools.partial(session.create_client, region_name=region, endpoint_url=sts_endpoint),
                source,
                role_arn,
                extra_args=extra,
            )
            found = DeferredRefreshableCredentials(fetcher.fetch_credentials, "assume-role")
            _roles[key] = found
    return found


def chain_credentials(profile: str | None) -> Any:
    return _chain(profile)[0]


def chain_region(profile: str | None) -> str | None:
    return _chain(profile)[1]


# a host httpx and aiohttp both send exactly as written: lower-case name or IPv4, no trailing dot, a
# port without leading zeros (a default port is already cut off by _host)
_PLAIN_HOST = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*(?::[1-9][0-9]*)?")


@functools.lru_cache(maxsize=_MAX_KEPT)  # a deployment posts to one or two URLs
def _host(url: str) -> tuple[str, bool]:
    """(the Host header of ``url``: its authority without user info or a default port, whether the
    HTTP client sends that same header by itself); when it does, the signed Host is not handed to
    it (each header given costs the client more than deriving its own), else it is sent as signed."""
    scheme, _, rest = url.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    host = authority.rpartition("@")[2]
    default = ":443" if scheme == "https" else ":80"
    host = host[: -len(default)] if host.endswith(default) else host
    return host, "@" not in authority and _PLAIN_HOST.fullmatch(host) is not None


@functools.lru_cache(maxsize=256)
def _model_segment(model: str) -> str:
    """The model id escaped as one path segment (a deployment's is the same every call)."""
    return quote(model, safe="")


def _first_env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


# ---------------------------------------------------------------- errors


def error_type(value: str) -> str:
    """``ThrottlingException:http://internal.amazon.com/…`` or ``…#ThrottlingException`` → ``ThrottlingException``."""
    value = value.split(":", 1)[0]
    return value.rsplit("#", 1)[-1].strip()


def bedrock_error(
    kind: str,
    message: str,
    model: str,
    status: int | None,
    headers: dict[str, str] | None = None,
    body: Any = None,
    retry_after: float | None = None,
) -> exc.LmgateError:
    """The exception for a Bedrock error type (or, for a type unknown here, the HTTP status)."""
    status = ERROR_TYPE_STATUS.get(kind) or status or 500
    cls: type[exc.LmgateError] = exc.exception_for_status(status)
    if kind in _AUTH_ERRORS:
        cls = exc.AuthenticationError
    elif kind in _CLASS_BY_TYPE:
        cls = _CLASS_BY_TYPE[kind]
    elif status == 400 and (
        is_context_window_error(message, kind) or any(h in message.lower() for h in _CONTEXT_HINTS)
    ):
        cls = exc.ContextWindowExceededError
    return cls(
        message or kind or f"HTTP {status}",
        "bedrock",
        model,
        status_code=status,
        response_headers=headers,
        body=body,
        retry_after=retry_after,
    )


# ---------------------------------------------------------------- requests


def _new_id() -> str:
    return f"chatcmpl-{random.getrandbits(116):029x}"


def _new_call_id() -> str:
    return f"tooluse_{random.getrandbits(96):024x}"


_REGION_PREFIXES = ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.")


def _base_model(model: str) -> str:
    """A cross-region inference profile id without its geography (``us.anthropic.…`` → ``anthropic.…``)."""
    for prefix in _REGION_PREFIXES:
        if model.startswith(prefix):
            return model[len(prefix) :]
    return model


def inference_config(params: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = params.get("max_completion_tokens", params.get("max_tokens"))
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    if params.get("temperature") is not None:
        config["temperature"] = params["temperature"]
    if params.get("top_p") is not None:
        config["topP"] = params["top_p"]
    stop = params.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return config


def _add_params(body: dict[str, Any], params: dict[str, Any], turns: list[dict[str, Any]]) -> None:
    """The Converse members made from the call's parameters: inference, tools, model fields, passthrough."""
    config = inference_config(params)
    if config:
        body["inferenceConfig"] = config
    tool_config = translate_tools(params.get("tools"), params.get("tool_choice"), turns)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    extra = dict(params.get("additionalModelRequestFields") or {})
    if params.get("top_k") is not None:
        extra["top_k"] = params["top_k"]
    thinking = _thinking(params)
    if thinking is not None:
        extra["thinking"] = thinking
    if extra:
        body["additionalModelRequestFields"] = extra
    for name in PASSTHROUGH:
        if name != "additionalModelRequestFields" and params.get(name) is not None:
            body[name] = params[name]


def _thinking(params: dict[str, Any]) -> dict[str, Any] | None:
    if params.get("thinking") is not None:
        return dict(params["thinking"])
    effort = params.get("reasoning_effort")
    if effort is None or effort == "none":
        return None
    if effort not in THINKING_BUDGETS:
        raise exc.BadRequestError(
            f"reasoning_effort must be one of {', '.join(THINKING_BUDGETS)} or none, got {effort!r}",
            "bedrock",
        )
    return {"type": "enabled", "budget_tokens": THINKING_BUDGETS[effort]}


def translate_tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function", tool)
    spec: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        spec["description"] = fn["description"]
    spec["inputSchema"] = {"json": fn.get("parameters") or {"type": "object", "properties": {}}}
    return {"toolSpec": spec}


def translate_tools(tools: Any, choice: Any, turns: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``toolConfig``; Converse has no "none": the tools stay out unless the conversation already used them
    (then Bedrock wants them declared, and the model may still call one)."""
    if not tools:
        return None
    if choice == "none" and not _uses_tools(turns):
        return None
    config: dict[str, Any] = {"tools": []}
    for tool in tools:
        if isinstance(tool, dict) and "cachePoint" in tool:  # a cache point among the tools, as written
            config["tools"].append(tool)
            continue
        config["tools"].append(translate_tool(tool))
        if isinstance(tool, dict) and tool.get("cache_control"):
            config["tools"].append({"cachePoint": {"type": "default"}})
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if name:
            config["toolChoice"] = {"tool": {"name": name}}
    return config


def _uses_tools(turns: list[dict[str, Any]]) -> bool:
    return any("toolUse" in b or "toolResult" in b for t in turns for b in t["content"])


def _data_url(url: str) -> tuple[str, str] | None:
    """(mime type, base64 data) of a ``data:`` URL."""
    if not url.startswith("data:"):
        return None
    head, _, data = url[5:].partition(",")
    mime = head.split(";", 1)[0].lower()
    if ";base64" not in head:
        from urllib.parse import unquote_to_bytes

        data = base64.b64encode(unquote_to_bytes(data)).decode()
    return mime, data


def _media_block(url: str, mime: str | None = None) -> dict[str, Any]:
    parsed = _data_url(url)
    if parsed is not None:
        mime = parsed[0] or mime
        source: dict[str, Any] = {"bytes": parsed[1]}
    elif url.startswith("s3://"):
        source = {"s3Location": {"uri": url}}
        mime = mime or _guess_mime(url)
    else:
        raise exc.BadRequestError(
            "bedrock takes images and documents as data URLs (base64) or s3:// links, not "
            f"{url[:40]!r}: fetch the file and send it as data:<type>;base64,…",
            "bedrock",
        )
    mime = (mime or "").lower()
    if mime in _IMAGE_FORMATS:
        return {"image": {"format": _IMAGE_FORMATS[mime], "source": source}}
    if mime in _DOC_FORMATS:
        return {"document": {"format": _DOC_FORMATS[mime], "name": "document", "source": source}}
    raise exc.BadRequestError(
        f"bedrock cannot take a file of type {mime or 'unknown'!r}; images: png, jpeg, gif, webp; "
        "documents: pdf, csv, doc, docx, xls, xlsx, html, txt, md",
        "bedrock",
    )


def _guess_mime(url: str) -> str:
    import mimetypes

    return mimetypes.guess_type(url)[0] or ""


def _blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content → Converse content blocks (cache_control → a following cachePoint)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            blocks.append({"text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blocks.append(_media_block(str(url), image.get("format") if isinstance(image, dict) else None))
        elif kind == "file":
            file = part.get("file") or {}
            blocks.append(
                _media_block(str(file.get("file_data") or file.get("file_id") or ""), file.get("format"))
            )
        elif "cachePoint" in part:  # a Converse cache point written in the message, passed through
            blocks.append({"cachePoint": part["cachePoint"]})
            continue
        else:
            raise exc.BadRequestError(f"bedrock cannot take a message part of type {kind!r}", "bedrock")
        if part.get("cache_control"):
            blocks.append({"cachePoint": {"type": "default"}})
    return blocks


def _tool_result(msg: dict[str, Any]) -> dict[str, Any]:
    content = msg.get("content")
    if isinstance(content, list):
        result_blocks = [
            {"text": p.get("text", "")}
            if p.get("type") == "text"
            else _media_block(str((p.get("image_url") or {}).get("url")))
            for p in content
            if isinstance(p, dict) and p.get("type") in ("text", "image_url")
        ]
    else:
        result_blocks = [{"text": "" if content is None else str(content)}]
    return {"toolResult": {"toolUseId": msg.get("tool_call_id"), "content": result_blocks}}


def translate_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, turns); a turn is ``{"role": "user"|"assistant", "content": [blocks]}``."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:  # Converse wants the roles to alternate
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for msg in messages:
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_blocks(msg.get("content")))
            if msg.get("cache_control"):
                system.append({"cachePoint": {"type": "default"}})
            continue
        if role == "tool" or role == "function":
            add("user", [_tool_result(msg)])
            continue
        blocks = _blocks(msg.get("content"))
        if role == "assistant":
            blocks = _thinking_blocks(msg.get("thinking_blocks")) + blocks
            for call in msg.get("tool_calls") or ():
                fn = call.get("function") or {}
                args = fn.get("arguments") or "{}"
                try:
                    parsed = orjson.loads(args) if isinstance(args, (str, bytes)) else args
                except orjson.JSONDecodeError:
                    raise exc.BadRequestError(
                        f"tool call {call.get('id')!r} has arguments that are not JSON: {str(args)[:80]!r}",
                        "bedrock",
                    ) from None
                blocks.append(
                    {"toolUse": {"toolUseId": call.get("id"), "name": fn.get("name"), "input": parsed}}
                )
        elif role != "user":
            raise exc.BadRequestError(f"bedrock cannot take a message with role {role!r}", "bedrock")
        if msg.get("cache_control") and blocks:
            blocks.append({"cachePoint": {"type": "default"}})
        add("assistant" if role == "assistant" else "user", blocks)
    return system, turns


# ---------------------------------------------------------------- responses


def usage_from_bedrock(u: dict[str, Any]) -> Usage:
    """Converse counts cache reads and writes apart from inputTokens; OpenAI's prompt_tokens include them."""
    cache_read = int(u.get("cacheReadInputTokens") or 0)
    cache_write = int(u.get("cacheWriteInputTokens") or 0)
    prompt = int(u.get("inputTokens") or 0) + cache_read + cache_write
    completion = int(u.get("outputTokens") or 0)
    return Usage._build(  # type: ignore[no-any-return]
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cache_read, "cache_creation_tokens": cache_write},
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write,
        }
    )


def finish_reason(reason: str | None, has_calls: bool) -> str | None:
    if reason is None:
        return None
    finish = _FINISH_REASONS.get(reason, "stop")
    return "tool_calls" if finish == "stop" and has_calls else finish


def _split_blocks(
    blocks: list[dict[str, Any]],
) -> tuple[list[str], list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """(texts, reasoning texts, tool uses, thinking blocks in Anthropic's shape, signatures kept)."""
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for block in blocks:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            calls.append(block["toolUse"])
        elif "reasoningContent" in block:
            content = block["reasoningContent"] or {}
            if "redactedContent" in content:
                thinking.append({"type": "redacted_thinking", "data": content["redactedContent"]})
                continue
            text = (content.get("reasoningText") or {}).get("text")
            signature = (content.get("reasoningText") or {}).get("signature")
            if text:
                reasoning.append(text)
            if text or signature:
                thinking.append({"type": "thinking", "thinking": text or "", "signature": signature})
    return texts, reasoning, calls, thinking


def _thinking_blocks(blocks: Any) -> list[dict[str, Any]]:
    """An assistant message's ``thinking_blocks`` back to ``reasoningContent`` (Claude wants them, signed,
    before the tool use they led to when thinking and tools are combined)."""
    out: list[dict[str, Any]] = []
    for block in blocks or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "redacted_thinking":
            out.append({"reasoningContent": {"redactedContent": block.get("data")}})
        elif block.get("type") == "thinking":
            text: dict[str, Any] = {"text": block.get("thinking") or ""}
            if block.get("signature"):
                text["signature"] = block["signature"]
            out.append({"reasoningContent": {"reasoningText": text}})
    return out


class _ConverseStream(StreamTranslator):
    """ConverseStream's AWS event-stream messages → OpenAI chunks.

    The framing (prelude, headers, CRCs) is decoded by botocore's ``EventStreamBuffer``; each
    message's ``:event-type`` names a ConverseStreamOutput member and its payload is that member's
    JSON. ``messageStop`` carries the stop reason and ``metadata`` (after it) the usage: the
    finish reason waits for the usage so both ride on the last chunk.
    """

    def __init__(self, ep: Endpoint) -> None:
        from botocore.eventstream import EventStreamBuffer, ParserError
        from botocore.exceptions import EventStreamError

        self.ep = ep
        self.buffer = EventStreamBuffer()
        # what a corrupt frame raises: a bad CRC, lengths past the limits, … (looked up once per stream)
        self.broken_frame = (ParserError, EventStreamError, ValueError)
        self.done = False
        self.id = _new_id()
        self.created = int(time.time())
        self.tool_index_by_block: dict[int, int] = {}
        self.stop_reason: str | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, usage: Usage | None = None) -> Any:
        data: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.ep.model,
            "choices": [
                StreamingChoices._build(
                    {"index": 0, "delta": Delta._build(delta), "finish_reason": finish, "logprobs": None}
                )
            ],
        }
        if usage is not None:
            data["usage"] = usage
        return ModelResponseStream._build(data)

    def feed_bytes(self, data: bytes) -> list[ModelResponseStream]:
        self.buffer.add_data(data)
        out: list[ModelResponseStream] = []
        try:
            for message in self.buffer:
                out.extend(self._message(message.headers, message.payload))
        # a corrupt frame: the connection's fault, like a body that broke off
        except self.broken_frame as error:
            raise exc.APIConnectionError(
                f"bedrock sent a broken event stream: {error}", "bedrock", self.ep.model
            ) from None
        return out

    def _message(self, headers: dict[str, Any], payload: bytes) -> list[ModelResponseStream]:
        kind = headers.get(":message-type")
        if kind == "exception":
            name = str(headers.get(":exception-type") or "")
            body = _json(payload)
            message = (
                str(body.get("message") or body.get("Message") or name) if isinstance(body, dict) else name
            )
            raise bedrock_error(name[:1].upper() + name[1:], message, self.ep.model, None, body=body)
        if kind == "error":
            code = str(headers.get(":error-code") or "")
            raise bedrock_error(code, str(headers.get(":error-message") or code), self.ep.model, None)
        event = headers.get(":event-type")
        obj = _json(payload)
        if not isinstance(obj, dict):
            return []
        if event == "messageStart":
            return [self._chunk({"role": obj.get("role") or "assistant", "content": ""})]
        if event == "contentBlockStart":
            tool = (obj.get("start") or {}).get("toolUse")
            if tool is None:
                return []
            index = len(self.tool_index_by_block)
            self.tool_index_by_block[obj.get("contentBlockIndex", 0)] = index
            call = ChatCompletionDeltaToolCall._build(
                {
                    "index": index,
                    "id": tool.get("toolUseId"),
                    "type": "function",
                    "function": Function._build({"name": tool.get("name"), "arguments": ""}),
                }
            )
            return [self._chunk({"tool_calls": [call]})]
        if event == "contentBlockDelta":
            delta = obj.get("delta") or {}
            if "text" in delta:
                return [self._chunk({"content": delta["text"]})]
            if "toolUse" in delta:
                index = self.tool_index_by_block.get(obj.get("contentBlockIndex", 0), 0)
                call = ChatCompletionDeltaToolCall._build(
                    {
                        "index": index,
                        "function": Function._build({"arguments": delta["toolUse"].get("input", "")}),
                    }
                )
                return [self._chunk({"tool_calls": [call]})]
            reasoning = delta.get("reasoningContent") or {}
            if reasoning.get("text"):
                return [self._chunk({"reasoning_content": reasoning["text"]})]
            return []
        if event == "messageStop":
            self.stop_reason = obj.get("stopReason") or "end_turn"
            return []
        if event == "metadata":
            self.done = True
            finish = finish_reason(self.stop_reason or "end_turn", bool(self.tool_index_by_block))
            usage = usage_from_bedrock(obj["usage"]) if obj.get("usage") is not None else None
            return [self._chunk({}, finish=finish, usage=usage)]
        return []  # contentBlockStop and event types added later


def _json(payload: bytes) -> Any:
    if not payload:
        return {}
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode(errors="replace")
