"""The proxy's ASGI middlewares: authentication, the count of requests in flight, and the fast
lane of the LLM routes.

All are plain ASGI callables (no ``BaseHTTPMiddleware``, which costs a task per request and
gets in the way of streamed bodies), and cost a few attribute reads per request.

``FastLane`` serves the LLM routes (``CountedRoute``: chat completions, embeddings, messages)
straight from a dict of their paths, skipping Starlette's exception middleware, route scan and
per-route wrappers (issue 18: together a tenth of the proxy's own CPU per forwarded request).
Their endpoints answer every error themselves, so nothing those layers did is lost; any other
method or path, and an app mounted under a ``root_path``, go through the Router as before.
``ProxyApp`` (the app itself) takes those routes in front of Starlette's application layer,
``ServerErrorMiddleware`` and ``Authenticate`` too, doing their work in one frame; an
unexpected exception still gets the app's JSON 500 (tests/test_proxy_crash_answer.py).

``Authenticate`` reads the key a request presents and asks the app's ``KeyBackend`` who it
belongs to. It does not answer a refused key itself: it leaves the identity, or the 401, in
the request's scope, and each route takes it with ``caller(request)``. That keeps one path
for every failure of an LLM request (failure hooks, metrics and the request log see a bad
key like any other error), and lets the probes answer without a key.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.routing import Match, Route

from .auth import KeyBackend, UserAPIKeyAuth, presented_key, unauthorized
from .connections import httptools_cycle
from .errors import ProxyError
from .metrics import Metrics

USER = "user"  # where Starlette keeps the authenticated user (``request.user``)
AUTH_ERROR = "lmgate.auth_error"  # why the key was refused, when it was

# the raw names of the headers a key may come in (ASGI header names are lower case)
_KEY_HEADERS = frozenset({b"authorization", b"api-key", b"x-api-key"})


class Authenticate:
    """Turns every HTTP request's key into ``scope["user"]`` (or ``scope[AUTH_ERROR]``).

    A path in ``public`` that presents no key is let through unauthenticated (``user`` is
    None); a key it does present is checked like any other.
    """

    def __init__(self, app: Any, backend: KeyBackend, public: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.backend = backend
        self.public = public

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self.identify(scope)
        await self.app(scope, receive, send)

    async def identify(self, scope: Any) -> None:
        """Put the caller of an HTTP request in ``scope[USER]``, or why its key was refused in
        ``scope[AUTH_ERROR]``; raises only what the backend raises unexpectedly (a bug: a 500)."""
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name in _KEY_HEADERS:  # the first of a repeated header, as Starlette's Headers.get
                headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        key, problem = presented_key(headers)
        user: UserAPIKeyAuth | None = None
        error: ProxyError | None = None
        if key is not None or problem is not None or scope["path"] not in self.public:
            try:
                user = await self.backend.authenticate(key, HTTPConnection(scope))
            except ProxyError as refused:
                # a header that holds no key says best what was wrong with it
                error = unauthorized(problem) if problem is not None and refused.status == 401 else refused
        scope[USER] = user
        scope[AUTH_ERROR] = error


def caller(request: Request) -> UserAPIKeyAuth:
    """The authenticated caller of ``request``; raises the 401 when its key was refused."""
    error = request.scope.get(AUTH_ERROR)
    if error is not None:
        raise error
    user = request.scope.get(USER)
    if user is None:  # a route outside ``public`` always has one: this is a public path
        raise unauthorized("this route needs an API key")
    return user  # type: ignore[no-any-return]


def caller_if_presented(request: Request) -> UserAPIKeyAuth | None:
    """The caller when the request presented a key (raising its 401 when refused), else None."""
    if request.scope.get(AUTH_ERROR) is None and request.scope.get(USER) is None:
        return None
    return caller(request)


class InFlight:
    """Counts a request in ``metrics.in_flight`` from its start to the end of its response
    body: a stream until its last chunk, a client that left (499) until the app lets go."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    @classmethod
    def using(cls, metrics: Metrics) -> Middleware:
        return Middleware(cls, metrics=metrics)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        metrics = self.metrics
        metrics.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            metrics.in_flight -= 1


Endpoint = Callable[[Request], Awaitable[Any]]


class CountedRoute(Route):
    """A POST route counted in flight (``InFlight``) that ``FastLane`` may serve directly."""

    def __init__(self, path: str, endpoint: Endpoint, metrics: Metrics) -> None:
        super().__init__(path, endpoint, methods=["POST"], middleware=[InFlight.using(metrics)])
        self.direct = endpoint
        self.metrics = metrics


class FastLane:
    """Serves a POST to a ``CountedRoute``'s exact path without Starlette's routing layers.

    What it does is what those layers do for such a route: the in-flight count, the route and
    endpoint in the scope, ``Request(scope, receive, send)``, the response sent; an exception
    goes up to ``ServerErrorMiddleware`` as it would have. Everything else passes to ``app``.
    """

    def __init__(self, app: Any, routes: Iterable[Any]) -> None:
        self.app = app
        self.table: dict[str, CountedRoute] = {}
        routes = list(routes)
        for route in routes:
            # only where the Router would pick this route too: the first route to match a POST fully
            if (
                isinstance(route, CountedRoute)
                and not route.param_convertors
                and _first_match(routes, route.path) is route
            ):
                self.table[route.path] = route

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            route = self.table.get(scope["path"])
            if route is not None:
                await self.serve(route, scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def serve(route: CountedRoute, scope: Any, receive: Any, send: Any) -> None:
        """What the Router, the route's ``InFlight`` and its endpoint wrapper do for ``route``."""
        scope["route"] = route
        scope["endpoint"] = route.direct
        scope["path_params"] = {}
        metrics = route.metrics
        metrics.in_flight += 1
        try:
            response = await route.direct(Request(scope, receive, send))
            await response(scope, receive, send)
        finally:
            metrics.in_flight -= 1


class ProxyApp(Starlette):
    """The proxy's Starlette app, with ``FastLane``'s routes taken in front of every layer.

    Starlette passes each request through its application layer, ``ServerErrorMiddleware`` (a
    500 for an unexpected exception) and ``Authenticate`` before ``FastLane`` sees it: two
    coroutine frames and a wrapped ``send`` per request that a forwarded request only needs
    when something crashes (issue 18). For a POST to a fast-lane path this app does what
    those layers do, in one frame: the app in the scope, the caller identified, the route
    served, and an unexpected exception answered with the app's own 500 handler when nothing
    was sent yet, then raised on to the server (which logs it and closes the connection), as
    ``ServerErrorMiddleware`` does. It does so only while the layers in front of ``FastLane``
    are exactly those (``build_middleware_stack``): an added middleware, or ``debug`` (the
    traceback page), sends every request through the whole stack again.
    """

    _lane: FastLane | None = None
    _auth: Authenticate | None = None
    _crash: Any = None  # the app's handler for unexpected exceptions (ServerErrorMiddleware's)

    def build_middleware_stack(self) -> Any:
        stack = super().build_middleware_stack()
        self._lane = self._auth = self._crash = None
        auth = getattr(stack, "app", None)
        lane = getattr(auth, "app", None)
        if (
            type(stack) is ServerErrorMiddleware
            and not stack.debug
            and stack.handler is not None
            # a coroutine function (what Starlette awaits); anything else: the whole stack
            and inspect.iscoroutinefunction(stack.handler)
            and type(auth) is Authenticate
            and type(lane) is FastLane
        ):
            self._lane, self._auth, self._crash = lane, auth, stack.handler
        return stack

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        lane = self._lane
        if (
            lane is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and not scope.get("root_path")
        ):
            route = lane.table.get(scope["path"])
            if route is not None:
                cycle: Any = getattr(send, "__self__", None)
                if type(cycle) is httptools_cycle():  # its own flag says whether the answer started
                    try:
                        await self._auth.identify(scope)  # type: ignore[union-attr]
                        await lane.serve(route, scope, receive, send)
                    except Exception as exc:
                        response = await self._crash(Request(scope), exc)
                        if not cycle.response_started:
                            await response(scope, receive, send)
                        raise
                    return
                started = False

                def noted(message: Any) -> Any:  # what ServerErrorMiddleware's send wrapper notes
                    nonlocal started
                    if message["type"] == "http.response.start":
                        started = True
                    return send(message)

                try:
                    await self._auth.identify(scope)  # type: ignore[union-attr]
                    await lane.serve(route, scope, receive, noted)
                except Exception as exc:
                    response = await self._crash(Request(scope), exc)
                    if not started:
                        await response(scope, receive, send)
                    raise
                return
        await self.middleware_stack(scope, receive, send)


def _first_match(routes: list[Any], path: str) -> Any:
    """The route Starlette's Router serves a POST to ``path`` with (a full match, first in order)."""
    scope = {"type": "http", "method": "POST", "path": path, "root_path": ""}
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


__all__ = [
    "AUTH_ERROR",
    "USER",
    "Authenticate",
    "CountedRoute",
    "FastLane",
    "InFlight",
    "ProxyApp",
    "caller",
    "caller_if_presented",
]
