"""The ASGI app: OpenAI-compatible routes over ``lmgate.acompletion`` / ``lmgate.aembedding``.

Routes (each also under ``/v1``): ``POST /chat/completions``, ``POST /embeddings``,
``GET /models``, ``GET /health/liveliness``, ``GET /health/readiness``, ``GET /metrics``.

One chat request: auth → body (size-limited, JSON) → checks → pre-call hooks → pick a
deployment (failover across the group) while moderation hooks run → post-call hooks →
response. Streams go out as SSE ending in ``data: [DONE]``; a client that goes away
mid-stream closes the lmgate stream, so the call still ends in exactly one terminal event.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from .._call import CONTROL_PARAMS
from .config import ProxyConfig
from .errors import ProxyError, to_proxy_error
from .hooks import (
    Answer,
    HookCache,
    HookSet,
    UserAPIKeyAuth,
    current_hooks,
    hash_key,
    run_moderation,
    run_post_failure,
    run_post_success,
    run_pre_call,
    wrap_stream,
)
from .loading import Applied, apply_config
from .metrics import Metrics
from .router import Group, Router

logger = logging.getLogger("lmgate.proxy")

# request keys the proxy reads itself; every other key goes to the provider, except the
# library's control parameters (api_base, api_key, mock_response, callbacks, …), which a
# client must not set: they would redirect the deployment's key or bypass the config
_OWN_KEYS = frozenset({"model", "messages", "input", "stream", "metadata"})
_CLIENT_BLOCKED = (CONTROL_PARAMS | {"litellm_logging_obj", "proxy_server_request"}) - {"metadata", "timeout"}
_JSON = "application/json"
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
_DONE = b"data: [DONE]\n\n"


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, headers=headers, media_type=_JSON)


def error_response(error: ProxyError) -> Response:
    return Response(error.body(), status_code=error.status, headers=error.headers or None, media_type=_JSON)


class ProxyState:
    """Everything the routes share: config, router, metrics, the hooks' cache."""

    def __init__(self, config: ProxyConfig, applied: Applied | None) -> None:
        self.config = config
        self.applied = applied
        self.router = Router(config)
        self.metrics = Metrics()
        self.cache = HookCache()
        self.created = int(time.time())
        self._master = config.master_key.encode() if config.master_key else None
        self._master_user = UserAPIKeyAuth(hash_key(config.master_key), user_role="proxy_admin") if self._master else None
        self._hashes: dict[str, str | None] = {}
        self.known_models = ", ".join(config.model_names) or "(none configured)"

    # ---- auth ----
    def authenticate(self, request: Request) -> UserAPIKeyAuth:
        header = request.headers.get("authorization")
        key = None
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer":
                key = token.strip() or None
        if self._master is not None:
            if key is None:
                raise ProxyError(401, "missing API key: send 'Authorization: Bearer <key>'",
                                 type="authentication_error", code="invalid_api_key")
            if not hmac.compare_digest(key.encode(), self._master):
                raise ProxyError(401, "invalid API key", type="authentication_error", code="invalid_api_key")
            assert self._master_user is not None
            return self._master_user
        return UserAPIKeyAuth(self._hash(key))

    def _hash(self, key: str | None) -> str | None:
        if key is None:
            return None
        digest = self._hashes.get(key)
        if digest is None:
            if len(self._hashes) > 1024:  # bounded: callers without a master key may send anything
                self._hashes.clear()
            digest = self._hashes[key] = hash_key(key)
        return digest

    # ---- body ----
    async def read_json(self, request: Request) -> dict[str, Any]:
        limit = self.config.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ProxyError(413, f"request body of {declared} bytes is over the limit of {limit} bytes "
                             "(general_settings.max_request_size_mb)", code="request_too_large")
        parts: list[bytes] = []
        size = 0
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise ProxyError(413, f"request body is over the limit of {limit} bytes "
                                 "(general_settings.max_request_size_mb)", code="request_too_large")
            parts.append(part)
        raw = b"".join(parts)
        if not raw:
            raise ProxyError(400, "request body is empty; send a JSON object")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise ProxyError(400, f"request body is not valid JSON: {error}", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ProxyError(400, f"request body must be a JSON object, got {type(data).__name__}")
        return data

    def group_for(self, data: dict[str, Any]) -> Group:
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise ProxyError(400, "'model' is required: a model name from GET /v1/models", param="model")
        group = self.router.group(model)
        if group is None:
            raise ProxyError(400, f"model {model!r} is not served here; known models: {self.known_models}",
                             param="model", code="model_not_found")
        return group

    # ---- the LLM routes ----
    async def handle(self, request: Request, kind: str) -> Response | SSEResponse:
        start = time.perf_counter()
        route = "chat" if kind == "chat" else "embeddings"
        metrics = self.metrics
        metrics.in_flight += 1
        hooks = current_hooks()
        user: UserAPIKeyAuth | None = None
        data: dict[str, Any] | None = None
        model = "unknown"
        streaming = False
        try:
            user = self.authenticate(request)
            data = await self.read_json(request)
            model = str(data.get("model") or "unknown")
            _check_request(data, kind)
            md = data.get("metadata")
            metadata = dict(md) if md else {}
            metadata["user_api_key_hash"] = user.api_key
            data["metadata"] = metadata
            call_type = "completion" if kind == "chat" else "embeddings"
            if hooks.pre_call:
                answered = await run_pre_call(hooks, user, self.cache, data, call_type)
                if isinstance(answered, Answer):
                    if kind != "chat":
                        raise ProxyError(400, answered.text)
                    response = await self._answer(answered.text, data, start)
                    streaming = isinstance(response, SSEResponse)
                    return response
                data = answered
                _check_request(data, kind)
            group = self.group_for(data)
            model = group.name
            if kind == "chat" and data.get("stream"):
                response = await self._stream(request, hooks, user, data, group, start)
                streaming = True
                return response
            deployment, result, release = await self._call(hooks, user, data, group, kind, call_type)
            release()
            if hooks.post_success:
                result = await run_post_success(hooks, data, user, result)
            hidden = getattr(result, "_hidden_params", None) or {}
            headers = _response_headers(hidden, deployment.model_id)
            body = orjson.dumps(result)
            metrics.observe(route, model, 200, time.perf_counter() - start, result.get("usage") if isinstance(result, dict) else None,
                            hidden.get("response_cost"))
            return Response(body, status_code=200, headers=headers, media_type=_JSON)
        except Exception as error:
            perr = await self._failed(hooks, data, error, user)
            metrics.observe(route, model, perr.status, time.perf_counter() - start)
            return error_response(perr)
        finally:
            if not streaming:
                metrics.in_flight -= 1

    async def _call(self, hooks: HookSet, user: UserAPIKeyAuth, data: dict[str, Any], group: Group, kind: str,
                    call_type: str, stream: bool = False) -> tuple[Any, Any, Callable[[], None]]:
        import lmgate

        client = {k: v for k, v in data.items() if k not in _OWN_KEYS and k not in _CLIENT_BLOCKED}
        metadata = data.get("metadata")
        metadata = dict(metadata) if isinstance(metadata, dict) else {}
        metadata["user_api_key_hash"] = user.api_key  # a hook may not spoof the caller
        many = len(group.deployments) > 1

        async def attempt(deployment: Any, last: bool) -> Any:
            kw = dict(deployment.call_params)
            kw.update(client)
            kw["metadata"] = metadata
            kw["model_id"] = deployment.model_id
            kw["model_group"] = group.name
            deferred: list[Callable[[], None]] = []
            if many:
                kw["num_retries"] = 0  # the router retries across the group
                if not last:  # a failure here may be retried elsewhere: log it only if it is not
                    kw["defer_failure_event"] = deferred
            try:
                if kind == "chat":
                    return await lmgate.acompletion(messages=data["messages"], stream=stream, **kw)
                return await lmgate.aembedding(input=data["input"], **kw)
            except Exception as error:
                if deferred:
                    error.__dict__["_lmgate_emit_failure"] = deferred[0]
                raise

        library_retries = int(lmgate.num_retries or 0)
        if not hooks.moderation:
            return await self.router.call(group, attempt, library_retries)
        task = asyncio.ensure_future(self.router.call(group, attempt, library_retries))
        try:
            await run_moderation(hooks, data, user, call_type)
        except BaseException:
            await _discard(task)
            raise
        return await task

    async def _stream(self, request: Request, hooks: HookSet, user: UserAPIKeyAuth, data: dict[str, Any],
                      group: Group, start: float) -> SSEResponse:
        deployment, stream, release = await self._call(hooks, user, data, group, "chat", "completion", stream=True)
        iterator: AsyncIterator[Any] = stream
        if hooks.stream_iterator or hooks.stream_chunk:
            iterator = wrap_stream(hooks, user, stream, data)
        metrics = self.metrics
        model = group.name
        prices_source = deployment

        def on_end(status: int, usage: Any) -> None:
            release()
            metrics.in_flight -= 1
            cost = _stream_cost(prices_source, usage) if usage else None
            metrics.observe("chat", model, status, time.perf_counter() - start, usage, cost)

        headers = [(b"x-litellm-model-id", deployment.model_id.encode())]
        return SSEResponse(iterator, stream, on_end, headers)

    async def _answer(self, text: str, data: dict[str, Any], start: float) -> Response | SSEResponse:
        """A pre-call hook's string as the assistant's answer (streamed when asked).

        It goes through ``lmgate.acompletion`` as a mock answer, so every logger records the
        request like any other: no provider was called, so usage and cost are 0, and the
        metadata says ``answered_by_pre_call_hook``.
        """
        import lmgate

        metrics = self.metrics
        model = str(data.get("model") or "unknown")
        metadata = dict(data.get("metadata") or {})
        metadata["answered_by_pre_call_hook"] = True
        answer = {
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
        stream = bool(data.get("stream"))
        result = await lmgate.acompletion(
            model=model,
            messages=data.get("messages") or [],
            mock_response=answer,
            stream=stream,
            metadata=metadata,
            custom_llm_provider=None,
            input_cost_per_token=0.0,
            output_cost_per_token=0.0,
        )
        if not stream:
            metrics.observe("chat", model, 200, time.perf_counter() - start)
            return json_response(result)

        def on_end(status: int, usage: Any) -> None:
            metrics.in_flight -= 1
            metrics.observe("chat", model, status, time.perf_counter() - start)

        return SSEResponse(result, result, on_end, [])

    async def _failed(self, hooks: HookSet, data: dict[str, Any] | None, error: BaseException, user: UserAPIKeyAuth | None) -> ProxyError:
        if user is None:  # failed before (or at) authentication: the hooks still hear of it, keyless
            user = UserAPIKeyAuth(None)
        if hooks.post_failure:
            try:
                replacement = await run_post_failure(hooks, data or {}, error, user)
            except Exception as hook_error:  # a failing failure hook must not hide the original error
                logger.error("post-call failure hooks raised %s", hook_error)
                replacement = None
            if replacement is not None:
                error = replacement
        perr = to_proxy_error(error)
        if perr.status >= 500 and not isinstance(error, ProxyError):
            from .. import exceptions as exc

            if not isinstance(error, exc.LmgateError):
                logger.error("request failed: %s", perr.message, exc_info=error)
        return perr

    # ---- the other routes ----
    def models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": self.created, "owned_by": "lmgate"}
                     for name in self.config.model_names],
        }

    def loggers(self) -> list[tuple[str, Any]]:
        """Every registered object with a ``stats()`` method, with its name."""
        import lmgate

        seen: set[int] = set()
        out: list[tuple[str, Any]] = []
        for lst in (lmgate.callbacks, lmgate.success_callback, lmgate.failure_callback):
            for obj in lst:
                if isinstance(obj, str):
                    from .._callbacks.registry import resolve_callback

                    try:
                        obj = resolve_callback(obj)
                    except Exception:
                        continue
                if id(obj) in seen or not callable(getattr(obj, "stats", None)):
                    continue
                seen.add(id(obj))
                name = getattr(obj, "callback_name", None) or getattr(obj, "name", None) or type(obj).__name__
                out.append((str(name), obj))
        return out

    def logger_stats(self) -> list[tuple[str, dict[str, Any], str | None]]:
        out: list[tuple[str, dict[str, Any], str | None]] = []
        for name, obj in self.loggers():
            try:
                stats = obj.stats()
                out.append((name, dict(stats) if isinstance(stats, dict) else {}, None))
            except Exception as error:
                out.append((name, {}, f"{type(error).__name__}: {error}"))
        return out

    def readiness(self) -> dict[str, Any]:
        import lmgate

        entries = []
        healthy_all = True
        for name, stats, error in self.logger_stats():
            healthy = error is None and bool(stats.get("healthy", True))
            healthy_all = healthy_all and healthy
            entry: dict[str, Any] = {"name": name, "healthy": healthy, "stats": stats}
            if error:
                entry["error"] = error
            entries.append(entry)
        dispatcher = lmgate.callback_stats()
        return {
            "status": "healthy" if healthy_all else "degraded",
            "version": __version__,
            "models": list(self.config.model_names),
            "loggers": entries,
            "callback_deliveries_pending": dispatcher.get("pending", 0),
            "callback_errors": dispatcher.get("errors_total", 0),
        }

    def render_metrics(self) -> str:
        import lmgate

        stats = [(name, s) for name, s, _ in self.logger_stats()]
        return self.metrics.render(stats, lmgate.callback_stats())


def _check_request(data: dict[str, Any], kind: str) -> None:
    if kind == "chat":
        messages = data.get("messages")
        if messages is None:
            raise ProxyError(400, "'messages' is required: a list like [{'role': 'user', 'content': 'Hi'}]", param="messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) and m.get("role") for m in messages):
            raise ProxyError(400, "'messages' must be a non-empty list of objects with a 'role'", param="messages")
        if "stream" in data and not isinstance(data["stream"], bool) and data["stream"] is not None:
            raise ProxyError(400, "'stream' must be true or false", param="stream")
    else:
        value = data.get("input")
        if value is None:
            raise ProxyError(400, "'input' is required: a string or a list of strings", param="input")
        if not isinstance(value, (str, list)) or (isinstance(value, list) and not value):
            raise ProxyError(400, "'input' must be a string or a non-empty list", param="input")
    md = data.get("metadata")
    if md is not None and not isinstance(md, dict):
        raise ProxyError(400, "'metadata' must be an object", param="metadata")


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


def _stream_cost(deployment: Any, usage: Any) -> float | None:
    from ..cost import compute_cost, custom_prices

    params = deployment.litellm_params
    model = str(params.get("model"))
    candidates = [params.get("base_model"), model, model.split("/", 1)[-1]]
    return compute_cost(candidates, usage, custom_prices(dict(params))).cost


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


def _sse(chunk: Any) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode() if chunk.startswith("data:") else b"data: " + chunk.encode() + b"\n\n"
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


class SSEResponse:
    """A server-sent events response that notices the client leaving.

    The chunks are pumped in one task while another waits for ``http.disconnect``; when the
    client goes first, the lmgate stream is closed (its call ends as ``abandoned``, one
    terminal event) and the pump is stopped. ``on_end(status, usage)`` runs exactly once.
    """

    def __init__(self, iterator: AsyncIterator[Any], source: Any, on_end: Callable[[int, Any], None],
                 headers: list[tuple[bytes, bytes]]) -> None:
        self.iterator = iterator
        self.source = source
        self.on_end = on_end
        self.headers = _SSE_HEADERS + headers
        self.usage: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        status = 200
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            pump = asyncio.ensure_future(self._pump(send))
            listener = asyncio.ensure_future(_wait_disconnect(receive))
            done, _ = await asyncio.wait((pump, listener), return_when=asyncio.FIRST_COMPLETED)
            if pump in done:
                listener.cancel()
                status = pump.result()
            else:
                status = 499  # the client closed the connection
                await self._close_source()
                pump.cancel()
                try:
                    await pump
                except BaseException:  # noqa: B036 - the pump was cancelled on purpose
                    pass
        except OSError:
            status = 499
        finally:
            await self._close_source()
            self.on_end(status, self.usage)

    async def _close_source(self) -> None:
        source, self.source = self.source, None
        if source is not None:
            await source.aclose()

    async def _pump(self, send: Any) -> int:
        iterator = self.iterator
        try:
            async for chunk in iterator:
                usage = chunk.get("usage") if isinstance(chunk, dict) else None
                if usage:
                    self.usage = usage
                await send({"type": "http.response.body", "body": _sse(chunk), "more_body": True})
            await send({"type": "http.response.body", "body": _DONE, "more_body": False})
            return 200
        except OSError:
            return 499
        except Exception as error:
            perr = to_proxy_error(error)
            body = b"data: " + perr.body() + b"\n\n"
            try:
                await send({"type": "http.response.body", "body": body, "more_body": False})
            except OSError:
                return 499
            return perr.status
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None and iterator is not self.source:
                try:
                    await close()
                except Exception:
                    pass


async def _wait_disconnect(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


# ---------------------------------------------------------------------- the app


def create_app(config: ProxyConfig, *, apply: bool = True) -> Starlette:
    """The proxy app for ``config``; ``apply`` sets lmgate's settings from it (callbacks, cache, …)."""
    applied = apply_config(config) if apply else None
    state = ProxyState(config, applied)

    async def chat(request: Request) -> Response | SSEResponse:
        return await state.handle(request, "chat")

    async def embeddings(request: Request) -> Response | SSEResponse:
        return await state.handle(request, "embedding")

    def guarded(build: Callable[[], Response]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                state.authenticate(request)
            except ProxyError as error:
                return error_response(error)
            return build()

        return endpoint

    async def liveliness(request: Request) -> Response:
        return json_response("I'm alive!")

    models = guarded(lambda: json_response(state.models()))
    readiness = guarded(lambda: json_response(state.readiness()))
    metrics = guarded(lambda: Response(state.render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8"))

    routes = []
    for prefix in ("", "/v1"):
        routes += [
            Route(f"{prefix}/chat/completions", chat, methods=["POST"]),
            Route(f"{prefix}/embeddings", embeddings, methods=["POST"]),
            Route(f"{prefix}/models", models, methods=["GET"]),
            Route(f"{prefix}/health/liveliness", liveliness, methods=["GET"]),
            Route(f"{prefix}/health/readiness", readiness, methods=["GET"]),
            Route(f"{prefix}/metrics", metrics, methods=["GET"]),
        ]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        text = "method not allowed" if status == 405 else f"no route {request.url.path}"
        return error_response(ProxyError(status, f"{text}; see GET /v1/models and docs/proxy.md"))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # import the HTTP client now, so the first request does not pay for it
        import httpx  # noqa: F401
        import httpx_sse  # noqa: F401

        from .. import _aiohttp_transport  # noqa: F401 - aiohttp, the async wire: ~0.4 s cold

        yield
        await shutdown(config)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found})
    app.state.proxy = state
    return app


async def shutdown(config: ProxyConfig) -> bool:
    """After the last request: deliver every pending record; batch loggers spool what they
    cannot send within ``flush_timeout_s`` (the next process sends it). True when all was sent."""
    import sys

    import lmgate

    started = time.monotonic()
    try:
        drained = await lmgate.aflush_callbacks(config.flush_timeout_s)
    except Exception as error:
        logger.error("flushing callbacks at shutdown raised %s", error)
        drained = False
    batch = sys.modules.get("lmgate.loggers.batch")
    if batch is not None:
        remaining = max(0.0, config.flush_timeout_s - (time.monotonic() - started))
        await asyncio.to_thread(batch.close_all, remaining)
    pending = lmgate.callback_stats().get("pending", 0)
    if drained:
        logger.info("callbacks flushed in %.2fs", time.monotonic() - started)
    else:
        logger.warning("%d callback deliveries still pending after %.1fs", pending, config.flush_timeout_s)
    return drained


__all__ = ["ProxyState", "SSEResponse", "create_app", "shutdown"]
