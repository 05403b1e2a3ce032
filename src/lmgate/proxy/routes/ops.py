"""The operational routes (each also under ``/v1``): ``GET /models``, ``GET /models/{id}``,
``GET /health/liveliness``, ``GET /health/readiness`` and ``GET /metrics``.

The two health routes answer without a key (probes carry none; ``PUBLIC`` names them for
the authentication middleware); readiness shows its details to a request whose key is good.
Probes and scrapes come every few seconds: their request-log lines are DEBUG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ... import __version__
from ..._secrets import scrub
from ..auth import UserAPIKeyAuth, may_use
from ..errors import ProxyError
from ..logs import log_request
from ..middleware import caller, caller_if_presented
from ..responses import error_response, json_response
from ..state import ProxyState
from . import spellings

#: the paths that answer without a key (a key they do carry is still checked)
PUBLIC = frozenset(spellings("/health/liveliness") + spellings("/health/readiness"))


def routes(state: ProxyState) -> list[Route]:
    ops = OpsRoutes(state)

    def guarded(build: Callable[[UserAPIKeyAuth], Response]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            try:
                user = caller(request)
            except ProxyError as error:
                log_request(
                    request.scope, error.status, None, None, None, time.perf_counter() - start, error=error
                )
                return error_response(error)
            response = build(user)
            log_request(
                request.scope,
                response.status_code,
                None,
                None,
                user,
                time.perf_counter() - start,
                level=logging.DEBUG,
            )
            return response

        return endpoint

    async def liveliness(request: Request) -> Response:
        log_request(request.scope, 200, None, None, None, 0.0, level=logging.DEBUG)
        return json_response("I'm alive!")

    models = guarded(lambda user: json_response(ops.models(user)))

    async def model(request: Request) -> Response:
        try:
            user = caller(request)
            # both spellings: "/v1/models/" is the list, "/v1/models/fast/" the model
            model_id = request.path_params["model_id"].removesuffix("/")
            return json_response(ops.model(model_id, user) if model_id else ops.models(user))
        except ProxyError as error:
            return error_response(error)

    async def readiness(request: Request) -> Response:
        # probes carry no key: they get the short view; a request with a key has it checked
        # (a wrong one is a 401, as on every route) and gets the details
        try:
            detail = caller_if_presented(request) is not None
        except ProxyError as error:
            return error_response(error)
        status, body = ops.readiness(detail)
        return json_response(body, status)

    metrics = guarded(
        lambda user: Response(ops.render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")
    )

    out = []
    for name, endpoint in (
        ("/models", models),
        ("/health/liveliness", liveliness),
        ("/health/readiness", readiness),
        ("/metrics", metrics),
    ):
        out += [Route(path, endpoint, methods=["GET"]) for path in spellings(name)]
    # after "/models/": that spelling is the list, not a model named ""
    out += [Route(path, model, methods=["GET"]) for path in spellings("/models/{model_id:path}", slash=False)]
    return out


class OpsRoutes:
    """What the operational routes answer, from the proxy's shared state."""

    def __init__(self, state: ProxyState) -> None:
        self.config = state.config
        self.router = state.router
        self.metrics = state.metrics
        self.created = state.created
        self.known_models = state.known_models
        self.extra_loggers = state.extra_loggers  # the proxy's own (keys' alert webhook)

    def models(self, user: UserAPIKeyAuth | None = None) -> dict[str, Any]:
        """The model names; for a virtual key, those it and its team may call."""
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": self.created, "owned_by": "lmgate"}
                for name in self.config.model_names
                if user is None or may_use(user, name)
            ],
        }

    def loggers(self) -> list[tuple[str, Any]]:
        """Every registered object with a ``stats()`` method, with its name."""
        import lmgate

        seen: set[int] = set()
        out: list[tuple[str, Any]] = []
        for lst in (lmgate.callbacks, lmgate.success_callback, lmgate.failure_callback):
            for obj in lst:
                if isinstance(obj, str):
                    from ..._callbacks.registry import resolve_callback

                    try:
                        obj = resolve_callback(obj)
                    except Exception:
                        continue
                if id(obj) in seen or not callable(getattr(obj, "stats", None)):
                    continue
                seen.add(id(obj))
                name = getattr(obj, "callback_name", None) or getattr(obj, "name", None) or type(obj).__name__
                out.append((str(name), obj))
        return out + self.extra_loggers

    def logger_stats(self) -> list[tuple[str, dict[str, Any], str | None]]:
        out: list[tuple[str, dict[str, Any], str | None]] = []
        for name, obj in self.loggers():
            try:
                stats = obj.stats()
                out.append((name, dict(stats) if isinstance(stats, dict) else {}, None))
            except Exception as error:
                out.append((name, {}, f"{type(error).__name__}: {scrub(str(error))}"))
        return out

    def readiness(self, detail: bool) -> tuple[int, dict[str, Any]]:
        """The status code and body of ``/health/readiness``.

        Each part is healthy or unhealthy: ``models`` (at least one is configured: without one
        no request can be answered, so 503), ``loggers`` (every logger's ``stats()`` answers and
        does not say ``"healthy": false``) and ``cache`` (when one is configured). A failing
        logger or cache degrades the proxy but it still answers requests, so 200: a log sink
        that every replica shares must not take them all out of the load balancer at once.
        Without ``detail`` the body holds the status and the parts' health, nothing else
        (probes carry no key, so it may be seen by anyone who reaches the port).
        """
        import lmgate

        entries = []
        loggers_healthy = True
        for name, stats, error in self.logger_stats():
            if error is None:
                stats, error = _json_safe(stats)
            healthy = error is None and bool(stats.get("healthy", True))
            loggers_healthy = loggers_healthy and healthy
            entry: dict[str, Any] = {"name": name, "healthy": healthy, "stats": stats}
            if error:
                entry["error"] = error
            entries.append(entry)
        parts = {"models": bool(self.config.model_names)}
        if entries:
            parts["loggers"] = loggers_healthy
        cache = lmgate.cache
        if cache is not None:
            parts["cache"] = _cache_healthy(cache)
        if not parts["models"]:
            status, code = "unhealthy", 503
        elif all(parts.values()):
            status, code = "healthy", 200
        else:
            status, code = "degraded", 200
        body: dict[str, Any] = {
            "status": status,
            "parts": {name: "healthy" if ok else "unhealthy" for name, ok in parts.items()},
        }
        if detail:
            dispatcher = lmgate.callback_stats()
            body.update(
                {
                    "version": __version__,
                    "models": list(self.config.model_names),
                    "loggers": entries,
                    "callback_deliveries_pending": dispatcher.get("pending", 0),
                    "callback_errors": dispatcher.get("errors_total", 0),
                }
            )
        return code, body

    def model(self, model_id: str, user: UserAPIKeyAuth | None = None) -> dict[str, Any]:
        """One model as ``GET /v1/models/{id}`` shows it (the openai SDK's ``models.retrieve``);
        a model the caller's key may not call is answered as unknown."""
        if model_id not in self.router.groups or (user is not None and not may_use(user, model_id)):
            raise ProxyError(
                404,
                f"The model {model_id!r} does not exist here; known models: {self.known_models}",
                type="invalid_request_error",
                param="model",
                code="model_not_found",
            )
        return {"id": model_id, "object": "model", "created": self.created, "owned_by": "lmgate"}

    def render_metrics(self) -> str:
        import lmgate

        stats = [(name, s) for name, s, _ in self.logger_stats()]
        return self.metrics.render(stats, lmgate.callback_stats())


def _json_safe(stats: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A logger's stats as the readiness body can hold them (keys made text, odd values shown as
    text), or no stats and why: a logger's ``stats()`` may return anything."""
    try:
        return orjson.loads(orjson.dumps(stats, default=str, option=orjson.OPT_NON_STR_KEYS)), None
    except (
        TypeError,
        ValueError,
    ) as error:  # orjson.JSONEncodeError: a value beyond JSON (an int over 64 bits)
        return {}, f"stats() returned what JSON cannot hold: {scrub(str(error))}"


def _cache_healthy(cache: Any) -> bool:
    try:
        stats = cache.stats()
    except Exception:
        return False
    return bool(stats.get("healthy", True)) if isinstance(stats, dict) else True
