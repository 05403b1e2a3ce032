"""The proxy's ASGI middlewares: authentication, and the count of requests in flight.

Both are plain ASGI callables (no ``BaseHTTPMiddleware``, which costs a task per request and
gets in the way of streamed bodies), and cost a few attribute reads per request.

``Authenticate`` reads the key a request presents and asks the app's ``KeyBackend`` who it
belongs to. It does not answer a refused key itself: it leaves the identity, or the 401, in
the request's scope, and each route takes it with ``caller(request)``. That keeps one path
for every failure of an LLM request (failure hooks, metrics and the request log see a bad
key like any other error), and lets the probes answer without a key.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request

from .auth import KeyBackend, UserAPIKeyAuth, presented_key, unauthorized
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
                    error = (
                        unauthorized(problem) if problem is not None and refused.status == 401 else refused
                    )
            scope[USER] = user
            scope[AUTH_ERROR] = error
        await self.app(scope, receive, send)


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


__all__ = ["AUTH_ERROR", "USER", "Authenticate", "InFlight", "caller", "caller_if_presented"]
