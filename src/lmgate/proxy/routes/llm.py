"""The LLM routes: ``POST /chat/completions`` and ``POST /embeddings`` (each also under ``/v1``).

One request: the caller (authenticated by the middleware) → body (size-limited, JSON) →
checks → pre-call hooks → pick a deployment (failover across the group) while moderation
hooks run → post-call hooks → response. Streams go out as SSE (``sse.py``) ending in
``data: [DONE]``; a client that goes away mid-stream closes the lmgate stream, so the call
still ends in exactly one terminal event. Every failure, a refused key included, goes through
the failure hooks, the metrics and the request log. The in-flight count is the middleware's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..._callbacks.record import encoded_answer
from ...cost import compute_cost, custom_prices
from ..auth import check_model
from ..budgets import LIMITS, Reservation, cap_output
from ..client_body import CLIENT_BLOCKED, client_may_set
from ..errors import ProxyError, to_proxy_error
from ..hooks import (
    Answer,
    HookSet,
    UserAPIKeyAuth,
    current_hooks,
    run_moderation,
    run_post_failure,
    run_post_success,
    run_pre_call,
    wrap_stream,
)
from ..identity import identity, stamp
from ..key_logging import call_controls
from ..logs import log_failed_call, log_request
from ..middleware import CountedRoute, caller
from ..nesting import MAX_PARAM_DEPTH
from ..responses import EncodedJSON, error_response, json_response
from ..sse import SSEResponse
from ..state import ProxyState
from ..validation import check_request
from . import spellings

logger = logging.getLogger("lmgate.proxy")

# request keys the proxy reads itself; every other key goes to the provider, except those a
# client must not set (client_body.py: api_base, api_key, callbacks, litellm_params, aws_*, …):
# they would redirect the deployment's key, bypass the config or reach a provider as credentials
_OWN_KEYS = frozenset({"model", "messages", "input", "stream", "metadata"})
_CLIENT_BLOCKED = CLIENT_BLOCKED  # the listed names (docs/security.md); client_may_set has the rules
CLIENT_CLOSED = 499  # nginx's status for a client that closed the connection first
_PLAIN_CHUNKS = {"_plain_chunks": True}  # the proxy's own call argument (read, never changed)


def routes(state: ProxyState) -> list[Route]:
    """Both LLM routes, in every spelling, each counted in flight from its first byte in to
    its last byte out (streams and clients that leave included)."""
    flow = LLMRoutes(state)

    async def chat(request: Request) -> Response | SSEResponse:
        return await flow.handle(request, "chat")

    async def embeddings(request: Request) -> Response | SSEResponse:
        return await flow.handle(request, "embedding")

    return [
        CountedRoute(path, endpoint, state.metrics)
        for name, endpoint in (("/chat/completions", chat), ("/embeddings", embeddings))
        for path in spellings(name)
    ]


class LLMRoutes:
    """The request flow of the two LLM routes, over the proxy's shared state."""

    def __init__(self, state: ProxyState) -> None:
        self.state = state
        self.config = state.config
        self.router = state.router
        self.deployments = state.deployments
        self.metrics = state.metrics
        self.cache = state.cache
        self.known_models = state.known_models
        self.enforcer = state.enforcer  # a virtual key's limits and budgets (budgets.py), or None
        # end users of the key store (end_users.py), with virtual keys only
        self.end_users = None
        if state.key_store is not None:
            from ..end_users import end_users_of

            self.end_users = end_users_of(state.key_store)

    # ---- body ----
    async def read_json(self, request: Request) -> dict[str, Any]:
        return (await self.read_body(request))[0]

    async def read_body(self, request: Request) -> tuple[dict[str, Any], bool]:
        """The body's JSON object, and whether it is shallow for sure: fewer ``[`` and ``{`` in
        all than the nesting bound, so no walk of it can find it nested too deep."""
        limit = self.config.max_request_bytes
        declared = _content_length(request.scope["headers"])
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ProxyError(
                413,
                f"request body of {declared} bytes is over the limit of {limit} bytes "
                "(general_settings.max_request_size_mb)",
                code="request_too_large",
            )
        # the ASGI messages themselves (what Request.stream() reads, without its generator): one
        # message carries a small body whole
        receive = request.receive
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if (
                message["type"] != "http.request"
            ):  # http.disconnect: the client left (or the body timeout closed it)
                raise ProxyError(
                    CLIENT_CLOSED,
                    "the client closed the connection before sending the whole body",
                    code="client_closed_request",
                )
            part = message.get("body", b"")
            size += len(part)
            if size > limit:
                raise ProxyError(
                    413,
                    f"request body is over the limit of {limit} bytes (general_settings.max_request_size_mb)",
                    code="request_too_large",
                )
            if part:
                parts.append(part)
            if not message.get("more_body", False):
                break
        raw = parts[0] if len(parts) == 1 else b"".join(parts)
        if not raw:
            raise ProxyError(400, "request body is empty; send a JSON object")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise ProxyError(400, f"request body is not valid JSON: {error}", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ProxyError(400, f"request body must be a JSON object, got {type(data).__name__}")
        return data, raw.count(b"[") + raw.count(b"{") <= MAX_PARAM_DEPTH

    def group_for(self, data: dict[str, Any]) -> str:
        """The request's model group (a model_name of the config)."""
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise ProxyError(400, "'model' is required: a model name from GET /v1/models", param="model")
        if model not in self.router.groups:
            raise ProxyError(
                400,
                f"model {model!r} is not served here; known models: {self.known_models}",
                param="model",
                code="model_not_found",
            )
        return model

    # ---- the flow ----
    async def handle(self, request: Request, kind: str, fmt: Any = None) -> Response | SSEResponse:
        """One request; ``fmt`` (``formats.py``) is another API served over chat completions."""
        start = time.perf_counter()
        route = fmt.route if fmt else "chat" if kind == "chat" else "embeddings"
        metrics = self.metrics
        hooks = current_hooks()
        user: UserAPIKeyAuth | None = None
        data: dict[str, Any] | None = None
        model = "unknown"
        deployment = None
        reservation: Reservation | None = None
        failed_at = FailedAt()
        try:
            user = caller(request)
            data, shallow = await self.read_body(request)
            model = str(data.get("model") or "unknown")
            if fmt:
                fmt.check(data)
            else:
                check_request(data, kind, nesting_checked=shallow)
            if user.models or user.team_models:  # before any hook sees a request the key may not make
                check_model(user, model)
            end_user = _end_user(data, fmt)
            customer = None  # the end user's row, when the key store has one (its budget is checked)
            if isinstance(end_user, str) and end_user:  # the end user this request is made for
                user = user.for_request(end_user)
                if self.end_users is not None:  # virtual keys: a blocked end user is refused; its budget
                    customer = await self.end_users.check(end_user)
                    if customer is not None:
                        user.end_user_max_budget = customer.get("max_budget")
            if not hooks.empty:  # what a hook changes on the identity stays with this request
                user = user.for_hooks()
            # who is calling is the proxy's to say: the client's metadata keeps none of those names
            client = request.scope.get("client")  # what request.client.host reads, without its Address
            metadata = data.get("metadata")
            who = identity(user, client[0] if client else None, metadata, request.scope["path"])
            # what hooks see under requester_metadata is theirs to change (a plain copy); without
            # hooks nobody sees it, so the proxy's own copy (who's) is stamped at once (issue 18)
            data["metadata"] = stamp(
                metadata, who, requester=dict(metadata or {}) if not hooks.empty else None
            )
            call_type = fmt.call_type if fmt else "completion" if kind == "chat" else "embeddings"
            if hooks.pre_call:
                answered = await run_pre_call(hooks, user, self.cache, data, call_type)
                if isinstance(answered, Answer):
                    if kind != "chat":
                        raise ProxyError(400, answered.text)
                    if fmt:
                        data = fmt.to_chat(data)
                    return await self._answer(answered.text, data, who, start, request, user, fmt)
                data = answered
                if not fmt:
                    check_request(data, kind)
            extra = None
            asked = data  # the request as the hooks left it, on its own API (a budget's worst case)
            if fmt:  # the hooks saw the request as sent; the Router gets it as a chat request
                chat = fmt.to_chat(data)
                extra = fmt.extra(data, request.headers)
                data = chat
                check_request(data, "chat")
            group = self.group_for(data)
            # a hook may have changed the model (or the key's models): checked again unless
            # neither can have, the group being the model checked above
            if (user.models or user.team_models) and (group != model or not hooks.empty):
                check_model(user, group)
            model = group
            if self.enforcer is not None:  # rate limits and the budget's reservation, before any provider
                limits = request.scope.get(LIMITS)
                if limits is not None:
                    end_user = data.get("user")
                    held = self.enforcer.reserve_now(  # no coroutine when admitted in memory
                        limits,
                        data,
                        group,
                        kind,
                        end_user if isinstance(end_user, str) else None,
                        customer,
                        asked if fmt else None,
                        fmt.route if fmt else None,
                    )
                    if not held.admitted:  # a round trip, a window to start, or a refusal
                        await self.enforcer.admit(held)
                    reservation = held  # given back below if the call fails: only once taken
                    if reservation.cap:  # no max_tokens, a model of unknown maximum: send what was reserved
                        cap_output(data, extra, reservation.cap)
            if kind == "chat" and data.get("stream"):
                return await self._stream(
                    request, hooks, user, data, who, group, start, fmt, extra, failed_at, reservation
                )
            deployment, result, release = await self._call(
                hooks, user, data, who, group, kind, call_type, extra=extra, failed_at=failed_at
            )
            release()
            if reservation is not None:  # the exact cost, as the logs carry it
                hidden_now = getattr(result, "_hidden_params", None) or {}
                self.enforcer.settle_now(  # type: ignore[union-attr]
                    reservation,
                    hidden_now.get("response_cost"),
                    result.get("usage") if isinstance(result, dict) else getattr(result, "usage", None),
                    hidden_now.get("litellm_call_id"),
                )
            if hooks.post_success:
                result = await run_post_success(hooks, data, user, result)
            hidden = getattr(result, "_hidden_params", None) or {}
            headers = _response_headers(hidden, deployment.model_id)
            # a hook that may have changed the answer: translate it rather than pass the original on
            if fmt:
                body = orjson.dumps(fmt.respond(result, group, not hooks.post_success))
            else:  # the call's log record encoded this very answer already (the store on): those bytes
                body = (None if hooks.post_success else encoded_answer(result)) or orjson.dumps(result)
            usage = result.get("usage") if isinstance(result, dict) else None
            elapsed = time.perf_counter() - start
            # counted and logged once the answer is handed over (EncodedJSON's ``after``)
            after = functools.partial(
                _count_and_log, metrics, route, model, request.scope, deployment, user, elapsed, usage, hidden
            )
            return EncodedJSON(body, headers, after)
        except Exception as error:
            if reservation is not None and not reservation.settled:  # nothing billed: give it back
                self.enforcer.settle_now(reservation, None, None)  # type: ignore[union-attr]
            perr = await self._failed(hooks, data, error, user, failed_at.deployment_for(error))
            elapsed = time.perf_counter() - start
            metrics.observe(route, model, perr.status, elapsed)
            log_request(
                request.scope,
                perr.status,
                model,
                deployment or failed_at.deployment_for(error),
                user,
                elapsed,
                error=error,
            )
            return fmt.error_response(perr) if fmt else error_response(perr)

    async def _call(
        self,
        hooks: HookSet,
        user: UserAPIKeyAuth,
        data: dict[str, Any],
        who: dict[str, Any],
        group: str,
        kind: str,
        call_type: str,
        stream: bool = False,
        extra: dict[str, Any] | None = None,
        failed_at: FailedAt | None = None,
    ) -> tuple[Any, Any, Callable[[], None]]:
        """The request through the Router (``lmgate.Router``: deployment, failover, cooldowns,
        fallbacks, one terminal event); returns the config's deployment that answered, the
        answer, and the release to call when the answer is over."""
        kw: dict[str, Any] = {}  # a loop, not a comprehension (its function and frame): once a request
        for k, v in data.items():
            if k not in _OWN_KEYS and client_may_set(k):
                kw[k] = v
        # again: a pre-call hook may not change who is calling. Without hooks nothing changed the
        # stamped metadata since: stamping it again gives it back with who's requester_metadata
        metadata = data.get("metadata")
        if hooks.empty and type(metadata) is dict and "requester_metadata" in metadata:
            requester = who["requester_metadata"]
            # stamped with who's own copy already (``handle``): the dict itself, no second copy of it
            kw["metadata"] = (
                metadata
                if metadata["requester_metadata"] is requester
                else {**metadata, "requester_metadata": requester}
            )
        else:
            kw["metadata"] = stamp(metadata, who)
        if call_type not in ("completion", "embeddings"):  # another API over chat: its call type
            kw["_call_type"] = call_type
        if extra:  # the proxy's own call arguments (never the client's: those are filtered above)
            kw.update(extra)
        if not hooks.moderation:  # nothing changes the metadata while the call runs (a record may borrow it)
            kw["_metadata_unshared"] = True
        if user.metadata or user.team_metadata:  # a key's or team's own callbacks, message logging off
            controls = call_controls(user.metadata, user.team_metadata)
            if controls:
                kw.update(controls)
        if kind == "chat":
            kw["messages"] = data["messages"]
            kw["stream"] = stream
        else:
            kw["input"] = data["input"]
        tried: list[Any] = []
        if not hooks.moderation:  # routed in this coroutine: one coroutine fewer per request (issue 18)
            try:
                routed = await self.router.route_async(kind, group, kw, hold=True, on_attempt=tried.append)
            except Exception as error:
                self._note_failure(error, tried, failed_at)
                raise
            return self.deployments[routed.deployment.model_id], routed.result, routed.release

        async def route() -> tuple[Any, Any, Callable[[], None]]:  # beside the moderation hooks
            try:
                routed = await self.router.route_async(kind, group, kw, hold=True, on_attempt=tried.append)
            except Exception as error:
                self._note_failure(error, tried, failed_at)
                raise
            return self.deployments[routed.deployment.model_id], routed.result, routed.release

        task = asyncio.ensure_future(route())
        try:
            await run_moderation(hooks, data, user, call_type)
        except BaseException:
            await _discard(task)
            raise
        return await task

    def _note_failure(self, error: BaseException, tried: list[Any], failed_at: FailedAt | None) -> None:
        """The deployment the routed call failed at, for the server log's lines."""
        if tried and failed_at is not None:
            failed_at.note(error, self.deployments[tried[-1].model_id])

    async def _stream(
        self,
        request: Request,
        hooks: HookSet,
        user: UserAPIKeyAuth,
        data: dict[str, Any],
        who: dict[str, Any],
        group: str,
        start: float,
        fmt: Any = None,
        extra: dict[str, Any] | None = None,
        failed_at: FailedAt | None = None,
        reservation: Reservation | None = None,
    ) -> SSEResponse:
        call_type = fmt.call_type if fmt else "completion"
        if not (fmt or hooks.stream_iterator or hooks.stream_chunk):
            # the chunks are only framed as JSON and their usage read: plain ones will do (issue 18)
            extra = {**extra, "_plain_chunks": True} if extra else _PLAIN_CHUNKS
        deployment, stream, release = await self._call(
            hooks, user, data, who, group, "chat", call_type, stream=True, extra=extra, failed_at=failed_at
        )
        iterator: AsyncIterator[Any] = stream
        if hooks.stream_iterator or hooks.stream_chunk:
            iterator = wrap_stream(hooks, user, stream, data)
        metrics = self.metrics
        model = group
        prices_source = deployment

        enforcer = self.enforcer

        def on_end(status: int, usage: Any, error: BaseException | None) -> None:
            release()
            if not usage:  # ended early, or include_usage turned off: billed all the same
                usage = _ended_early_usage(stream)  # the estimate its log record carries (keys' hook)
            cost = _stream_cost(prices_source, usage) if usage else None
            if reservation is not None and enforcer is not None:  # a client that left is settled too
                hidden = getattr(stream, "_hidden_params", None) or {}
                enforcer.settle_soon(reservation, cost, usage, hidden.get("litellm_call_id"))
            elapsed = time.perf_counter() - start
            metrics.observe(fmt.route if fmt else "chat", model, status, elapsed, usage, cost)
            if error is not None:  # the provider broke the stream after its first byte
                log_failed_call(error, status, to_proxy_error(error).message, model, user, deployment)
            log_request(request.scope, status, model, deployment, user, elapsed, usage, cost, error)

        headers = [(b"x-litellm-model-id", deployment.model_id.encode())]
        rewrites = bool(hooks.stream_iterator or hooks.stream_chunk)  # then translate, as for post_success
        return SSEResponse(
            iterator, stream, on_end, headers, fmt.framing(group, not rewrites) if fmt else None
        )

    async def _answer(
        self,
        text: str,
        data: dict[str, Any],
        who: dict[str, Any],
        start: float,
        request: Request,
        user: UserAPIKeyAuth,
        fmt: Any = None,
    ) -> Response | SSEResponse:
        """A pre-call hook's string as the assistant's answer (streamed when asked).

        It goes through ``lmgate.acompletion`` as a mock answer, so every logger records the
        request like any other: no provider was called, so usage and cost are 0, and the
        metadata says ``answered_by_pre_call_hook``.
        """
        import lmgate

        metrics = self.metrics
        model = str(data.get("model") or "unknown")
        metadata = stamp(data.get("metadata"), who)
        metadata["answered_by_pre_call_hook"] = True
        answer = {
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
        stream = bool(data.get("stream"))
        end_user = data.get("user")  # the end user the request was made for, as a routed call logs it
        result = await lmgate.acompletion(
            model=model,
            messages=data.get("messages") or [],
            mock_response=answer,
            stream=stream,
            metadata=metadata,
            user=end_user if isinstance(end_user, str) and end_user else None,
            custom_llm_provider=None,
            input_cost_per_token=0.0,
            output_cost_per_token=0.0,
            **({"_call_type": fmt.call_type} if fmt else {}),
        )
        route = fmt.route if fmt else "chat"
        if not stream:
            metrics.observe(route, model, 200, time.perf_counter() - start)
            log_request(request.scope, 200, model, None, user, time.perf_counter() - start)
            return json_response(fmt.respond(result, model) if fmt else result)

        def on_end(status: int, usage: Any, error: BaseException | None) -> None:
            metrics.observe(route, model, status, time.perf_counter() - start)
            log_request(request.scope, status, model, None, user, time.perf_counter() - start, error=error)

        return SSEResponse(result, result, on_end, [], fmt.framing(model) if fmt else None)

    async def _failed(
        self,
        hooks: HookSet,
        data: dict[str, Any] | None,
        error: BaseException,
        user: UserAPIKeyAuth | None,
        deployment: Any = None,
    ) -> ProxyError:
        if user is None:  # failed before (or at) authentication: the hooks still hear of it, keyless
            user = UserAPIKeyAuth(None)
        failed = error  # what went wrong, whatever a failure hook answers instead
        if hooks.post_failure:
            try:
                replacement = await run_post_failure(hooks, data or {}, error, user)
            except Exception as hook_error:  # a failing failure hook must not hide the original error
                logger.error("post-call failure hooks raised %s", hook_error)
                replacement = None
            if replacement is not None:
                error = replacement
        perr = to_proxy_error(error)
        if not isinstance(failed, ProxyError):  # the proxy's own 4xx answers are in the request line
            model = data.get("model") if data else None
            detail = perr.message if failed is error else to_proxy_error(failed).message
            log_failed_call(
                failed, perr.status, detail, model if isinstance(model, str) else None, user, deployment
            )
        return perr


class FailedAt:
    """The deployment a routed call failed at, carried beside the exception for the server log's
    lines (never stuck on it: the error may be any exception, a client's or a hook's)."""

    __slots__ = ("_error", "_deployment")

    def __init__(self) -> None:
        self._error: BaseException | None = None
        self._deployment: Any = None

    def note(self, error: BaseException, deployment: Any) -> None:
        self._error, self._deployment = error, deployment

    def deployment_for(self, error: BaseException) -> Any:
        """The deployment ``error`` came from, when it is the error the Router raised; else None."""
        return self._deployment if error is self._error else None


def _count_and_log(
    metrics: Any,
    route: str,
    model: str,
    scope: Any,
    deployment: Any,
    user: Any,
    elapsed: float,
    usage: Any,
    hidden: dict[str, Any],
) -> None:
    """A forwarded 200's metrics and access line."""
    cost = hidden.get("response_cost")
    metrics.observe(route, model, 200, elapsed, usage, cost)
    log_request(scope, 200, model, deployment, user, elapsed, usage, cost)


def _end_user(data: dict[str, Any], fmt: Any) -> Any:
    """The end user a request is made for: ``user``, or on the Anthropic Messages API
    ``metadata.user_id`` (which its chat translation makes ``user``)."""
    if fmt is not None and fmt.route == "messages":
        metadata = data.get("metadata")
        return metadata.get("user_id") if isinstance(metadata, dict) else None
    return data.get("user")


def _content_length(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The first Content-Length header, as Starlette's ``Headers.get`` reads it."""
    for name, value in headers:
        if name == b"content-length":
            return value.decode("latin-1")
    return None


def _response_headers(hidden: dict[str, Any], model_id: str) -> dict[str, str]:
    headers = {"x-litellm-model-id": model_id}
    call_id = hidden.get("litellm_call_id")
    if call_id:
        headers["x-litellm-call-id"] = str(call_id)
    cost = hidden.get("response_cost")
    if cost is not None:
        headers["x-litellm-response-cost"] = str(cost)
    for name, value in (hidden.get("additional_headers") or {}).items():
        if value is None:
            continue
        text = str(value)
        if "\r" in text or "\n" in text:  # never let a hook split the response head
            continue
        headers[str(name).lower()] = text
    return headers


def _ended_early_usage(stream: Any) -> Any:
    """The usage of a stream that broke or whose client left before the provider reported one:
    the estimate its call made at its end (``streaming.estimate_usage``), so that a virtual
    key is charged what the log record says (docs/keys.md "Spend is exact")."""
    response = getattr(stream, "response", None)
    return response.get("usage") if response is not None else None


def _stream_cost(deployment: Any, usage: Any) -> float | None:
    candidates, prices = _stream_prices(deployment)
    return compute_cost(candidates, usage, prices).cost


# a deployment's price candidates and custom prices, worked out at its first stream (its
# litellm_params do not change while the proxy runs)
_STREAM_PRICES: dict[int, tuple[Any, list[str | None], dict[str, float] | None]] = {}


def _stream_prices(deployment: Any) -> tuple[list[str | None], dict[str, float] | None]:
    cached = _STREAM_PRICES.get(id(deployment))
    if cached is None or cached[0] is not deployment:
        params = deployment.litellm_params
        model = str(params.get("model"))
        candidates = [params.get("base_model"), model, model.split("/", 1)[-1]]
        cached = (deployment, candidates, custom_prices(dict(params)))
        if len(_STREAM_PRICES) > 4096:  # configs reloaded again and again: do not grow without bound
            _STREAM_PRICES.clear()
        _STREAM_PRICES[id(deployment)] = cached
    return cached[1], cached[2]


async def _discard(task: asyncio.Future[Any]) -> None:
    """Drop an LLM call that moderation rejected: cancel it, or close what it returned."""
    if not task.done():
        task.cancel()
    try:
        _, result, release = await task
    except BaseException:
        return
    release()
    close = getattr(result, "aclose", None)
    if close is not None:
        await close()
