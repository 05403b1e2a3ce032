"""The dashboard inside ``lmgate serve``: its ``UiContext`` from the proxy's shared state.

The store is the one the ``store`` logger writes (looked up among the registered callbacks at
each request, so it is whatever backend that logger was configured with); the health page
reads the same logger stats as ``/health/readiness`` and ``/metrics``; logins go through the
proxy's own key backend (master key, virtual keys); budgets come from the key store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.routing import BaseRoute

from ..proxy.auth import UserAPIKeyAuth
from .context import UiContext
from .routes import routes
from .session import Sessions

if TYPE_CHECKING:
    from ..proxy.state import ProxyState


def ui_routes(state: ProxyState) -> list[BaseRoute]:
    from ..proxy.routes.ops import OpsRoutes

    ops = OpsRoutes(state)
    config = state.config

    def store() -> Any:
        for _name, logger in ops.loggers():
            found = getattr(logger, "store", None)
            if found is not None and callable(getattr(found, "totals", None)):
                return found
        return None

    async def authenticate(key: str | None, request: Request) -> UserAPIKeyAuth:
        return await state.backend.authenticate(key, request)

    key_store = state.key_store

    async def key_alive(key_hash: str) -> bool:
        if key_store is None:
            return False
        row = await key_store.key(key_hash)
        if row is None or row.get("blocked") or row.get("team_blocked"):
            return False
        expires = row.get("expires_at")
        import time

        return expires is None or expires > time.time()

    async def budgets() -> dict[str, list[dict[str, Any]]]:
        assert key_store is not None
        fields = (
            "token",
            "key_name",
            "key_alias",
            "team_id",
            "user_id",
            "spend",
            "max_budget",
            "budget_duration",
        )
        keys = [{f: k.get(f) for f in fields} for k in await key_store.list_keys()]
        team_fields = ("team_id", "team_alias", "spend", "max_budget", "budget_duration")
        teams = [{f: t.get(f) for f in team_fields} for t in await key_store.list_teams()]
        return {"keys": keys, "teams": teams}

    def extra_health() -> dict[str, Any]:
        import lmgate

        return {"dispatcher": dict(lmgate.callback_stats())}

    ctx = UiContext(
        store=store,
        logger_stats=ops.logger_stats,
        authenticate=authenticate,
        open_access=not config.master_key,
        sessions=Sessions(config.master_key),
        key_alive=key_alive if key_store is not None else None,
        budgets=budgets if key_store is not None else None,
        extra_health=extra_health,
    )
    return routes(ctx)


__all__ = ["ui_routes"]
