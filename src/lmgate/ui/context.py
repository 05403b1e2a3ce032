"""What the dashboard's routes and pages read (``UiContext``): one module below both, so the pages
need not import the routes that render them."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from ..proxy.auth import UserAPIKeyAuth
from .session import Sessions

StatsSource = Callable[[], list[tuple[str, dict[str, Any], str | None]]]


@dataclass
class UiContext:
    """What the dashboard reads: the store (looked up per request: the store logger may be
    configured after the app is built), logger stats, and who may log in.

    ``authenticate`` turns a presented key into an identity (raising a 401 ``ProxyError``),
    ``key_alive`` says whether a logged-in key still may look (not deleted, blocked or expired),
    ``budgets`` lists keys, teams and users with their budgets (virtual keys only)."""

    store: Callable[[], Any]
    logger_stats: StatsSource
    authenticate: Callable[[str | None, Request], Awaitable[UserAPIKeyAuth]] | None
    open_access: bool = False
    sessions: Sessions = field(default_factory=lambda: Sessions(None))
    key_alive: Callable[[str], Awaitable[bool]] | None = None
    budgets: Callable[[], Awaitable[dict[str, list[dict[str, Any]]]]] | None = None
    clock: Callable[[], float] = time.time
    title: str = "lmgate"
    has_health: bool = True  # the loggers run here (the proxy), not in another program (lmgate ui)
    extra_health: Callable[[], dict[str, Any]] | None = None
