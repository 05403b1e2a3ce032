"""The ASGI app: the proxy's parts assembled over ``lmgate.acompletion`` / ``lmgate.aembedding``.

``create_app`` builds the shared state (``state.py``) from the config, mounts the routes of
each kind (``routes/llm.py``: chat completions and embeddings; ``routes/ops.py``: models,
health, metrics; ``routes/admin.py``: keys and teams, with virtual keys only) behind the
authentication middleware (``middleware.py``, with the key backend of ``auth.py`` or
``virtual_keys.py``), and owns what is app-wide: JSON answers for unknown routes and bugs,
the key store's start (migrations) and close, and the flush of every logger at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from .auth import KeyBackend
from .config import ProxyConfig
from .errors import ProxyError
from .loading import apply_config
from .logs import log_request
from .middleware import Authenticate, FastLane, ProxyApp
from .responses import error_response
from .routes import llm, messages, openai_apis, ops
from .state import ProxyState

logger = logging.getLogger("lmgate.proxy")


def _calls_over_http(config: ProxyConfig) -> bool:
    from ..providers.mock import asks_for_mock

    return any(not asks_for_mock(deployment.litellm_params) for deployment in config.model_list)


def create_app(config: ProxyConfig, *, apply: bool = True, backend: KeyBackend | None = None) -> Starlette:
    """The proxy app for ``config``; ``apply`` sets lmgate's settings from it (callbacks, cache, …).

    ``backend`` decides who a key belongs to (default: the config's master key).
    """
    applied = apply_config(config) if apply else None
    state = ProxyState(config, applied, backend)

    routes = llm.routes(state) + messages.routes(state) + openai_apis.routes(state) + ops.routes(state)
    key_store = state.key_store
    if key_store is not None and state.key_backend is not None:
        # the management API (routes/admin.py): only with virtual keys, only for the admin
        from .routes import admin

        routes += admin.routes(key_store, state.key_backend, tuple(config.callback_settings))
    routes += _dashboard_routes(state)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        text = "method not allowed" if status == 405 else f"no route {request.url.path}"
        error = ProxyError(status, f"{text}; see GET /v1/models and docs/proxy.md")
        log_request(request.scope, status, None, None, None, 0.0, error=error)
        return error_response(error)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if key_store is not None:
            applied_versions = await key_store.start()  # creates the database, migrates
            if applied_versions:
                logger.info(
                    "key store %s: schema migrated to version %d", _where(key_store.url), applied_versions[-1]
                )
        limits = await _start_limits(state)
        if _calls_over_http(config):
            # import the HTTP clients now, so the first request does not pay for them (aiohttp,
            # the async wire, takes ~0.4 s cold); a proxy of mock deployments never needs them
            import httpx  # noqa: F401
            import httpx_sse  # noqa: F401

            from .. import _aiohttp_transport  # noqa: F401

        try:
            yield
        finally:
            # the spend first: its last batch may fire a soft-budget alert, which the loggers'
            # close below then delivers (or spools) with every other pending record
            await _stop_limits(state, limits)
            await shutdown(config)
            if key_store is not None:
                await key_store.close()

    async def server_error(request: Request, exc: Exception) -> Response:
        # a bug, not bad input: JSON like every other answer (uvicorn logs the traceback)
        return error_response(
            ProxyError(
                500, f"internal error on {request.url.path}; see the server log", type="internal_server_error"
            )
        )

    app = ProxyApp(  # FastLane's routes in front of Starlette's layers
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(Authenticate, backend=state.backend, public=ops.PUBLIC),
            Middleware(FastLane, routes=routes),  # the LLM routes without the routing layers
        ],
        exception_handlers={404: not_found, 405: not_found, Exception: server_error},
    )
    app.router.redirect_slashes = False
    app.state.proxy = state
    return app


async def _start_limits(state: ProxyState) -> asyncio.Task[None] | None:
    """The spend writer (replaying what a crashed process left in its journal) and, with Redis,
    the key-cache invalidation listener (budgets.py, spend.py, virtual_keys.py)."""
    enforcer = state.enforcer
    if enforcer is None or enforcer.writer is None:
        return None
    replayed = await enforcer.writer.start()
    if replayed:
        logger.warning(
            "spend ledger: %d rows recovered from the journal of a process that stopped uncleanly", replayed
        )
    if state.limits_redis is None or state.key_backend is None:
        return None
    ready = asyncio.Event()
    task = asyncio.create_task(state.key_backend.listen(state.limits_redis, ready), name="lmgate-keys-listen")
    try:  # a key changed elsewhere must not be served from an old entry once this instance answers
        await asyncio.wait_for(ready.wait(), 5.0)
    except asyncio.TimeoutError:
        logger.error(
            "keys: could not subscribe to the invalidation channel; entries expire after 5s meanwhile"
        )
    return task


async def _stop_limits(state: ProxyState, listener: asyncio.Task[None] | None) -> None:
    """After the last request: settle what is settling, write the spend, let Redis go."""
    if listener is not None:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    enforcer = state.enforcer
    if enforcer is None:
        return
    await enforcer.drain()
    if enforcer.writer is not None:
        await enforcer.writer.close(state.config.flush_timeout_s)
    with contextlib.suppress(Exception):
        await enforcer.counters.close()


def _dashboard_routes(state: ProxyState) -> list[Any]:
    """The dashboard at /ui and its query API at /ui/api (lmgate/ui, docs/ui.md)."""
    try:
        from ..ui.proxy import ui_routes
    except ImportError as error:  # jinja2/itsdangerous missing: the proxy still serves the API
        logger.warning("the dashboard at /ui is off: %s (pip install 'lmgate[proxy]')", error)
        return []
    return ui_routes(state)


def _where(url: str) -> str:
    """A database URL as a log line may show it (no password)."""
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


async def shutdown(config: ProxyConfig) -> bool:
    """After the last request: deliver every pending record; batch loggers spool what they
    cannot send within ``flush_timeout_s`` (the next process sends it). True when all was sent."""
    import lmgate

    from ..loggers.exit import close_all

    started = time.monotonic()
    try:
        drained = await lmgate.aflush_callbacks(config.flush_timeout_s)
    except Exception as error:
        logger.error("flushing callbacks at shutdown raised %s", error)
        drained = False
    remaining = max(0.0, config.flush_timeout_s - (time.monotonic() - started))
    await asyncio.to_thread(close_all, remaining)  # returns at once when no batch logger lives
    pending = lmgate.callback_stats().get("pending", 0)
    if drained:
        logger.info("callbacks flushed in %.2fs", time.monotonic() - started)
    else:
        logger.warning("%d callback deliveries still pending after %.1fs", pending, config.flush_timeout_s)
    return drained


__all__ = ["create_app", "shutdown"]
