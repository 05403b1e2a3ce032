"""The call pipeline, written once.

``Call`` holds every decision of one call: which provider and parameters, what to send,
when to retry, how to read the answer, what it cost, and which events the callbacks get.
The entry points (``completion``, ``acompletion``, ``embedding``, ``aembedding``) are thin
shells around it that differ only where they send and await.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import exceptions as exc
from . import providers as _providers
from ._callbacks.dispatch import EMPTY_PLAN, get_dispatcher
from ._callbacks.record import CallRecord
from ._callbacks.redact import mask_secrets, remember_secret
from ._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from .cost import PRICE_KEYS, CostResult, compute_cost, custom_prices
from .providers import mock as _mock
from .providers.base import Endpoint, HttpRequest, Provider, rate_limit_headers
from .types import EmbeddingResponse, ModelResponse

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
        "callbacks",
        "input_callback",
        "success_callback",
        "failure_callback",
        "caching",
        "cache",
        "drop_params",
        "extra_headers",
        "extra_body",
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
        "logger_fn",
        # a list: a failure before the call returns appends its event's emitter here instead of
        # emitting it (the proxy's router emits it only if no other deployment will be tried)
        "defer_failure_event",
    }
)
_CALL_LIST_NAMES = ("callbacks", "input_callback", "success_callback", "failure_callback")


def _settings() -> Any:
    import lmgate

    return lmgate


class Call:
    """One call's decisions; see the module docstring."""

    def __init__(self, kind: str, model: str, payload: Any, params: dict[str, Any], *, stream: bool, is_async: bool) -> None:
        settings = _settings()
        self.kind = kind  # "chat" | "embedding"
        self.call_type = ("a" if is_async else "") + ("completion" if kind == "chat" else "embedding")
        self.model = model
        self.payload = payload  # messages (chat) or the input list (embedding)
        self.stream = bool(stream)
        self.is_async = is_async
        self.start = time.time()
        control = {k: params.pop(k) for k in list(params) if k in CONTROL_PARAMS}
        if "extra_body" in control and control["extra_body"]:
            params.update(control["extra_body"])
        self.control = control
        self.params = params  # what goes to the provider
        self.metadata = control.get("metadata") or control.get("litellm_metadata") or {}
        self.mock = control.get("mock_response")
        self.provider: Provider | None = None
        self.provider_name = control.get("custom_llm_provider") or "unknown"
        self.model_name = model
        self.endpoint: Endpoint | None = None
        self.policy: RetryPolicy = control.get("retry_policy") or settings.retry_policy or DEFAULT_RETRY_POLICY
        retries = control.get("num_retries", control.get("max_retries"))
        self.num_retries = int(settings.num_retries or 0) if retries is None else int(retries)
        self.timeout = control.get("timeout", control.get("request_timeout", settings.request_timeout))
        self.response_headers: dict[str, str] = {}
        self.custom_prices = custom_prices(control) if _has_price_params(control) else None
        self.finished = False
        self.cache_hit = False
        self.stream_started = False
        call_lists = {k: control[k] for k in _CALL_LIST_NAMES if control.get(k)}
        global_lists = (settings.callbacks, settings.input_callback, settings.success_callback, settings.failure_callback)
        if not call_lists and not any(global_lists):
            self.plan = EMPTY_PLAN
        else:
            self.plan = get_dispatcher().plan(global_lists, call_lists)
        self.record: CallRecord | None = None
        if not self.plan.empty:
            self.record = CallRecord(
                call_type=self.call_type,
                model=model,
                provider=self.provider_name,
                messages=payload,
                optional_params=params,
                litellm_params=self._litellm_params,  # built lazily, off the caller's path
                metadata=self.metadata,
                stream=self.stream,
                user=params.get("user"),
                call_id=control.get("litellm_call_id") or new_call_id(),
                trace_id=control.get("litellm_trace_id") or _trace_id(self.metadata),
                start=self.start,
                is_async=is_async,
                redact_all=bool(settings.turn_off_message_logging or control.get("turn_off_message_logging")),
            )
            self.record.model_id = control.get("model_id")
            self.record.model_group = control.get("model_group")

    def _litellm_params(self) -> dict[str, Any]:
        from ._callbacks.redact import mask_key

        c = self.control
        out = {
            "acompletion": self.is_async and self.kind == "chat",
            "aembedding": self.is_async and self.kind == "embedding",
            "api_base": c.get("api_base") or c.get("base_url"),
            "api_key": mask_key(c.get("api_key")) if c.get("api_key") else None,
            "api_version": c.get("api_version"),
            "custom_llm_provider": c.get("custom_llm_provider"),
            "metadata": self.record.metadata if self.record is not None else self.metadata,  # every key
            "model_info": c.get("model_info"),
            "timeout": c.get("timeout"),
            "num_retries": c.get("num_retries"),
            "drop_params": c.get("drop_params"),
            "stream": self.stream,
        }
        for key in ("input_cost_per_token", "output_cost_per_token", "base_model", "model_id", "model_group"):
            if c.get(key) is not None:
                out[key] = c[key]
        return out

    # ---- preparation ----
    def prepare(self) -> None:
        """Resolve the provider and check the parameters; raises on bad input."""
        c = self.control
        api_base = c.get("api_base") or c.get("base_url")
        try:
            provider, model_name = _providers.resolve(self.model, c.get("custom_llm_provider"), api_base)
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
        if provider is None:
            return
        self._check_params(provider)
        if self.mock is not None:
            return
        if self.kind == "embedding" and not provider.supports_embeddings:
            raise exc.BadRequestError(f"{provider.name} does not offer embeddings", provider.name, model_name)
        self.endpoint = provider.endpoint(model_name, api_base, c.get("api_key"), c.get("api_version"))
        remember_secret(self.endpoint.api_key)
        if self.record is not None:
            self.record.api_base = self.endpoint.api_base
            from ._callbacks.redact import mask_key

            self.record.api_key_masked = mask_key(self.endpoint.api_key) if self.endpoint.api_key else None

    def _check_params(self, provider: Provider) -> None:
        if provider.supported_params is None or self.kind != "chat":
            return
        check = getattr(provider, "check_params", None)
        bad = check(self.params) if check else [k for k in self.params if k not in provider.supported_params]
        if not bad:
            return
        drop = self.control.get("drop_params")
        if drop is None:
            drop = _settings().drop_params
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
        assert self.provider is not None and self.endpoint is not None
        if self.kind == "chat":
            req = self.provider.chat_request(self.endpoint, self.payload, dict(self.params), self.stream)
        else:
            req = self.provider.embedding_request(self.endpoint, self.payload, dict(self.params))
        extra_headers = self.control.get("extra_headers")
        if extra_headers:
            req.headers.update(extra_headers)
        if self.record is not None:
            self.record.attempt = attempt
            self.record.set_request(req.json, req.headers, self.endpoint.api_base)
            get_dispatcher().emit(self.record, self.plan, "pre")
        return req

    def mock_pre_call(self) -> None:
        if self.record is not None:
            body = {"model": self.model_name, ("messages" if self.kind == "chat" else "input"): self.payload}
            body.update(self.params)
            self.record.set_request(body, {}, self.record.api_base)
            get_dispatcher().emit(self.record, self.plan, "pre")

    # ---- reading the answer ----
    def post_call(self, text: str | None, headers: dict[str, str] | None = None) -> None:
        if headers is not None:
            self.response_headers = headers
        if self.record is not None:
            # error bodies sometimes quote the key back: mask before any callback can see it
            self.record.original_response = mask_secrets(text) if text else text
            get_dispatcher().emit(self.record, self.plan, "post")

    def parse(self, status: int, headers: dict[str, str], text: str) -> Any:
        import orjson

        assert self.provider is not None and self.endpoint is not None
        self.post_call(text, headers)
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            raise exc.APIConnectionError(
                f"{self.provider.name} answered {status} with a body that is not JSON: {text[:200]!r}",
                self.provider.name,
                self.model_name,
            ) from error
        if self.kind == "chat":
            return self.provider.parse_chat(body, self.endpoint)
        return self.provider.parse_embedding(body, self.endpoint)

    def http_error(self, status: int, headers: dict[str, str], text: str) -> exc.LmgateError:
        assert self.provider is not None
        self.post_call(text, headers)
        return self.provider.error(status, headers, text, self.model_name)

    def transport_error(self, error: BaseException) -> exc.LmgateError:
        from ._http import map_transport_error

        return map_transport_error(error, self.provider_name, self.model_name)

    def retry_delay(self, attempt: int, error: exc.LmgateError) -> float | None:
        """Seconds to wait before retrying, or None to give up."""
        if attempt >= self.num_retries or not self.policy.is_retryable(error):
            return None
        return self.policy.delay_s(attempt, error.retry_after)

    def translator(self) -> Any:
        assert self.provider is not None and self.endpoint is not None
        return self.provider.stream_translator(self.endpoint)

    # ---- mock ----
    def mock_answer(self) -> Any:
        """The mock response (raising the mock error when one was asked for)."""
        self.mock_pre_call()
        error = _mock.mock_error(self.mock, self.provider_name, self.model_name)
        if error is not None:
            raise error
        response: Any
        if self.kind == "chat":
            response = _mock.mock_chat(
                self.model_name, self.mock, n=self.params.get("n") or 1, tool_calls=self.control.get("mock_tool_calls")
            )
        else:
            response = _mock.mock_embedding(self.model_name, self.payload, self.params.get("dimensions"))
        self.post_call(None)
        return response

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
        self._stamp(response, cost.cost)
        record = self.record
        if record is not None:
            record.usage = dict(usage) if usage else None
            record.cost, record.cost_breakdown, record.cost_reason, record.price_key = (
                cost.cost,
                cost.breakdown,
                cost.reason,
                cost.price_key,
            )
            record.response_model = response.get("model") if isinstance(response, dict) else None
            record.hidden_params = response._hidden_params if hasattr(response, "_hidden_params") else {}
            if self.stream and record.stream_status is None:
                record.stream_status = "complete"
            record.finish_success(response, end)
            get_dispatcher().emit(record, self.plan, "success", response)
        return response

    def fail(self, error: BaseException, partial: Any = None) -> BaseException:
        """Map an error, emit the failure event once, and return what the caller should see."""
        mapped: BaseException
        if isinstance(error, exc.LmgateError):
            mapped = error
            if error.llm_provider is None:
                error.llm_provider = self.provider_name
            if error.model is None:
                error.model = self.model_name
        elif _is_transport_error(error):
            mapped = self.transport_error(error)
            mapped.__cause__ = error
        else:
            mapped = error
        if self.finished:
            return mapped
        self.finished = True
        record = self.record
        if record is not None:
            if partial is not None:
                usage = partial.get("usage")
                cost = self._cost(partial, usage)
                record.usage = dict(usage) if usage else None
                record.cost, record.cost_breakdown, record.cost_reason = cost.cost, cost.breakdown, cost.reason
            else:
                record.cost_reason = "the call failed before any usage was reported"
            record.finish_failure(mapped, time.time(), partial)
            defer = self.control.get("defer_failure_event")
            if defer is not None and not self.stream_started:
                plan = self.plan
                defer.append(lambda: get_dispatcher().emit(record, plan, "failure"))
            else:
                get_dispatcher().emit(record, self.plan, "failure")
        return mapped

    def _cost(self, response: Any, usage: Any) -> Any:
        prices = self.custom_prices
        response_model = response.get("model") if isinstance(response, dict) else None
        candidates = [self.control.get("base_model"), self.model_name, response_model]
        return compute_cost(candidates, usage, prices)

    def _stamp(self, response: Any, cost: float | None) -> None:
        hidden = getattr(response, "_hidden_params", None)
        if hidden is None:
            return
        hidden["custom_llm_provider"] = self.provider_name
        hidden["model"] = self.model_name
        hidden["api_base"] = self.endpoint.api_base if self.endpoint else None
        hidden["response_cost"] = cost
        hidden["additional_headers"] = rate_limit_headers(self.response_headers)
        hidden["litellm_call_id"] = self.record.call_id if self.record else None
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

    def wrap_stream(self, chunks: Any, close: Any = None) -> CustomStreamWrapper:
        from .streaming import CustomStreamWrapper

        self.stream_started = True  # from here on the caller owns the call: failures are never deferred
        return CustomStreamWrapper(self, chunks, close, is_async=self.is_async)


def _has_price_params(control: dict[str, Any]) -> bool:
    return any(k in control for k in PRICE_KEYS)


def _is_transport_error(error: BaseException) -> bool:
    module = type(error).__module__ or ""
    return module.startswith(("httpx", "httpcore", "h11")) or isinstance(error, (ConnectionError, TimeoutError))


def new_call_id() -> str:
    """A random UUID4 string; ids need uniqueness, not cryptographic strength, so skip os.urandom."""
    h = f"{_random.getrandbits(128) & _UUID4_MASK | _UUID4_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID4_MASK = ~(0xF000 << 64 | 0xC000 << 48) & ((1 << 128) - 1)
_UUID4_BITS = 0x4000 << 64 | 0x8000 << 48


def _trace_id(metadata: dict[str, Any]) -> str:
    value = metadata.get("trace_id") or metadata.get("session_id") if metadata else None
    return str(value) if value else new_call_id()


def _validate_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise exc.BadRequestError("messages must be a list of dicts like {'role': 'user', 'content': 'Hi'}")
    return messages


def _embedding_input(input: Any) -> list[Any]:
    if isinstance(input, (str, bytes)) or (isinstance(input, list) and input and isinstance(input[0], int)):
        return [input]
    if not isinstance(input, list):
        raise exc.BadRequestError("input must be a string or a list of strings")
    return input


# ------------------------------------------------------------------ sync shell


def _sync_send(call: Call) -> Any:
    from httpx_sse import EventSource

    from . import _http

    client = _http.sync_client()
    attempt = 0
    while True:
        req = call.http_request(attempt)
        # built outside the try: a body that cannot be encoded is the caller's error, not a connection's
        request = client.build_request(
            # a parsed URL and no empty params: httpx would parse the URL string twice per request
            req.method, _http.url(req.url), headers=req.headers, content=req.body_bytes(), params=req.params or None,
            timeout=_http.timeout(call.timeout),
        )
        try:
            response = client.send(request, stream=True)
        except Exception as error:
            err = call.transport_error(error)
        else:
            if response.status_code < 400:
                if call.stream:
                    call.post_call(None, dict(response.headers))
                    translator = call.translator()
                    return call.wrap_stream(_sse_chunks(EventSource(response).iter_sse(), translator), response.close)
            try:
                raw: bytes | None = response.read()
            except Exception as error:  # the body broke off: a connection error, retried like one
                raw, err = None, call.transport_error(error)
            finally:
                response.close()
            if raw is not None:
                text = raw.decode(errors="replace")
                if response.status_code < 400:
                    return call.succeed(call.parse(response.status_code, dict(response.headers), text))
                err = call.http_error(response.status_code, dict(response.headers), text)
        delay = call.retry_delay(attempt, err)
        if delay is None:
            raise err
        call.policy.sleep(delay)
        attempt += 1


def _sse_chunks(events: Iterator[Any], translator: Any) -> Iterator[Any]:
    for sse in events:
        yield from translator.feed(sse.event, sse.data)
        if translator.done:
            for _ in events:  # read to the end so the connection goes back to the pool
                pass
            return


def _run_sync(call: Call, send: Any) -> Any:
    try:
        if call.kind == "chat":
            _validate_messages(call.payload)
        call.prepare()
        hit = _cache_lookup(call)
        if hit is not None:
            return _serve_cached(call, hit)
        if call.mock is not None:
            delay = call.control.get("mock_delay")
            if delay:
                time.sleep(float(delay))
            answer = call.mock_answer()
            if call.stream:
                return call.wrap_stream(iter(_mock.mock_chunks(answer)))
            return _store_and_succeed(call, answer)
        result = send(call)
        if not call.stream:
            _cache_store(call, result)
        return result
    except BaseException as error:
        mapped = call.fail(error)
        if mapped is error:
            raise
        raise mapped from error


def _store_and_succeed(call: Call, answer: Any) -> Any:
    response = call.succeed(answer)
    _cache_store(call, response)
    return response


def completion(model: str, messages: list[dict[str, Any]] | None = None, *, stream: bool = False, **params: Any) -> Any:
    """Call a chat model; returns a ``ModelResponse``, or a stream of ``ModelResponseStream`` chunks."""
    call = Call("chat", model, messages, params, stream=stream, is_async=False)
    return _run_sync(call, _sync_send)


def embedding(model: str, input: Any = None, **params: Any) -> EmbeddingResponse:
    """Embed a string or a list of strings; returns an ``EmbeddingResponse``."""
    call = Call("embedding", model, None, params, stream=False, is_async=False)
    try:
        call.payload = _embedding_input(input)
        if call.record is not None:
            call.record.messages = call.payload
    except BaseException as error:
        raise call.fail(error) from None
    return _run_sync(call, _sync_send)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ async shell


async def _async_send(call: Call) -> Any:
    from httpx_sse import EventSource

    from . import _http

    wire = _http.async_wire()  # aiohttp directly, unless the caller brought their own httpx client
    client = _http.async_client() if wire is None else None
    attempt = 0
    while True:
        req = call.http_request(attempt)
        # built outside the try: a body that cannot be encoded is the caller's error, not a connection's
        body = req.body_bytes()
        request = None if client is None else client.build_request(
            # a parsed URL and no empty params: httpx would parse the URL string twice per request
            req.method, _http.url(req.url), headers=req.headers, content=body, params=req.params or None,
            timeout=_http.timeout(call.timeout),
        )
        try:
            if wire is not None:
                response: Any = await wire.send(
                    req.method, req.url, req.headers, body, req.params, _http.timeout(call.timeout)
                )
            else:
                assert client is not None and request is not None
                response = await client.send(request, stream=True)
        except Exception as error:
            err = call.transport_error(error)
        else:
            if response.status_code < 400:
                if call.stream:
                    call.post_call(None, dict(response.headers))
                    translator = call.translator()
                    return call.wrap_stream(
                        _asse_chunks(EventSource(response).aiter_sse(), translator), response.aclose
                    )
            try:
                raw: bytes | None = await response.aread()
            except Exception as error:  # the body broke off: a connection error, retried like one
                raw, err = None, call.transport_error(error)
            finally:
                await response.aclose()
            if raw is not None:
                text = raw.decode(errors="replace")
                if response.status_code < 400:
                    return call.succeed(call.parse(response.status_code, dict(response.headers), text))
                err = call.http_error(response.status_code, dict(response.headers), text)
        delay = call.retry_delay(attempt, err)
        if delay is None:
            raise err
        await call.policy.async_sleep(delay)
        attempt += 1


async def _asse_chunks(events: Any, translator: Any) -> Any:
    async for sse in events:
        for chunk in translator.feed(sse.event, sse.data):
            yield chunk
        if translator.done:
            async for _ in events:  # read to the end so the connection goes back to the pool
                pass
            return


async def _run_async(call: Call, send: Any) -> Any:
    try:
        if call.kind == "chat":
            _validate_messages(call.payload)
        call.prepare()
        hit = await _acache_lookup(call)
        if hit is not None:
            return _serve_cached(call, hit)
        if call.mock is not None:
            delay = call.control.get("mock_delay")
            if delay:
                import asyncio

                await asyncio.sleep(float(delay))
            answer = call.mock_answer()
            if call.stream:
                return call.wrap_stream(_aiter(_mock.mock_chunks(answer)))
            response = call.succeed(answer)
            await _acache_store(call, response)
            return response
        result = await send(call)
        if not call.stream:
            await _acache_store(call, result)
        return result
    except BaseException as error:
        mapped = call.fail(error)
        if mapped is error:
            raise
        raise mapped from error


async def _aiter(items: list[Any]) -> Any:
    for item in items:
        yield item


async def acompletion(model: str, messages: list[dict[str, Any]] | None = None, *, stream: bool = False, **params: Any) -> Any:
    """Async ``completion``; with ``stream=True`` returns an async iterator of chunks."""
    call = Call("chat", model, messages, params, stream=stream, is_async=True)
    return await _run_async(call, _async_send)


async def aembedding(model: str, input: Any = None, **params: Any) -> EmbeddingResponse:
    """Async ``embedding``."""
    call = Call("embedding", model, None, params, stream=False, is_async=True)
    try:
        call.payload = _embedding_input(input)
        if call.record is not None:
            call.record.messages = call.payload
    except BaseException as error:
        raise call.fail(error) from None
    return await _run_async(call, _async_send)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ the cache seam
# The cache (``lmgate.caching``) is imported only when one is configured.


def _cache_lookup(call: Call) -> Any:
    cache = _settings().cache
    if cache is None:
        return None
    from .caching.pipeline import lookup

    return lookup(call, cache)


async def _acache_lookup(call: Call) -> Any:
    cache = _settings().cache
    if cache is None:
        return None
    from .caching.pipeline import alookup

    return await alookup(call, cache)


def _cache_store(call: Call, response: Any) -> None:
    # stores only what lookup decided to cache (the decision rides on the call)
    if response is not None and _settings().cache is not None:
        from .caching.pipeline import store

        store(call, response)


async def _acache_store(call: Call, response: Any) -> None:
    if response is not None and _settings().cache is not None:
        from .caching.pipeline import astore

        await astore(call, response)


def _serve_cached(call: Call, response: Any) -> Any:
    """A cache hit reaches every callback like a real call (chunks, success), marked ``cache_hit``.

    No pre/post-API-call events: no API call is made (the spec's cache sample counts
    "pre, post, success, success" for a miss followed by a hit).
    """
    record = call.record
    call.cache_hit = True
    if record is not None:  # only callbacks read the saved cost: skip pricing when none listen
        record.cache_hit = True
        record.saved_cache_cost = call._cost(response, response.get("usage")).cost or 0.0
    if call.stream and call.kind == "chat":
        chunks = _mock.mock_chunks(response)
        source = _aiter(chunks) if call.is_async else iter(chunks)
        stream = call.wrap_stream(source)
        stream._cache_hit = True
        return stream
    return call.succeed(response)


__all__ = ["Call", "completion", "acompletion", "embedding", "aembedding", "ModelResponse"]
