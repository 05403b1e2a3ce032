"""The management API (virtual keys and teams), compatible with the reference's routes.

Mounted only when the config turns virtual keys on (``general_settings.virtual_keys``). Every
route is the admin's: a caller whose ``user_role`` is not ``proxy_admin`` (any key but the
master key) gets a 401, as from the reference. Bodies and answers use the reference's field
names; errors are OpenAI-shaped. A key's text appears in one answer only, ``/key/generate``'s.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...control.requests import BadField, duration_seconds, key_columns, team_columns
from ...control.store import KeyStore, token_of
from ..errors import ProxyError, to_proxy_error
from ..logs import log_request
from ..middleware import caller
from ..responses import error_response, json_response
from ..virtual_keys import DatabaseKeyBackend, iso

Handler = Callable[[Request], Awaitable[Any]]


def key_info(row: dict[str, Any]) -> dict[str, Any]:
    """A key's row as the reference shows it (``token`` is the hash; times as ISO text)."""
    info = {k: v for k, v in row.items() if k not in ("expires_at", "created_at", "updated_at")}
    info["expires"] = iso(row.get("expires_at"))
    info["created_at"] = iso(row.get("created_at"))
    info["updated_at"] = iso(row.get("updated_at"))
    return info


def team_info(row: dict[str, Any]) -> dict[str, Any]:
    info = dict(row)
    info["created_at"] = iso(row.get("created_at"))
    info["updated_at"] = iso(row.get("updated_at"))
    return info


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise ProxyError(400, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProxyError(400, "the request body must be a JSON object")
    return data


def _required_str(data: Any, name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ProxyError(400, f"{name!r} is required: a string", param=name)
    return value


def _required_list(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ProxyError(400, f"{name!r} is required: a non-empty list of strings", param=name)
    return value


class AdminRoutes:
    def __init__(self, store: KeyStore, backend: DatabaseKeyBackend) -> None:
        self.store = store
        self.backend = backend

    # ---------------------------------------------------------------------------- keys

    async def key_generate(self, request: Request) -> Response:
        data = await _body(request)
        columns = key_columns(data)
        key, row = await self.store.create_key(columns, duration_seconds(data))
        return json_response(dict(key_info(row), key=key, token_id=row["token"]))

    async def key_update(self, request: Request) -> Response:
        data = await _body(request)
        token = token_of(_required_str(data, "key"))
        columns = key_columns(data, partial=True)
        row = await self.store.update_key(token, columns, duration_seconds(data))
        if row is None:
            raise ProxyError(404, "no such key", param="key")
        self.backend.forget([token])
        return json_response(key_info(row))

    async def key_delete(self, request: Request) -> Response:
        data = await _body(request)
        tokens = [token_of(k) for k in _required_list(data, "keys")]
        deleted = await self.store.delete_keys(tokens)
        self.backend.forget(tokens)
        if not deleted:
            raise ProxyError(404, "none of these keys exist", param="keys")
        return json_response({"deleted_keys": deleted})

    async def key_info(self, request: Request) -> Response:
        token = token_of(_required_str(request.query_params, "key"))
        row = await self.store.key(token)
        if row is None:
            raise ProxyError(404, "no such key", param="key")
        return json_response({"key": token, "info": key_info(row)})

    async def key_list(self, request: Request) -> Response:
        params = request.query_params
        rows = await self.store.list_keys(params.get("team_id"), params.get("user_id"))
        if params.get("return_full_object") in ("true", "True", "1"):
            listed: list[Any] = [key_info(r) for r in rows]
        else:
            listed = [r["token"] for r in rows]
        return json_response({"keys": listed, "total_count": len(rows), "current_page": 1, "total_pages": 1})

    async def _set_blocked(self, request: Request, blocked: bool) -> Response:
        data = await _body(request)
        token = token_of(_required_str(data, "key"))
        row = await self.store.update_key(token, {"blocked": blocked})
        if row is None:
            raise ProxyError(404, "no such key", param="key")
        self.backend.forget([token])
        return json_response(key_info(row))

    async def key_block(self, request: Request) -> Response:
        return await self._set_blocked(request, True)

    async def key_unblock(self, request: Request) -> Response:
        return await self._set_blocked(request, False)

    # --------------------------------------------------------------------------- teams

    async def team_new(self, request: Request) -> Response:
        data = await _body(request)
        team_id = data.get("team_id")
        if team_id is not None and (not isinstance(team_id, str) or not team_id):
            raise ProxyError(400, "'team_id' must be a non-empty string", param="team_id")
        try:
            row = await self.store.create_team(team_columns(data), team_id)
        except KeyError:
            raise ProxyError(400, f"team {team_id!r} already exists", param="team_id") from None
        return json_response(team_info(row))

    async def team_update(self, request: Request) -> Response:
        data = await _body(request)
        team_id = _required_str(data, "team_id")
        row = await self.store.update_team(team_id, team_columns(data, partial=True))
        if row is None:
            raise ProxyError(404, f"no team {team_id!r}", param="team_id")
        self.backend.forget()  # every key of the team carries its models
        return json_response(team_info(row))

    async def team_delete(self, request: Request) -> Response:
        data = await _body(request)
        deleted, tokens = await self.store.delete_teams(_required_list(data, "team_ids"))
        self.backend.forget(tokens)
        if not deleted:
            raise ProxyError(404, "none of these teams exist", param="team_ids")
        return json_response({"deleted_teams": deleted, "deleted_keys": tokens})

    async def team_info(self, request: Request) -> Response:
        team_id = _required_str(request.query_params, "team_id")
        row = await self.store.team(team_id)
        if row is None:
            raise ProxyError(404, f"no team {team_id!r}", param="team_id")
        keys = [key_info(k) for k in await self.store.list_keys(team_id=team_id)]
        return json_response({"team_id": team_id, "team_info": team_info(row), "keys": keys})

    async def team_list(self, request: Request) -> Response:
        return json_response([team_info(r) for r in await self.store.list_teams()])


def _admin_only(handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        start = time.perf_counter()
        user = None
        try:
            user = caller(request)
            if user.user_role != "proxy_admin":
                raise ProxyError(
                    401,
                    f"only the proxy admin (the master key) may call {request.url.path}",
                    type="auth_error",
                    code="401",
                )
            response = await handler(request)
        except BadField as error:
            response = error_response(ProxyError(400, str(error), param=error.field))
        except LookupError as error:  # a team_id that names no team
            response = error_response(
                ProxyError(400, f"no team {error.args[0]!r}: create it with POST /team/new", param="team_id")
            )
        except Exception as error:
            response = error_response(to_proxy_error(error))
        log_request(request.scope, response.status_code, None, None, user, time.perf_counter() - start)
        return response  # type: ignore[no-any-return]

    return endpoint


def routes(store: KeyStore, backend: DatabaseKeyBackend) -> list[Route]:
    admin = AdminRoutes(store, backend)
    table: list[tuple[str, str, Handler]] = [
        ("POST", "/key/generate", admin.key_generate),
        ("POST", "/key/update", admin.key_update),
        ("POST", "/key/delete", admin.key_delete),
        ("GET", "/key/info", admin.key_info),
        ("GET", "/key/list", admin.key_list),
        ("POST", "/key/block", admin.key_block),
        ("POST", "/key/unblock", admin.key_unblock),
        ("POST", "/team/new", admin.team_new),
        ("POST", "/team/update", admin.team_update),
        ("POST", "/team/delete", admin.team_delete),
        ("GET", "/team/info", admin.team_info),
        ("GET", "/team/list", admin.team_list),
    ]
    # the reference serves its management API at the root only
    return [Route(path, _admin_only(handler), methods=[method]) for method, path, handler in table]


__all__ = ["AdminRoutes", "key_info", "routes", "team_info"]
