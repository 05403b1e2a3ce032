"""The dashboard's routes: pages under ``/ui``, the JSON API under ``/ui/api``, the login.

Who may look is decided here, on every request: a signed session cookie (``session.py``), or
an API key sent like to the LLM routes (``Authorization: Bearer …``: scripts call the API
that way). The master key makes an admin (every call); a virtual key makes its holder, who
sees only the calls made with that key (``query.Viewer``), and stays logged in only while the
key is valid. ``open_access`` (a proxy without a master key, ``lmgate ui`` on loopback) needs
no login, for clients on this machine only: a keyless proxy told to listen on another address
(or reached through a reverse proxy or a container's port) would otherwise show every stored
prompt and answer to the network. Store queries are synchronous: they run in the thread pool.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..proxy.auth import UserAPIKeyAuth, presented_key
from ..proxy.errors import ProxyError
from ..proxy.responses import error_response, json_response
from . import query
from .context import UiContext
from .query import QueryError, Viewer
from .session import COOKIE, cookie_options
from .throttle import LoginThrottle

STATIC = Path(__file__).parent / "static"


def viewer_of(user: UserAPIKeyAuth) -> Viewer | None:
    """The viewer an authenticated key stands for; None for a key that is neither the admin's
    nor a virtual key (a keyless proxy's callers: ``open_access`` covers them)."""
    if user.user_role == "proxy_admin":
        return Viewer(admin=True, label="admin")
    if user.user_role == "internal_user" and user.api_key:
        return Viewer(admin=False, key_hash=user.api_key, label=user.key_alias or user.key_name or "key")
    return None


def routes(ctx: UiContext) -> list[BaseRoute]:
    from . import pages

    def _refusal(request: Request) -> str:
        if ctx.open_access:
            return OPEN_ONLY_LOCALLY
        return "log in at /ui/login, or send a key as 'Authorization: Bearer <key>'"

    async def who(request: Request) -> Viewer | None:
        if ctx.open_access:
            return query.ADMIN if _local(request) else None
        key, _problem = presented_key(request.headers)
        if key is not None and ctx.authenticate is not None:
            try:
                return viewer_of(await ctx.authenticate(key, request))
            except ProxyError:
                return None
        viewer = ctx.sessions.load(request.cookies.get(COOKIE))
        if viewer is not None and not viewer.admin:
            if ctx.key_alive is None or viewer.key_hash is None or not await ctx.key_alive(viewer.key_hash):
                return None
        return viewer

    def api(
        answer: Callable[[Any, Mapping[str, str], Viewer, float], dict[str, Any]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            viewer = await who(request)
            if viewer is None:
                return error_response(ProxyError(401, _refusal(request)))
            store = ctx.store()
            if store is None:
                return error_response(ProxyError(404, NO_STORE, type="not_found_error", code="no_log_store"))
            params = dict(request.query_params)
            try:
                body = await run_in_threadpool(answer, store, params, viewer, ctx.clock())
                if params.get("format") == "csv":
                    rows, columns = query.table_of(body)
                    return _csv(query.to_csv(rows, columns), request.url.path)
            except QueryError as error:
                return error_response(ProxyError(400, str(error)))
            return json_response(body)

        return endpoint

    async def call_api(request: Request) -> Response:
        viewer = await who(request)
        if viewer is None:
            return error_response(ProxyError(401, _refusal(request)))
        store = ctx.store()
        if store is None:
            return error_response(ProxyError(404, NO_STORE, code="no_log_store"))
        call_id = request.path_params["call_id"]
        found = await run_in_threadpool(query.call, store, call_id, viewer)
        if found is None:
            return error_response(
                ProxyError(404, f"no call {call_id!r} in the log store", code="no_such_call")
            )
        return json_response(found)

    async def health_api(request: Request) -> Response:
        viewer = await who(request)
        if viewer is None:
            return error_response(ProxyError(401, _refusal(request)))
        if not viewer.admin:
            return error_response(ProxyError(403, "the health of the loggers is for the admin"))
        body = await health_body()
        if request.query_params.get("format") == "csv":
            rows, columns = query.table_of(body)
            return _csv(query.to_csv(rows, columns), request.url.path)
        return json_response(body)

    async def health_body() -> dict[str, Any]:
        body: dict[str, Any] = {"loggers": query.health(ctx.logger_stats())}
        if ctx.extra_health is not None:
            body.update(ctx.extra_health())
        return body

    async def spend_api(request: Request) -> Response:
        viewer = await who(request)
        if viewer is None:
            return error_response(ProxyError(401, _refusal(request)))
        store = ctx.store()
        if store is None:
            return error_response(ProxyError(404, NO_STORE, code="no_log_store"))
        params = dict(request.query_params)
        try:
            body = await run_in_threadpool(query.spend, store, params, viewer, ctx.clock())
        except QueryError as error:
            return error_response(ProxyError(400, str(error)))
        body["budgets"] = await budgets_for(viewer)
        if params.get("format") == "csv":
            rows, columns = query.table_of(body)
            return _csv(query.to_csv(rows, columns), request.url.path)
        return json_response(body)

    async def budgets_for(viewer: Viewer) -> dict[str, list[dict[str, Any]]] | None:
        if ctx.budgets is None:
            return None
        found = await ctx.budgets()
        if viewer.admin:
            return found
        mine = [k for k in found.get("keys", []) if k.get("token") == viewer.key_hash]
        teams = {k.get("team_id") for k in mine}
        return {"keys": mine, "teams": [t for t in found.get("teams", []) if t.get("team_id") in teams]}

    async def me(request: Request) -> Response:
        viewer = await who(request)
        if viewer is None:
            return error_response(ProxyError(401, "not logged in"))
        return json_response({"admin": viewer.admin, "label": viewer.label, "key_hash": viewer.key_hash})

    # ---- pages ----
    def page(
        render: Callable[[Request, Viewer, Any], Awaitable[str]], *, admin_only: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            viewer = await who(request)
            if viewer is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/ui/login?next={quote(target)}", status_code=303)
            if admin_only and not viewer.admin:
                return _html(pages.message(viewer, ctx, "Only the admin sees this page.", 403), 403)
            store = ctx.store()
            try:
                return _html(await render(request, viewer, store))
            except QueryError as error:
                return _html(pages.message(viewer, ctx, str(error), 400), 400)

        return endpoint

    async def overview_page(request: Request, viewer: Viewer, store: Any) -> str:
        if store is None:
            return pages.no_store(viewer, ctx)
        params = dict(request.query_params)
        by = params.get("by") or "model"
        data = await run_in_threadpool(
            lambda: (
                query.overview(store, params, viewer, ctx.clock()),
                query.breakdown(store, {**params, "by": by}, viewer, ctx.clock()),
            )
        )
        return pages.overview(viewer, ctx, params, *data)

    async def logs_page(request: Request, viewer: Viewer, store: Any) -> str:
        if store is None:
            return pages.no_store(viewer, ctx)
        params = dict(request.query_params)
        found = await run_in_threadpool(query.logs, store, params, viewer, ctx.clock())
        return pages.logs(viewer, ctx, params, found)

    async def call_page(request: Request, viewer: Viewer, store: Any) -> str:
        if store is None:
            return pages.no_store(viewer, ctx)
        call_id = request.path_params["call_id"]
        found = await run_in_threadpool(query.call, store, call_id, viewer)
        if found is None:
            raise QueryError(f"no call {call_id!r} in the log store")
        return pages.call(viewer, ctx, found)

    async def spend_page(request: Request, viewer: Viewer, store: Any) -> str:
        if store is None:
            return pages.no_store(viewer, ctx)
        params = dict(request.query_params)
        found = await run_in_threadpool(query.spend, store, params, viewer, ctx.clock())
        return pages.spend(viewer, ctx, params, found, await budgets_for(viewer))

    async def health_page(request: Request, viewer: Viewer, store: Any) -> str:
        if not ctx.has_health:
            return pages.message(
                viewer,
                ctx,
                "This dashboard reads a store file; the loggers' health is in the program that writes it "
                "(lmgate.callback_stats(), or the proxy's /ui/health).",
                200,
            )
        return pages.health(viewer, ctx, await health_body(), store)

    # ---- login ----
    async def login_form(request: Request) -> Response:
        if ctx.open_access:
            if _local(request):
                return RedirectResponse("/ui", status_code=303)
            return _html(pages.message(None, ctx, OPEN_ONLY_LOCALLY, 403), 403)
        return _html(pages.login(ctx, None, _next(request.query_params.get("next"))))

    throttle = LoginThrottle(ctx.clock)

    async def login(request: Request) -> Response:
        if not _same_origin(request):
            return _html(pages.login(ctx, "Log in from this dashboard's own page.", "/ui"), 403)
        address = request.client.host if request.client else "?"
        wait = throttle.retry_after(address)
        if wait is not None:
            page = pages.login(ctx, f"Too many refused keys: try again in {math.ceil(wait)} s.", "/ui")
            refused = _html(page, 429)
            refused.headers["Retry-After"] = str(math.ceil(wait))
            return refused
        # a urlencoded form of two fields: parsed with the standard library (Starlette's form
        # parser needs python-multipart for this one form)
        body = await request.body()
        if len(body) > 16_384:
            return _html(pages.login(ctx, "That form is too large.", "/ui"), 413)
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
        key = (form.get("key") or [""])[0].strip()
        target = _next((form.get("next") or [""])[0])
        viewer: Viewer | None = None
        if key and ctx.authenticate is not None:
            try:
                viewer = viewer_of(await ctx.authenticate(key, request))
            except ProxyError:
                viewer = None
        if viewer is None:
            throttle.failed(address)
            # the same answer for every refusal: the page never tells which keys exist
            return _html(pages.login(ctx, "That key is not valid here.", target), 401)
        throttle.succeeded(address)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE, ctx.sessions.dump(viewer), **cookie_options(request.url.scheme == "https")
        )
        return response

    async def logout(request: Request) -> Response:
        if not _same_origin(request):
            return _html(pages.message(None, ctx, "Log out from this dashboard's own page.", 403), 403)
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    async def home(request: Request) -> Response:
        return await overview_endpoint(request)

    overview_endpoint = page(overview_page)
    return [
        Route("/ui", home, methods=["GET"]),
        Route("/ui/", home, methods=["GET"]),
        Route("/ui/overview", overview_endpoint, methods=["GET"]),
        Route("/ui/logs", page(logs_page), methods=["GET"]),
        Route("/ui/logs/{call_id:path}", page(call_page), methods=["GET"]),
        Route("/ui/spend", page(spend_page), methods=["GET"]),
        Route("/ui/health", page(health_page, admin_only=True), methods=["GET"]),
        Route("/ui/login", login_form, methods=["GET"]),
        Route("/ui/login", login, methods=["POST"]),
        Route("/ui/logout", logout, methods=["POST"]),
        Route("/ui/api/me", me, methods=["GET"]),
        Route("/ui/api/overview", api(query.overview), methods=["GET"]),
        Route("/ui/api/breakdown", api(query.breakdown), methods=["GET"]),
        Route("/ui/api/logs", api(query.logs), methods=["GET"]),
        Route("/ui/api/logs/{call_id:path}", call_api, methods=["GET"]),
        Route("/ui/api/spend", spend_api, methods=["GET"]),
        Route("/ui/api/health", health_api, methods=["GET"]),
        Mount("/ui/static", app=StaticFiles(directory=STATIC), name="ui-static"),
    ]


OPEN_ONLY_LOCALLY = (
    "This dashboard has no login key (the proxy's general_settings.master_key; LMGATE_UI_KEY for "
    "lmgate ui), so it answers only on this machine (127.0.0.1): set one to look from elsewhere."
)

NO_STORE = (
    'no log store: turn the store logger on (litellm_settings.callbacks: ["store"], docs/store.md) '
    "and restart the proxy"
)


def _local(request: Request) -> bool:
    """The client is on this machine (as uvicorn reports it: behind a reverse proxy on this
    machine, the forwarded client address)."""
    host = request.client.host if request.client else ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same_origin(request: Request) -> bool:
    """False for a form posted by another site (login CSRF: a page elsewhere logging the
    browser in with the attacker's key). Current browsers say where a request comes from in
    ``Sec-Fetch-Site`` (read first: it holds behind a reverse proxy that rewrites ``Host``);
    older ones send ``Origin``, compared with the host asked for. A client that sends neither
    (curl, a script) is no browser being misled."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    return urlsplit(origin).netloc in hosts - {None}


def _next(target: str | None) -> str:
    """Where to go after logging in: only a path of this dashboard (never another site)."""
    if target and target.startswith("/ui") and "//" not in target and "\\" not in target:
        return target
    return "/ui"


def _html(text: str, status: int = 200) -> HTMLResponse:
    # the pages load scripts and styles from /ui/static only; framing is refused
    return HTMLResponse(
        text,
        status_code=status,
        headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        },
    )


def _csv(text: str, path: str) -> Response:
    name = path.rstrip("/").rsplit("/", 1)[-1] or "export"
    return PlainTextResponse(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="lmgate-{name}.csv"'},
    )


__all__ = ["NO_STORE", "UiContext", "routes", "viewer_of"]
