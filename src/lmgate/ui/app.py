"""``lmgate ui``: the dashboard on a local log store, for programs that use lmgate as a library.

The same pages and API as the proxy's ``/ui``, over the SQLite file the ``store`` logger
writes (``--db``, default ``<data dir>/logs.sqlite3``). On loopback it needs no login (the
machine's user already can read the file); with ``LMGATE_UI_KEY`` set it asks for that key,
and it refuses to listen beyond loopback without one. No health page numbers: the loggers
live in the program, not here.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any

KEY_ENV = "LMGATE_UI_KEY"
DEFAULT_PORT = 4001


def add_parser(sub: Any) -> None:
    ui = sub.add_parser("ui", help="the dashboard on a local log store (docs/ui.md)")
    ui.add_argument("--db", default=None, help="the store's SQLite file (default <data dir>/logs.sqlite3)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")


def create_app(store: Any, *, key: str | None = None) -> Any:
    """The dashboard app over ``store``; with ``key``, a login with that key is required."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import RedirectResponse, Response

    from ..proxy.auth import MasterKeyBackend, UserAPIKeyAuth
    from .context import UiContext
    from .routes import routes
    from .session import Sessions

    backend = MasterKeyBackend(key) if key else None

    async def authenticate(presented: str | None, request: Request) -> UserAPIKeyAuth:
        assert backend is not None
        return await backend.authenticate(presented, request)

    ctx = UiContext(
        store=lambda: store,
        logger_stats=lambda: [],
        authenticate=authenticate if backend else None,
        open_access=backend is None,
        sessions=Sessions(key),
        title="lmgate ui",
        has_health=False,
    )

    async def root(request: Request) -> Response:
        return RedirectResponse("/ui", status_code=307)

    from starlette.routing import Route

    return Starlette(routes=[Route("/", root), *routes(ctx)])


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..store import open_store
        from ..store.base import default_path
    except ModuleNotFoundError as error:
        print(
            f"lmgate ui needs the proxy and store extras: pip install 'lmgate[proxy,store]' ({error})",
            file=sys.stderr,
        )
        return 2
    key = os.environ.get(KEY_ENV) or None
    if not key and not _loopback(args.host):
        print(
            f"lmgate ui: refusing to serve the logs on {args.host} without a login: set {KEY_ENV} "
            "(the key to log in with) or use --host 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    path = args.db or default_path()
    if not os.path.exists(path):
        print(
            f"lmgate ui: no log store at {path} yet (an empty dashboard until calls are stored): turn the "
            'store logger on (callbacks: ["store"], docs/store.md) or give --db PATH',
            file=sys.stderr,
        )
    store = open_store(path)
    url = f"http://{args.host}:{args.port}/ui"
    print(f"lmgate ui: {path} on {url}" + (" (log in with $LMGATE_UI_KEY)" if key else ""), flush=True)
    try:
        uvicorn.run(create_app(store, key=key), host=args.host, port=args.port, log_level="warning")
    finally:
        store.close()
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["KEY_ENV", "add_parser", "create_app", "run"]
