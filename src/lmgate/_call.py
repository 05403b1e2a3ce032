"""The call pipeline, written once.

``Call`` holds every decision of one call: which provider and parameters, what to send,
when to retry, how to read the answer, what it cost, and which events the callbacks get.
The entry points (``completion``, ``acompletion``, ``embedding``, ``aembedding``) are thin
shells around it that differ only where they send and await.
"""

from __future__ import annotations

import functools
import itertools
import os
import random as _random
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from . import exceptions as exc
from . import providers as _providers
from ._attempt import run_async, run_sync
from ._callbacks.data import copy_data, embedding_messages, snapshot
from ._callbacks.dispatch import EMPTY_PLAN, get_dispatcher
from ._callbacks.kwargs import StreamOriginalResponse
from ._callbacks.payload_facts import success_facts
from ._callbacks.record import CallRecord, encode_unheard_answer
from ._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from ._secrets import header_secrets, mask_key, mask_url, remember_secret, scrub, url_secrets
from .cost import PRICE_KEYS, CostResult, compute_cost, custom_prices
from .providers import mock as _mock
from .providers.base import Endpoint, HttpRequest, Provider, TokenSource, encode_body, rate_limit_headers
from .settings import DEFAULT, Settings
from .types import EmbeddingResponse, ModelResponse, Usage

if TYPE_CHECKING:
    from .streaming import CustomStreamWrapper

# parameters that steer lmgate rather than go to the provider
CONTROL_PARAMS = frozenset(
    {
        "api_key",
        "api_base",
        "base_url",
        "api_version",
        "metadata",
        "litellm_metadata",
        "timeout",
        "request_timeout",
        "num_retries",
        "max_retries",
        "retry_policy",
        "mock_response",
        "mock_tool_calls",
        "mock_delay",
        "mock_timeout",
        "callbacks",
        "input_callback",
        "success_callback",
        "failure_callback",
        "caching",
        "cache",
        "drop_params",
        "extra_headers",
        "extra_body",
        # {"body", "headers"}: an Anthropic Messages request to send as it is when the
        # deployment speaks that API (``messages_request``), else the translated chat request
        "anthropic_passthrough",
        # {"api": "responses" | "completions", "body"}: an OpenAI Responses or legacy completions
        # request to send as it is when the provider lists the API in ``passthrough_apis``
        "openai_passthrough",
        "custom_llm_provider",
        "litellm_call_id",
        "litellm_trace_id",
        "input_cost_per_token",
        "output_cost_per_token",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost",
        "base_model",
        "model_info",
        "model_id",
        "model_group",
        "turn_off_message_logging",
        "log_raw_request_response",
        "logger_fn",
        # a list: a failure before the call returns appends a DeferredFailure here instead of
        # emitting its event (a Router emits it only if no other deployment will be tried)
        "defer_failure_event",
        # a Router's figure: what its earlier, failed attempts of this request cost (in cost_breakdown)
        "failed_attempts_cost",
        # internal (a client's ``_`` keys never reach a call): the caller reads the stream's chunks
        # only as plain mappings and JSON (the proxy without stream hooks), see ``translator``
        "_plain_chunks",
        # internal: nothing changes the call's metadata dict while the call runs (the proxy without
        # moderation hooks, which run beside the call): its record may borrow it, not copy it
        "_metadata_unshared",
        # Bedrock's endpoint settings and AWS credentials: read by ``Provider.configure``, never
        # sent to the model nor shown to callbacks as optional_params
        "aws_region_name",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_profile_name",
        "aws_role_name",
        "aws_session_name",
        "aws_external_id",
        "aws_sts_endpoint",
        "aws_bedrock_runtime_endpoint",
        # vertex: where and as whom (a service account's JSON holds its private key: never a provider param)
        "vertex_project",
        "vertex_location",
        "vertex_credentials",
        "vertex_ai_project",
        "vertex_ai_location",
        "vertex_ai_credentials",
    }
)
_CALL_LIST_NAMES = ("callbacks", "input_callback", "success_callback", "failure_callback")
_PRICES_OR_LISTS = frozenset((*PRICE_KEYS, *_CALL_LIST_NAMES))  # a call's own prices or callback lists
# a call's type by (is_async, kind), when it does not name its own (another API over chat)
_CALL_TYPES = {
    (False, "chat"): "completion",
    (True, "chat"): "acompletion",
    (False, "embedding"): "embedding",
    (True, "embedding"): "aembedding",
}


class Call:
    """One call's decisions; see the module docstring."""

    # the cache pipeline's decision at lookup, read again at store; set only by calls that use a
    # cache. A class default, not an instance attribute set in __init__: a Call already holds 29,
    # and past CPython's 30 shared-key attributes every attribute access of every call slows down
    cache_state: Any = None
    # what ``prepare`` and the attempt loop set later start as class defaults, not as nine stores
    # in every call's __init__ (issue 18: a call is made per forwarded request); each is
    # immutable, and an assignment makes it the instance's own
    provider: Provider | None = None  # the provider the model resolved to (None: a mock of an unknown model)
    wire: Provider | None = None  # the one requests are built for: the provider, or the mock's
    endpoint: Endpoint | None = None
    token_source: TokenSource | None = None  # vertex: OAuth tokens the attempt loop asks for
    # this call's secrets (its key, what its api_base holds), masked wherever its data leaves it
    secrets: tuple[str, ...] = ()
    shown_api_base: str | None = None  # api_base with its password and secret query values masked
    finished = False
    cache_hit = False
    stream_started = False
    # a call heard only by the store that keeps no record (``Plan.facts_sinks``): its messages'
    # snapshot, its parameters and user as it started; None for every other call
    unrecorded: tuple[tuple[bytes | None, Any], dict[str, Any], Any] | None = None

    def __init__(
        self, kind: str, model: str, payload: Any, params: dict[str, Any], *, stream: bool, is_async: bool
    ) -> None:
        # the Settings this call reads: a Router's (internal ``_settings=`` keyword) or the module defaults
        settings: Settings = params.pop("_settings", None) or DEFAULT
        self.settings = settings
        self.kind = kind  # "chat" | "embedding"
        # another API served over chat (``anthropic_messages``) names its own call type (internal keyword)
        self.call_type = params.pop("_call_type", None) or _CALL_TYPES[is_async, kind]
        self.model = model
        self.payload = payload  # messages (chat) or the input list (embedding)
        self.stream = bool(stream)
        self.is_async = is_async
        self.start = time.time()
        # the names first (one C set operation), then each moved; the provider's keep their order
        control = {}  # a loop, not a comprehension (its function and frame): once a call
        for k in CONTROL_PARAMS.intersection(params):
            control[k] = params.pop(k)
        extra_body = control.get("extra_body")
        if extra_body:
            params.update(extra_body)
        self.control = control
        self.params = params  # what goes to the provider
        self.metadata = control.get("metadata") or control.get("litellm_metadata") or {}
        mock = control.get("mock_response")
        # ``asks_for_mock`` inlined (once a call): mock_tool_calls or mock_timeout alone mocks it too
        if mock is None and (control.get("mock_tool_calls") or control.get("mock_timeout")):
            mock = _mock.MOCK_DEFAULT_TEXT  # mock_tool_calls or mock_timeout alone: the reference's text
        self.mock = mock
        self.provider_name = control.get("custom_llm_provider") or "unknown"
        self.model_name = model
        self.policy: RetryPolicy = (
            control.get("retry_policy") or settings.retry_policy or DEFAULT_RETRY_POLICY
        )
        retries = control.get("num_retries", control.get("max_retries"))
        if retries is None:
            retries = settings.num_retries or 0
        self.num_retries = retries if type(retries) is int else int(retries)  # int() only when needed
        self.timeout = control.get("timeout", control.get("request_timeout", settings.request_timeout))
        self.response_headers: dict[str, str] = {}
        call_lists: dict[str, Any] | None = None
        if _PRICES_OR_LISTS.isdisjoint(control):  # the usual call: one test for both (issue 18)
            self.custom_prices = None
        else:
            self.custom_prices = None if control.keys().isdisjoint(PRICE_KEYS) else custom_prices(control)
            if not control.keys().isdisjoint(_CALL_LIST_NAMES):
                call_lists = {k: control[k] for k in _CALL_LIST_NAMES if control.get(k)}
        global_lists = settings.callback_lists  # a derived one's: its parent's, then its own
        if not call_lists and not any(global_lists):
            self.plan = EMPTY_PLAN
        else:
            self.plan = get_dispatcher().plan(global_lists, call_lists, settings)
        self.record: CallRecord | None = None
        plan = self.plan
        if not plan.empty:
            # the call's own turn_off_message_logging (True or False) wins over the global one, as in
            # the reference; the proxy never lets a client set it (a control parameter)
            redact_all = bool(
                settings.turn_off_message_logging
                if control.get("turn_off_message_logging") is None
                else control["turn_off_message_logging"]
            )
            # a stream's record outlives the call's return (its caller reads the chunks); a
            # library caller may change its dict while the call waits (the row keeps the start's)
            unshared = not self.stream and control.get("_metadata_unshared") is True
            if plan.facts_sinks and unshared and not redact_all and kind == "chat" and settings.cache is None:
                # heard only by the store, a plain call: no record; what it would copy now is kept
                # (its facts line is made when it succeeds: ``_succeed_unrecorded``)
                self.unrecorded = (
                    snapshot(payload),
                    {} if type(params) is dict and not params else copy_data(params),
                    params.get("user"),
                )
            else:
                self.record = self._new_record(
                    control.get("litellm_call_id") or new_call_id(),
                    params.get("user"),
                    redact_all,
                    plan.takes_records and unshared,
                )

    def _new_record(self, call_id: str, user: Any, redact_all: bool, borrow_metadata: bool) -> CallRecord:
        control = self.control
        record = CallRecord(
            call_type=self.call_type,
            model=self.model_name,
            provider=self.provider_name,
            messages=self.payload,
            optional_params=self.params,
            # built lazily, off the caller's path; never, for a call heard only by sinks of
            # its payload (the store), which does not hold it
            litellm_params=_LitellmParamsSource(self) if self.plan.reads_request else {},
            metadata=self.metadata,
            stream=self.stream,
            user=user,
            call_id=call_id,
            trace_id=control.get("litellm_trace_id") or _trace_id(self.metadata),
            start=self.start,
            is_async=self.is_async,
            redact_all=redact_all,
            raw_request=bool(control.get("log_raw_request_response", self.settings.log_raw_request_response)),
            borrow_metadata=borrow_metadata,
        )
        if "model_id" in control:  # set only when given: the record's defaults are None
            record.model_id = control["model_id"]
        if "model_group" in control:
            record.model_group = control["model_group"]
        return record

    def _late_record(self, call_id: str) -> CallRecord:
        """The record of a call that kept none (``unrecorded``), as it would be by now, made when
        the call needs one after all: it failed, or its facts line could not be made. It holds
        what the call was made with (messages, parameters, user: kept when it started) and what
        ``prepare`` would have set on it; ``attempt``, which only a hook's kwargs read, stays 0
        (no hook hears such a call)."""
        assert self.unrecorded is not None
        messages_snapshot, optional_params, user = self.unrecorded
        record = self.record = self._new_record(call_id, user, False, True)
        record.messages_snapshot = messages_snapshot
        record.optional_params = optional_params
        endpoint = self.endpoint
        if self.mock is None and endpoint is not None:  # prepare got as far as setting these
            record.api_base = self.shown_api_base
            record.api_key_masked = mask_key(endpoint.api_key) if endpoint.api_key else None
        return record

    def _litellm_params(self) -> dict[str, Any]:
        record = self.record
        if record is not None:
            return _litellm_params_of(self.control, self, record.call_id, record.trace_id, record.metadata)
        c = self.control
        return _litellm_params_of(c, self, c.get("litellm_call_id"), c.get("litellm_trace_id"), self.metadata)

    # ---- preparation ----
    def prepare(self) -> None:
        """Check the input, resolve the provider and check the parameters; raises on bad input."""
        if self.kind == "chat":
            _validate_messages(self.payload)
        c = self.control
        api_base = c.get("api_base") or c.get("base_url")
        custom_provider = c.get("custom_llm_provider")
        try:
            if type(self.model) is str and (custom_provider is None or type(custom_provider) is str):
                provider, model_name = _resolve(self.model, custom_provider, True if api_base else False)
            else:  # raises the error a model that is not a string gets
                provider, model_name = _providers.resolve(self.model, custom_provider, api_base)
        except exc.UnknownModelError:
            if self.mock is None:
                raise
            provider, model_name = None, self.model  # a mock needs no provider
        self.provider = provider
        self.model_name = model_name
        self.provider_name = provider.name if provider else (c.get("custom_llm_provider") or "mock")
        if self.record is not None:
            self.record.provider = self.provider_name
            self.record.model = model_name
        if provider is not None:
            self._check_params(provider)
        if self.mock is not None:  # answered by the mock transport: no key, no address
            self.wire = _mock.MOCK_PROVIDER
            self.endpoint = _mock.mock_endpoint(self.provider_name, model_name)
            return
        assert provider is not None
        self.wire = provider
        if self.kind == "embedding" and not provider.supports_embeddings:
            raise exc.BadRequestError(f"{provider.name} does not offer embeddings", provider.name, model_name)
        api_key, api_version = c.get("api_key"), c.get("api_version")
        static = (
            _static_endpoint(provider, model_name, api_base, api_key, api_version)
            if type(api_base) is str
            and type(api_key) is str
            and (api_version is None or type(api_version) is str)
            else None
        )
        if static is not None:
            # a deployment's calls all resolve alike: endpoint, its secrets and masks computed once
            ep, secrets, self.shown_api_base, key_masked = static
        else:
            ep = provider.endpoint(model_name, api_base, api_key, api_version)
            ep = provider.configure(ep, c)  # seam: region, credentials (Bedrock)
            ep, self.token_source = provider.credentials(
                ep, c
            )  # seam: project, location, token source (Vertex)
            secrets, self.shown_api_base, key_masked = _endpoint_masks(ep)
        self.endpoint = ep
        headers = header_secrets(c.get("extra_headers"))
        self.secrets = (*secrets, *(s for s in headers if s)) if headers else secrets
        for secret in self.secrets:  # also masked in text that never passes through this call
            remember_secret(secret)
        if self.record is not None:
            self.record.api_base = self.shown_api_base
            self.record.api_key_masked = key_masked

    def _check_params(self, provider: Provider) -> None:
        if provider.supported_params is None or self.kind != "chat":
            return
        bad = provider.check_params(self.params)
        if not bad:
            return
        drop = self.control.get("drop_params")
        if drop is None:
            drop = self.settings.drop_params
        if drop:
            for key in bad:
                self.params.pop(key, None)
            return
        raise exc.UnsupportedParamsError(
            f"{provider.name} does not support the parameter(s) {', '.join(sorted(bad))}; "
            "pass drop_params=True (or set lmgate.drop_params = True) to drop them",
            provider.name,
            self.model_name,
        )

    # ---- building the request ----
    def http_request(self, attempt: int) -> HttpRequest:
        """The request for this attempt; emits the pre-call event."""
        assert self.wire is not None and self.endpoint is not None
        record = self.record
        if self.mock is not None and (record is None or not self.plan.reads_request):
            # nobody reads a mock's request when no callback listens, or only sinks of the
            # payload (which holds no request), so none is built; what it would hold is still
            # encoded, so the mock refuses what a real call's body would
            encode_body((self.payload, self.params))
            if record is not None:
                record.attempt = attempt
            return _UNHEARD_MOCK_REQUEST
        passthrough = self._passthrough()
        if passthrough is not None:
            req = passthrough(
                self.endpoint,
                self.control["anthropic_passthrough"]["body"],
                self.control["anthropic_passthrough"].get("headers") or {},
                self.stream,
            )
        elif (api := self._openai_api()) is not None:
            req = self.wire.api_request(  # type: ignore[attr-defined]
                self.endpoint, api, self.control["openai_passthrough"]["body"], self.stream
            )
        elif self.kind == "chat":
            req = self.wire.chat_request(self.endpoint, self.payload, dict(self.params), self.stream)
        else:
            req = self.wire.embedding_request(self.endpoint, self.payload, dict(self.params))
        extra_headers = self.control.get("extra_headers")
        if extra_headers:
            req.headers.update(extra_headers)
        if self.endpoint.base_query:  # the query written into api_base (a gateway's ?key=…)
            from urllib.parse import parse_qsl

            req.params = {**dict(parse_qsl(self.endpoint.base_query, keep_blank_values=True)), **req.params}
        if record is not None:
            record.attempt = attempt
            if self.plan.reads_request:  # else nobody reads the snapshot or a "pre" event
                try:  # the body's JSON is the record's snapshot of it too: encoded once
                    encoded: bytes | None = req.body_bytes()
                except exc.BadRequestError:  # raised again when the attempt sends it, after "pre"
                    encoded = None
                record.set_request(req.json, req.headers, self.shown_api_base, encoded)
                get_dispatcher().emit(record, self.plan, "pre")
        return req

    # ---- reading the answer ----
    def post_call(self, text: str | None, headers: dict[str, str] | None = None) -> None:
        if headers is not None:
            self.response_headers = headers
        if self.record is not None and self.plan.reads_request:  # else nobody reads it
            # error bodies sometimes quote the key back: mask before any callback can see it
            self.record.original_response = scrub(text, self.secrets) if text else text
            get_dispatcher().emit(self.record, self.plan, "post")

    def post_call_stream(self, stream: Any, headers: dict[str, str]) -> None:
        """The post-call event of a stream: ``original_response`` stands for the stream, as the
        reference puts the stream there (see ``StreamOriginalResponse``)."""
        self.response_headers = headers
        if self.record is not None:
            self.record.original_response = None
            get_dispatcher().emit(
                self.record, self.plan, "post", extra={"original_response": StreamOriginalResponse(stream)}
            )

    def parse(self, status: int, headers: dict[str, str], raw: bytes | Any) -> Any:
        assert self.wire is not None and self.endpoint is not None
        if type(raw) is not bytes:  # the mock transport answers with the response itself
            self.post_call(None, headers)
            return raw
        body: Any = _NOT_DECODED
        if self.record is None or not self.plan.reads_request:
            # nobody reads the text (post_call only keeps it for a listener): the bytes decoded
            # at once, which for valid UTF-8 is the same object as the text's (issue 18); any
            # other body takes the text's way below, with its replacement characters and errors
            self.response_headers = headers
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass
        if body is _NOT_DECODED:
            text = raw.decode(errors="replace")
            self.post_call(text, headers)
            body = self._decoded(status, text)
        if self.kind == "chat":
            api = self._openai_api()
            if api is not None:
                return self.wire.parse_api(api, body, self.endpoint)  # type: ignore[attr-defined]
            return self.wire.parse_chat(body, self.endpoint)
        return self.wire.parse_embedding(body, self.endpoint)

    def _decoded(self, status: int, text: str) -> Any:
        assert self.wire is not None
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as error:
            raise exc.APIConnectionError(
                f"{self.wire.name} answered {status} with a body that is not JSON: {text[:200]!r}",
                self.wire.name,
                self.model_name,
            ) from error

    def http_error(self, status: int, headers: dict[str, str], raw: bytes | Any) -> BaseException:
        assert self.wire is not None
        if isinstance(raw, BaseException):  # the error a mock_response asked for
            self.post_call(None, headers)
            return raw
        text = raw.decode(errors="replace")
        self.post_call(text, headers)
        return self.wire.error(status, headers, text, self.model_name)

    def transport_error(self, error: BaseException) -> exc.LmgateError:
        from ._http import map_transport_error

        return map_transport_error(error, self.provider_name, self.model_name)

    def retry_delay(self, attempt: int, error: BaseException) -> float | None:
        """Seconds to wait before retrying, or None to give up."""
        if attempt >= self.num_retries or not self.policy.is_retryable(error):
            return None
        return self.policy.delay_s(attempt, getattr(error, "retry_after", None))

    def _passthrough(self) -> Any:
        """The provider's ``messages_request`` when this call is a Messages API request to pass through."""
        if self.kind != "chat" or not self.control.get("anthropic_passthrough"):
            return None
        return getattr(self.wire, "messages_request", None)

    def _openai_api(self) -> str | None:
        """The OpenAI API (``responses``, ``completions``) this call passes through, if any."""
        spec = self.control.get("openai_passthrough")
        if self.kind != "chat" or not spec or spec["api"] not in getattr(self.wire, "passthrough_apis", ()):
            return None
        return str(spec["api"])

    def translator(self) -> Any:
        assert self.wire is not None and self.endpoint is not None
        api = self._openai_api()
        if api is not None:
            translator = self.wire.api_stream_translator(api, self.endpoint)  # type: ignore[attr-defined]
            translator.keep_events = True
            return translator
        translator = self.wire.stream_translator(self.endpoint)
        if self._passthrough() is not None:
            translator.keep_events = True
        elif self.control.get("_plain_chunks") and (self.record is None or not self.plan.by_event["stream"]):
            translator.plain_chunks = True  # no callback reads the chunks either
        return translator

    # ---- ending ----
    def succeed(self, response: Any) -> Any:
        """Stamp hidden params and cost on a complete response; emit the success event."""
        if self.finished:
            return response
        self.finished = True
        end = time.time()
        usage = response.get("usage") if isinstance(response, dict) else None
        cost = self._cost(response, usage)
        if self.cache_hit:  # served from the cache: nothing was paid
            cost = CostResult(0.0, None, cost.price_key, None)
        record = self.record
        if record is not None:
            call_id = record.call_id
        elif self.unrecorded is not None:  # heard only by the store, no record: its id now
            call_id = self.control.get("litellm_call_id") or new_call_id()
        else:
            call_id = None
        self._stamp(response, cost.cost, call_id)
        if record is None and call_id is not None:
            if self._succeed_unrecorded(response, usage, cost, end, call_id):
                return response
            record = self._late_record(call_id)
        if record is not None:
            record.usage = dict(usage) if usage else None
            record.cost, record.cost_breakdown, record.cost_reason, record.price_key = (
                cost.cost,
                cost.breakdown,
                cost.reason,
                cost.price_key,
            )
            failed_cost = self.control.get("failed_attempts_cost")
            if failed_cost is not None:
                record.cost_breakdown = {**(record.cost_breakdown or {}), "failed_attempts_cost": failed_cost}
            if self.stream and "usage_estimated" in self.control:  # an abandoned stream (streaming.py)
                record.cost_breakdown = {**(record.cost_breakdown or {}), "estimated_cost": cost.cost or 0.0}
            record.response_model = response.get("model") if isinstance(response, dict) else None
            record.hidden_params = response._hidden_params if hasattr(response, "_hidden_params") else {}
            if self.stream and record.stream_status is None:
                record.stream_status = "complete"
            record.finish_success(response, end)
            get_dispatcher().emit(record, self.plan, "success", response)
        return response

    def _succeed_unrecorded(self, response: Any, usage: Any, cost: Any, end: float, call_id: str) -> bool:
        """The success of a call that keeps no record: its facts line made from the call, as
        ``payload_facts.facts_record_of`` would make it from the record ``succeed`` would have
        finished, and handed to its sinks (the store). False, nothing taken, when a sink wants
        no line now or the line cannot be made: the call then falls back to a record."""
        plan = self.plan
        for t in plan.facts_sinks:
            if not t.obj.facts_wanted("success"):
                return False
        assert self.unrecorded is not None
        messages_snapshot, optional_params, user = self.unrecorded
        if isinstance(response, dict):
            response_json = encode_unheard_answer(response)  # also the proxy's answer body
            if response_json is None:
                return False
            response_id, response_model = response.get("id"), response.get("model")
        else:
            response_json = response_id = response_model = None
        control = self.control
        cost_breakdown = cost.breakdown
        failed_cost = control.get("failed_attempts_cost")
        if failed_cost is not None:
            cost_breakdown = {**(cost_breakdown or {}), "failed_attempts_cost": failed_cost}
        hidden = getattr(response, "_hidden_params", None)
        metadata = self.metadata
        if not usage:
            usage = None
        elif type(usage) is not Usage and type(usage) is not dict:
            usage = dict(usage)
        # else encoded as it is, no copy (the line is made now and keeps nothing): a Usage is a
        # dict that changes nothing of how one is read, so orjson writes what ``dict(usage)`` holds
        try:
            line = success_facts(
                call_id,
                control.get("litellm_trace_id") or _trace_id(metadata),
                self.call_type,
                self.start,
                end,
                self.model_name,
                self.provider_name,
                response_model,
                control.get("model_id"),
                control.get("model_group"),
                self.shown_api_base,
                cost.cost,
                cost.reason,
                cost.price_key,
                user,
                response_id,
                metadata,
                usage,
                cost_breakdown,
                optional_params,
                (hidden or {}).get("additional_headers") or {},
                messages_snapshot[0],
                response_json,
            )
        except Exception:  # noqa: BLE001 - anything odd: the record's path, whose payload says what it is
            return False
        if line is None:
            return False
        get_dispatcher().take_facts(plan, line)
        return True

    def fail(self, error: BaseException, partial: Any = None) -> BaseException:
        """Map an error, emit the failure event once, and return what the caller should see."""
        mapped: BaseException
        if isinstance(error, exc.LmgateError):
            mapped = error
            exc.mask_error_secrets(error, self.secrets)
            if error.llm_provider is None:
                error.llm_provider = self.provider_name
            if error.model is None:
                error.model = self.model_name
        elif _is_transport_error(error):
            mapped = self.transport_error(error)
            exc.mask_error_secrets(mapped, self.secrets)
            mapped.__cause__ = error
        else:
            mapped = error
        if self.finished:
            return mapped
        self.finished = True
        record = self.record
        if record is None and self.unrecorded is not None:  # a call that kept no record: one now
            record = self._late_record(self.control.get("litellm_call_id") or new_call_id())
        if record is not None:
            if partial is not None:
                usage = partial.get("usage")
                cost = self._cost(partial, usage)
                record.usage = dict(usage) if usage else None
                record.cost, record.cost_breakdown, record.cost_reason = (
                    cost.cost,
                    cost.breakdown,
                    cost.reason,
                )
                if "usage_estimated" in self.control:  # a broken stream's usage (streaming.py)
                    record.cost_breakdown = {
                        **(record.cost_breakdown or {}),
                        "estimated_cost": cost.cost or 0.0,
                    }
            else:
                record.cost_reason = "the call failed before any usage was reported"
            record.finish_failure(mapped, time.time(), partial)
            defer = self.control.get("defer_failure_event")
            if defer is not None and not self.stream_started:
                record.own_metadata()  # its event comes after the call returned
                defer.append(DeferredFailure(record, self.plan))
            else:
                get_dispatcher().emit(record, self.plan, "failure")
        return mapped

    def _cost(self, response: Any, usage: Any) -> Any:
        prices = self.custom_prices
        response_model = response.get("model") if isinstance(response, dict) else None
        # the provider's own price first where it differs (vertex_ai/gemini-2.0-flash), else the model's
        candidates = [
            self.control.get("base_model"),
            f"{self.provider_name}/{self.model_name}",
            self.model_name,
            response_model,
        ]
        return compute_cost(candidates, usage, prices)

    def _stamp(self, response: Any, cost: float | None, call_id: str | None) -> None:
        hidden = getattr(response, "_hidden_params", None)
        if hidden is None:
            return
        hidden["custom_llm_provider"] = self.provider_name
        hidden["model"] = self.model_name
        hidden["api_base"] = self.shown_api_base
        hidden["response_cost"] = cost
        headers = self.response_headers
        hidden["additional_headers"] = rate_limit_headers(headers, self.secrets) if headers else {}
        hidden["litellm_call_id"] = call_id
        hidden["model_id"] = self.control.get("model_id")
        hidden["cache_hit"] = self.cache_hit
        if self.custom_prices:
            hidden["custom_pricing"] = self.custom_prices

    # ---- streams ----
    def first_token(self) -> None:
        if self.record is not None and self.record.completion_start is None:
            self.record.completion_start = time.time()

    def chunk(self, chunk: Any) -> None:
        if self.record is not None and self.plan.by_event["stream"]:
            get_dispatcher().emit(self.record, self.plan, "stream", chunk)

    def end_stream(self, response: Any, status: str, error: BaseException | None) -> BaseException | None:
        if self.record is not None:
            self.record.stream_status = status
        if error is not None:
            return self.fail(error, partial=response)
        self.succeed(response)
        return None

    # ---- the cache seam: ``lmgate.caching`` is imported only when a cache is configured ----
    def cache_lookup(self) -> Any:
        from .caching.pipeline import lookup

        return lookup(self, self.settings.cache)

    async def acache_lookup(self) -> Any:
        from .caching.pipeline import alookup

        return await alookup(self, self.settings.cache)

    def cache_store(self, response: Any) -> None:
        # stores only what lookup decided to cache (the decision rides on the call)
        if response is not None and self.settings.cache is not None:
            from .caching.pipeline import store

            store(self, response)

    async def acache_store(self, response: Any) -> None:
        if response is not None and self.settings.cache is not None:
            from .caching.pipeline import astore

            await astore(self, response)

    def wrap_stream(self, chunks: Any, close: Any = None) -> CustomStreamWrapper:
        from .streaming import CustomStreamWrapper

        self.stream_started = True  # from here on the caller owns the call: failures are never deferred
        return CustomStreamWrapper(self, chunks, close, is_async=self.is_async)


def _litellm_params_of(
    c: dict[str, Any], call: Any, call_id: Any, trace_id: Any, metadata: Any
) -> dict[str, Any]:
    """A call's ``litellm_params``; ``call``: what it resolved (``Call`` or ``_Resolved``)."""
    # the reference's other keys (constants) are added when this is encoded: _callbacks/litellm_params.py
    out = {
        "litellm_call_id": call_id,
        "litellm_trace_id": trace_id,
        "litellm_metadata": c.get("litellm_metadata"),
        "max_retries": c.get("max_retries"),
        "acompletion": call.is_async and call.kind == "chat",
        "aembedding": call.is_async and call.kind == "embedding",
        # the base URL the call resolved to (masked), as the reference fills it
        "api_base": call.shown_api_base or mask_url(c.get("api_base") or c.get("base_url")),
        "api_key": mask_key(c.get("api_key")) if c.get("api_key") else None,
        "api_version": c.get("api_version"),
        # as the call resolved it (the reference's too), not only when the caller named it
        "custom_llm_provider": c.get("custom_llm_provider") or call.provider_name,
        "metadata": metadata,  # every key
        "model_info": c.get("model_info"),
        "timeout": c.get("timeout"),
        "num_retries": c.get("num_retries"),
        "drop_params": c.get("drop_params"),
        "stream": call.stream,
    }
    for key in ("input_cost_per_token", "output_cost_per_token", "base_model"):
        out[key] = c.get(key)  # always there, as in the reference
    for key in ("model_id", "model_group"):
        if c.get(key) is not None:
            out[key] = c[key]
    return out


class _LitellmParamsSource:
    """The record's ``litellm_params`` factory: built on first read, which for most calls never
    comes (the standard logging payload does not read it; a CustomLogger's kwargs do).

    While the call runs it reads the call (call -> record -> this -> call is a reference cycle);
    at the terminal event the record calls ``detach()``, which keeps what the build reads and lets
    go of the call, so the record and its summary are freed by reference counting (a cycle per
    call made the garbage collector run every few calls on the proxy's event loop). Detaching
    costs a few thousand instructions where building the dict at the end cost ~17,000
    (docs/store.md, "Cost"); the values are the ones a build then would see: the call is over."""

    __slots__ = ("call", "control", "resolved")

    def __init__(self, call: Call) -> None:
        self.call: Call | None = call
        self.control = call.control

    def __call__(self) -> dict[str, Any]:
        call = self.call
        if call is not None:
            return call._litellm_params()
        is_async, kind, shown_api_base, provider_name, stream, call_id, trace_id, metadata = self.resolved
        resolved = _Resolved(is_async, kind, shown_api_base, provider_name, stream)
        return _litellm_params_of(self.control, resolved, call_id, trace_id, metadata)

    def detach(self) -> None:
        call = self.call
        record = call.record if call is not None else None
        if call is not None and record is not None:
            # one tuple: an object of its own cost several times as much
            self.resolved = (
                call.is_async,
                call.kind,
                call.shown_api_base,
                call.provider_name,
                call.stream,
                record.call_id,
                record.trace_id,
                record.metadata,
            )
            self.call = None
            if "defer_failure_event" in self.control:  # its list holds this record: no cycle through it
                self.control = {k: v for k, v in self.control.items() if k != "defer_failure_event"}


class _Resolved(NamedTuple):
    """What ``litellm_params`` reads of a finished call, without the call."""

    is_async: bool
    kind: str
    shown_api_base: str | None
    provider_name: str
    stream: bool


class DeferredFailure:
    """A failure event held back (``defer_failure_event``): call it to emit the event.

    ``cost`` is what the failed attempt billed (0.0 when it reported no usage), so a Router can
    carry the cost of its failed attempts into the request's one terminal event.
    """

    __slots__ = ("record", "plan")

    def __init__(self, record: CallRecord, plan: Any) -> None:
        self.record = record
        self.plan = plan

    @property
    def cost(self) -> float:
        return float(self.record.cost or 0.0)

    def add_failed_attempts_cost(self, cost: float) -> None:
        """Name the cost of the attempts that failed before this one (the payload is built later)."""
        self.record.cost_breakdown = {**(self.record.cost_breakdown or {}), "failed_attempts_cost": cost}

    def __call__(self) -> None:
        get_dispatcher().emit(self.record, self.plan, "failure")


def _endpoint_masks(ep: Endpoint) -> tuple[tuple[str, ...], str | None, str | None]:
    """The endpoint's secrets (key, its own, what its api_base holds), api_base masked, key masked."""
    full_base = f"{ep.api_base}?{ep.base_query}" if ep.base_query else ep.api_base
    secrets = tuple(s for s in (ep.api_key, *ep.secrets, *url_secrets(full_base)) if s)
    return secrets, mask_url(full_base), mask_key(ep.api_key) if ep.api_key else None


def _is_static(provider: Provider, api_base: Any, api_key: Any, api_version: Any) -> bool:
    """True when the endpoint depends on nothing but these arguments: the base class's endpoint,
    configure and credentials (no per-call options), with api_base and key given (no environment
    read) and a version given or none read from the environment; strings, as a cache key."""
    cls = type(provider)
    return (
        type(api_base) is str
        and bool(api_base)
        and type(api_key) is str
        and (api_version is None or type(api_version) is str)
        and (bool(api_version) or not provider.version_env)
        and cls.endpoint is Provider.endpoint
        and cls.configure is Provider.configure
        and cls.credentials is Provider.credentials
    )


@functools.lru_cache(maxsize=512)
def _static_endpoint(
    provider: Provider, model_name: str, api_base: str, api_key: str, api_version: str | None
) -> tuple[Endpoint, tuple[str, ...], str | None, str | None] | None:
    """The endpoint, its secrets and masks when it depends on nothing but these arguments
    (``_is_static``), else None: decided once per deployment."""
    if not _is_static(provider, api_base, api_key, api_version):
        return None
    # raises (and nothing is cached) on bad input
    ep = provider.endpoint(model_name, api_base, api_key, api_version)
    return (ep, *_endpoint_masks(ep))


@functools.lru_cache(maxsize=512)
def _resolve(model: str, custom_llm_provider: str | None, has_api_base: bool) -> tuple[Provider, str]:
    """``providers.resolve``, once per model: the registry's providers never change while
    lmgate runs, and api_base only counts by being there (an error is raised, never kept)."""
    return _providers.resolve(model, custom_llm_provider, "api_base" if has_api_base else None)


_NOT_DECODED = object()  # parse: the body not decoded yet


# what a mock call's attempt sends when no callback listens (nobody would read the request)
class _UnheardMockRequest(HttpRequest):
    def body_bytes(self) -> bytes:
        return b""  # checked in http_request already


_UNHEARD_MOCK_REQUEST = _UnheardMockRequest("POST", "mock:", {}, {})


def _is_transport_error(error: BaseException) -> bool:
    module = type(error).__module__ or ""
    return module.startswith(("httpx", "httpcore", "h11")) or isinstance(
        error, (ConnectionError, TimeoutError)
    )


def new_call_id() -> str:
    """A UUID (version 4, RFC 4122 variant) unique to this call: a random prefix drawn once per
    process (again in a forked child) and a counter from a random start in the last group. Ids
    need uniqueness, not unpredictability (they are shown in response headers), and a call that
    someone listens to makes two (its id and its trace's): a fresh 128-bit draw and its
    formatting cost ~11,000 instructions each, this ~1,900: the counter's six bytes in hex (the
    same 12 digits as formatting it with ``012x``, which costs ~1,400 more)."""
    return _id_prefix + next(_id_counter).to_bytes(6, "big").hex()


def _new_id_source() -> None:
    global _id_prefix, _id_counter
    # drawn from os.urandom, not the module's ``random``: a program that seeds that (once in every
    # run of a script, before lmgate is imported) must not draw the same ids in each run (the
    # log store keeps one row per call id)
    draw = _random.SystemRandom().getrandbits
    h = f"{draw(64):016x}"
    # the version nibble (4) and the variant's two bits (10xx) as RFC 4122 has them
    _id_prefix = f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{8 | draw(2):x}{h[15]}{draw(8):02x}-"
    # 48 bits: a random start below 2**47 leaves 2**47 calls before the group could overflow
    _id_counter = itertools.count(draw(47))


_id_prefix = ""
_id_counter: Iterator[int] = itertools.count()
_new_id_source()
if hasattr(os, "register_at_fork"):  # a forked worker must not repeat its parent's ids
    os.register_at_fork(after_in_child=_new_id_source)


def _trace_id(metadata: dict[str, Any]) -> str:
    value = metadata.get("trace_id") or metadata.get("session_id") if metadata else None
    return str(value) if value else new_call_id()


def _validate_messages(messages: Any) -> list[dict[str, Any]]:
    if isinstance(messages, list):
        for message in messages:  # a loop, not all() over a generator: once a call (issue 18)
            if not isinstance(message, dict):
                break
        else:
            return messages
    raise exc.BadRequestError("messages must be a list of dicts like {'role': 'user', 'content': 'Hi'}")


def _embedding_input(input: Any) -> list[Any]:
    if isinstance(input, (str, bytes)) or (isinstance(input, list) and input and isinstance(input[0], int)):
        return [input]
    if not isinstance(input, list):
        raise exc.BadRequestError("input must be a string or a list of strings")
    return input


# ------------------------------------------------------------------ entry points
# Each builds a Call and hands it to a driver of the one attempt loop (``_attempt.py``).


def completion(
    model: str, messages: list[dict[str, Any]] | None = None, *, stream: bool = False, **params: Any
) -> Any:
    """Call a chat model; returns a ``ModelResponse``, or a stream of ``ModelResponseStream`` chunks."""
    return run_sync(Call("chat", model, messages, params, stream=stream, is_async=False))


async def acompletion(
    model: str, messages: list[dict[str, Any]] | None = None, *, stream: bool = False, **params: Any
) -> Any:
    """Async ``completion``; with ``stream=True`` returns an async iterator of chunks."""
    return await run_async(Call("chat", model, messages, params, stream=stream, is_async=True))


def chat_call(params: dict[str, Any]) -> Call:
    """The ``Call`` that ``acompletion(**params)`` makes, from ``params`` itself: for a caller that
    built the dict for this one call and gives it away (the Router's lone deployment), so the
    keyword unpacking, its copy of the dict and acompletion's coroutine are skipped (issue 18)."""
    model = params.pop("model")
    messages = params.pop("messages", None)
    stream = params.pop("stream", False)
    return Call("chat", model, messages, params, stream=stream, is_async=True)


def embedding(model: str, input: Any = None, **params: Any) -> EmbeddingResponse:
    """Embed a string or a list of strings; returns an ``EmbeddingResponse``."""
    return run_sync(_embedding_call(model, input, params, is_async=False))  # type: ignore[no-any-return]


async def aembedding(model: str, input: Any = None, **params: Any) -> EmbeddingResponse:
    """Async ``embedding``."""
    return await run_async(_embedding_call(model, input, params, is_async=True))  # type: ignore[no-any-return]


def _embedding_call(model: str, input: Any, params: dict[str, Any], *, is_async: bool) -> Call:
    call = Call("embedding", model, None, params, stream=False, is_async=is_async)
    try:
        call.payload = _embedding_input(input)
        if call.record is not None:
            call.record.messages = embedding_messages(call.payload)  # as the reference shows them
    except BaseException as error:
        raise call.fail(error) from None
    return call


__all__ = ["Call", "completion", "acompletion", "embedding", "aembedding", "ModelResponse"]
