"""The management API (keys, teams, users, end users and spend), compatible with the reference's routes.

Mounted only when the config turns virtual keys on (``general_settings.virtual_keys``). Every
route is the admin's: a caller whose ``user_role`` is not ``proxy_admin`` (any key but the
master key) gets a 401, as from the reference. Bodies and answers use the reference's field
names; errors are OpenAI-shaped. A key's text appears in one answer only, ``/key/generate``'s.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...control.reports import GROUP_COLUMNS, SpendFilters, SpendReports, parse_when
from ...control.requests import (
    ID_LIMIT,
    TEXT_LIMIT,
    BadField,
    check_text,
    customer_columns,
    duration_seconds,
    key_columns,
    team_columns,
    user_columns,
)
from ...control.store import KeyStore, NoSuchTeam, token_of
from ..end_users import end_users_of
from ..errors import ProxyError, to_proxy_error
from ..key_logging import BadLogging
from ..key_logging import check as check_logging
from ..logs import log_request
from ..middleware import caller
from ..responses import error_response, json_response
from ..virtual_keys import DatabaseKeyBackend, iso

Handler = Callable[[Request], Awaitable[Any]]
_log = logging.getLogger("lmgate.proxy.admin")


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


def _required_str(data: Any, name: str, limit: int = TEXT_LIMIT) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ProxyError(400, f"{name!r} is required: a string", param=name)
    return check_text(name, value, limit)


def _optional_id(data: Any, name: str, limit: int = ID_LIMIT) -> str | None:
    """An id the caller may choose (``team_id``, ``user_id``) or None for a made-up one."""
    value = data.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise ProxyError(400, f"{name!r} must be a non-empty string", param=name)
    return None if value is None else check_text(name, value, limit)


def _optional_text(params: Any, name: str) -> str | None:
    """A query parameter used as a filter: None when absent or empty."""
    value = params.get(name)
    return check_text(name, value) if value else None


def _required_list(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ProxyError(400, f"{name!r} is required: a non-empty list of strings", param=name)
    return [check_text(name, v) for v in value]


def _chosen_key(data: dict[str, Any]) -> str | None:
    """The key text an admin chose in ``/key/generate``'s ``key`` (the reference's custom key),
    or None for a generated one. It must look like a key and be long enough not to be guessed."""
    value = data.get("key")
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.startswith("sk-")
        or not 16 <= len(value) <= TEXT_LIMIT
        or any(c.isspace() or not c.isprintable() for c in value)
    ):
        raise ProxyError(
            400,
            f"'key' must be a string starting with 'sk-', 16 to {TEXT_LIMIT} characters without spaces",
            param="key",
        )
    return value


def user_info(row: dict[str, Any]) -> dict[str, Any]:
    return team_info(row)


def customer_info(row: dict[str, Any], spend: float) -> dict[str, Any]:
    """An end user as the reference shows one: its budget also under ``litellm_budget_table``."""
    info = team_info(row)
    info["spend"] = spend
    info["litellm_budget_table"] = {
        name: row.get(name) for name in ("max_budget", "budget_duration", "rpm_limit", "tpm_limit")
    }
    return info


def _optional_when(params: Any, name: str, *, end: bool = False) -> float | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return parse_when(value, name, end=end)
    except ValueError as error:
        raise ProxyError(400, str(error), param=name) from None


class AdminRoutes:
    def __init__(
        self, store: KeyStore, backend: DatabaseKeyBackend, callback_names: tuple[str, ...] = ()
    ) -> None:
        self.store = store
        self.backend = backend
        self.callback_names = callback_names  # what a key's or team's metadata.logging may name
        self._reports: SpendReports | None = None
        self.end_users = end_users_of(store)  # the LLM routes' cache of end users

    @property
    def reports(self) -> SpendReports:
        if self._reports is None:  # the engine exists once the store has started
            self._reports = SpendReports(self.store.engine)
        return self._reports

    def _check_logging(self, columns: dict[str, Any]) -> None:
        if "metadata" in columns:
            check_logging(columns["metadata"], self.callback_names)

    async def _update(
        self,
        request: Request,
        id_field: str,
        columns_of: Callable[..., dict[str, Any]],
        update: Callable[[str, dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any] | None]],
        missing: str,
        forget: Callable[[str], None],
        answer: Callable[[dict[str, Any]], Any],
        *,
        by_token: bool = False,
        logging_settings: bool = False,
    ) -> Response:
        """One ``/…/update``: the body's ``id_field`` names the row (a key by its text, looked up as
        its token with ``by_token``), the fields sent are the columns to change
        (``columns_of(data, partial=True)``), checked for logging settings when
        ``logging_settings``; ``update(id, columns, body)`` changes the row and returns it, None
        when there is none: a 404 naming ``id_field`` (``missing``, with ``{!r}`` for the id).
        ``forget(id)`` drops what caches hold of it; ``answer(row)`` (or its awaited result) is
        the answer."""
        data = await _body(request)
        named = _required_str(data, id_field)
        ident = token_of(named) if by_token else named
        columns = columns_of(data, partial=True)
        if logging_settings:
            self._check_logging(columns)
        row = await update(ident, columns, data)
        if row is None:
            raise ProxyError(404, missing.format(named), param=id_field)
        forget(ident)
        result = answer(row)
        return json_response(await result if inspect.isawaitable(result) else result)

    # ---------------------------------------------------------------------------- keys

    async def key_generate(self, request: Request) -> Response:
        data = await _body(request)
        columns = key_columns(data)
        self._check_logging(columns)
        key, row = await self.store.create_key(columns, duration_seconds(data), _chosen_key(data))
        return json_response(dict(key_info(row), key=key, token_id=row["token"]))

    async def key_update(self, request: Request) -> Response:
        return await self._update(
            request,
            "key",
            key_columns,
            lambda token, columns, data: self.store.update_key(token, columns, duration_seconds(data)),
            "no such key",
            lambda token: self.backend.forget([token]),
            key_info,
            by_token=True,
            logging_settings=True,
        )

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
        rows = await self.store.list_keys(
            _optional_text(params, "team_id"), _optional_text(params, "user_id")
        )
        if params.get("return_full_object") in ("true", "True", "1"):
            listed: list[Any] = [key_info(r) for r in rows]
        else:
            listed = [r["token"] for r in rows]
        return json_response({"keys": listed, "total_count": len(rows), "current_page": 1, "total_pages": 1})

    async def key_regenerate(self, request: Request) -> Response:
        """A new text for a key (``/key/regenerate`` with ``key``, or ``/key/{key}/regenerate``),
        optionally changing fields as ``/key/update`` does; the old text is refused at once."""
        data = await _body(request)
        named = request.path_params.get("key")
        if named is not None:
            data.setdefault("key", named)
        token = token_of(_required_str(data, "key"))
        columns = key_columns(data, partial=True)
        self._check_logging(columns)
        made = await self.store.regenerate_key(token, columns, duration_seconds(data))
        if made is None:
            raise ProxyError(404, "no such key", param="key")
        self.backend.forget([token])
        key, row = made
        return json_response(dict(key_info(row), key=key, token_id=row["token"]))

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
        team_id = _optional_id(data, "team_id")
        columns = team_columns(data)
        self._check_logging(columns)
        try:
            row = await self.store.create_team(columns, team_id)
        except KeyError:
            raise ProxyError(400, f"team {team_id!r} already exists", param="team_id") from None
        return json_response(team_info(row))

    async def team_update(self, request: Request) -> Response:
        return await self._update(
            request,
            "team_id",
            team_columns,
            lambda team_id, columns, _: self.store.update_team(team_id, columns),
            "no team {!r}",
            lambda _: self.backend.forget(),  # every key of the team carries its models
            team_info,
            logging_settings=True,
        )

    async def team_delete(self, request: Request) -> Response:
        return await self._delete_owners(request, "team", self.store.delete_teams)

    async def team_info(self, request: Request) -> Response:
        team_id = _required_str(request.query_params, "team_id")
        row = await self.store.team(team_id)
        if row is None:
            raise ProxyError(404, f"no team {team_id!r}", param="team_id")
        keys = [key_info(k) for k in await self.store.list_keys(team_id=team_id)]
        return json_response({"team_id": team_id, "team_info": team_info(row), "keys": keys})

    async def team_list(self, request: Request) -> Response:
        return json_response([team_info(r) for r in await self.store.list_teams()])

    # --------------------------------------------------------------------------- users

    async def user_new(self, request: Request) -> Response:
        """A user, and (``auto_create_key``, true by default as in the reference) a key of its own."""
        data = await _body(request)
        user_id = _optional_id(data, "user_id")
        columns = user_columns(data)
        auto_key = data.get("auto_create_key", True)
        if not isinstance(auto_key, bool):
            raise ProxyError(400, "'auto_create_key' must be true or false", param="auto_create_key")
        key_alias = data.get("key_alias")
        if key_alias is not None and not isinstance(key_alias, str):
            raise ProxyError(400, "'key_alias' must be a string", param="key_alias")
        if key_alias is not None:
            check_text("key_alias", key_alias)
        lifetime = duration_seconds(data)
        try:
            row = await self.store.create_user(columns, user_id)
        except KeyError:
            raise ProxyError(400, f"user {user_id!r} already exists", param="user_id") from None
        answer = user_info(row)
        if auto_key:
            key_row_columns = key_columns({"user_id": row["user_id"], "key_alias": key_alias})
            try:
                key, key_row = await self.store.create_key(key_row_columns, lifetime)
            except BadField:  # the alias is taken: no user without the key it asked for
                await self.store.delete_users([row["user_id"]])
                raise
            answer.update(
                key=key, token=key_row["token"], key_alias=key_alias, expires=iso(key_row["expires_at"])
            )
        return json_response(answer)

    async def user_update(self, request: Request) -> Response:
        return await self._update(
            request,
            "user_id",
            user_columns,
            lambda user_id, columns, _: self.store.update_user(user_id, columns),
            "no user {!r}",
            lambda _: self.backend.forget(),  # every key of the user carries its budget
            user_info,
        )

    async def user_delete(self, request: Request) -> Response:
        return await self._delete_owners(request, "user", self.store.delete_users)

    async def _delete_owners(
        self, request: Request, kind: str, delete: Callable[[list[Any]], Awaitable[tuple[Any, list[str]]]]
    ) -> Response:
        """``/team/delete`` and ``/user/delete``: the owners named in ``{kind}_ids`` and their keys,
        which stop authenticating at once."""
        data = await _body(request)
        deleted, tokens = await delete(_required_list(data, f"{kind}_ids"))
        self.backend.forget(tokens)
        if not deleted:
            raise ProxyError(404, f"none of these {kind}s exist", param=f"{kind}_ids")
        return json_response({f"deleted_{kind}s": deleted, "deleted_keys": tokens})

    async def user_info(self, request: Request) -> Response:
        user_id = _required_str(request.query_params, "user_id")
        row = await self.store.user(user_id)
        if row is None:
            raise ProxyError(404, f"no user {user_id!r}", param="user_id")
        keys = [key_info(k) for k in await self.store.list_keys(user_id=user_id)]
        team_ids = sorted({k["team_id"] for k in keys if k.get("team_id")})
        return json_response(
            {"user_id": user_id, "user_info": user_info(row), "keys": keys, "teams": team_ids}
        )

    async def user_list(self, request: Request) -> Response:
        users = [user_info(r) for r in await self.store.list_users()]
        return json_response(
            {"users": users, "total": len(users), "page": 1, "page_size": len(users), "total_pages": 1}
        )

    # ---------------------------------------------------------------- end users (customers)

    async def customer_new(self, request: Request) -> Response:
        data = await _body(request)
        user_id = _required_str(data, "user_id")
        try:
            row = await self.store.create_customer(customer_columns(data), user_id)
        except KeyError:
            raise ProxyError(400, f"end user {user_id!r} already exists", param="user_id") from None
        self.end_users.forget([user_id])  # "unknown" may be cached
        return json_response(customer_info(row, 0.0))

    async def customer_update(self, request: Request) -> Response:
        return await self._update(
            request,
            "user_id",
            customer_columns,
            lambda user_id, columns, _: self.store.update_customer(user_id, columns),
            "no end user {!r}",
            lambda user_id: self.end_users.forget([user_id]),
            self._customer_answer,
        )

    async def customer_delete(self, request: Request) -> Response:
        data = await _body(request)
        deleted = await self.store.delete_customers(_required_list(data, "user_ids"))
        self.end_users.forget(deleted)
        if not deleted:
            raise ProxyError(404, "none of these end users exist", param="user_ids")
        return json_response({"deleted_customers": deleted})

    async def customer_info(self, request: Request) -> Response:
        user_id = _required_str(request.query_params, "end_user_id")
        row = await self.store.customer(user_id)
        if row is None:
            raise ProxyError(404, f"no end user {user_id!r}", param="end_user_id")
        return json_response(await self._customer_answer(row))

    async def customer_list(self, request: Request) -> Response:
        rows = await self.store.list_customers()
        spend = await self.reports.spend_of("end_user", [r["user_id"] for r in rows])
        return json_response([customer_info(r, spend[r["user_id"]]) for r in rows])

    async def _set_customers_blocked(self, request: Request, blocked: bool) -> Response:
        """Block or unblock end users, creating those not yet known (as the reference does)."""
        data = await _body(request)
        answered = []
        for user_id in _required_list(data, "user_ids"):
            row = await self.store.update_customer(user_id, {"blocked": blocked})
            if row is None:
                row = await self.store.create_customer(customer_columns({"blocked": blocked}), user_id)
            answered.append(await self._customer_answer(row))
        self.end_users.forget(data["user_ids"])
        return json_response({"blocked_users" if blocked else "unblocked_users": answered})

    async def customer_block(self, request: Request) -> Response:
        return await self._set_customers_blocked(request, True)

    async def customer_unblock(self, request: Request) -> Response:
        return await self._set_customers_blocked(request, False)

    async def _customer_answer(self, row: dict[str, Any]) -> dict[str, Any]:
        spend = await self.reports.spend_of("end_user", [row["user_id"]])
        return customer_info(row, spend[row["user_id"]])

    # --------------------------------------------------------------------------- spend

    def _filters(self, params: Any, *, end_user: str | None = None) -> SpendFilters:
        key = _optional_text(params, "api_key")
        return SpendFilters(
            token=token_of(key) if key else None,
            team_id=_optional_text(params, "team_id"),
            user_id=_optional_text(params, "user_id") or _optional_text(params, "internal_user_id"),
            end_user=end_user or _optional_text(params, "end_user") or _optional_text(params, "customer_id"),
            request_id=_optional_text(params, "request_id"),
            model=_optional_text(params, "model"),
            start=_optional_when(params, "start_date"),
            end=_optional_when(params, "end_date", end=True),
        )

    async def spend_logs(self, request: Request) -> Response:
        """Spend rows, newest first; with ``start_date`` and ``end_date`` and unless
        ``summarize=false``, the reference's daily summary instead."""
        params = request.query_params
        filters = self._filters(params)
        summarize = params.get("summarize", "true").lower() not in ("false", "0", "no")
        limit = params.get("limit", "1000")
        if not limit.isdigit() or not 0 < int(limit) <= 100_000:
            raise ProxyError(400, "'limit' must be a whole number from 1 to 100000", param="limit")
        if filters.start is not None and filters.end is not None and summarize and not filters.request_id:
            return json_response(await self._daily_summary(filters))
        return json_response(await self.reports.logs(filters, int(limit)))

    async def _daily_summary(self, filters: SpendFilters) -> list[dict[str, Any]]:
        days: dict[str, dict[str, Any]] = {}
        for row in await self.reports.daily("user", filters):
            day = days.setdefault(
                row["day"], {"startTime": row["day"], "spend": 0.0, "users": {}, "models": {}}
            )
            day["spend"] += row["spend"]
            user = row["group"] or "unknown"
            day["users"][user] = day["users"].get(user, 0.0) + row["spend"]
            model = row["model"] or "unknown"
            day["models"][model] = day["models"].get(model, 0.0) + row["spend"]
        return [days[d] for d in sorted(days)]

    async def global_spend_report(self, request: Request) -> Response:
        """Spend between two dates, by ``group_by``: ``team`` and ``customer`` per day (the
        reference's shape), ``api_key``, ``user`` and ``model`` as totals with per-model details."""
        params = request.query_params
        group_by = params.get("group_by", "team")
        if group_by not in GROUP_COLUMNS:
            raise ProxyError(
                400, f"group_by must be one of {', '.join(GROUP_COLUMNS)}, got {group_by!r}", param="group_by"
            )
        for name in ("start_date", "end_date"):
            if not params.get(name):
                raise ProxyError(400, f"{name!r} is required: a date (YYYY-MM-DD)", param=name)
        filters = self._filters(params)
        if group_by in ("team", "customer"):
            return json_response(await self._daily_report(group_by, filters))
        rows = await self.reports.totals(group_by, filters)
        name = {"api_key": "api_key", "user": "user_id", "model": "model"}[group_by]
        answer = []
        for g in rows:
            entry = {
                name: g["group"],
                "total_cost": g["spend"],
                "total_input_tokens": g["prompt_tokens"],
                "total_output_tokens": g["completion_tokens"],
                "requests": g["requests"],
                "model_details": [
                    {
                        "model": m["model"],
                        "total_cost": m["spend"],
                        "total_input_tokens": m["prompt_tokens"],
                        "total_output_tokens": m["completion_tokens"],
                        "requests": m["requests"],
                    }
                    for m in g["models"]
                ],
            }
            answer.append(entry)
        return json_response(answer)

    async def _daily_report(self, group_by: str, filters: SpendFilters) -> list[dict[str, Any]]:
        team_names: dict[str, str] = {}
        if group_by == "team":
            team_names = {
                t["team_id"]: t["team_alias"] or t["team_id"] for t in await self.store.list_teams()
            }
        plural, label = ("teams", "team_name") if group_by == "team" else ("customers", "customer")
        days: dict[str, dict[str, dict[str, Any]]] = {}
        for row in await self.reports.daily(group_by, filters):
            if group_by == "team":
                name = team_names.get(row["group"], row["group"]) if row["group"] else "Unassigned Team"
            else:
                name = row["group"]
            group = days.setdefault(row["day"], {}).setdefault(
                str(name), {label: name, "total_spend": 0.0, "metadata": []}
            )
            group["total_spend"] += row["spend"]
            group["metadata"].append(
                {
                    "model": row["model"],
                    "api_key": row["token"],
                    "spend": row["spend"],
                    "total_tokens": row["total_tokens"],
                }
            )
        return [{"group_by_day": day, plural: list(days[day].values())} for day in sorted(days)]


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
        except (BadField, BadLogging) as error:
            response = error_response(ProxyError(400, str(error), param=error.field))
        except NoSuchTeam as error:
            response = error_response(
                ProxyError(400, f"no team {error.args[0]!r}: create it with POST /team/new", param="team_id")
            )
        except sa.exc.DBAPIError as error:
            # the database's own words carry the SQL and its parameters: the log has them, the
            # caller gets what failed without them
            _log.error("%s %s: the key database failed: %s", request.method, request.url.path, error)
            response = error_response(
                ProxyError(
                    500,
                    f"the key database failed ({type(error.orig).__name__}); the proxy's log has the details",
                    type="internal_server_error",
                )
            )
        except Exception as error:
            response = error_response(to_proxy_error(error))
        log_request(request.scope, response.status_code, None, None, user, time.perf_counter() - start)
        return response  # type: ignore[no-any-return]

    return endpoint


def routes(store: KeyStore, backend: DatabaseKeyBackend, callback_names: tuple[str, ...] = ()) -> list[Route]:
    admin = AdminRoutes(store, backend, callback_names)
    table: list[tuple[str, str, Handler]] = [
        ("POST", "/key/generate", admin.key_generate),
        ("POST", "/key/update", admin.key_update),
        ("POST", "/key/delete", admin.key_delete),
        ("GET", "/key/info", admin.key_info),
        ("GET", "/key/list", admin.key_list),
        ("POST", "/key/block", admin.key_block),
        ("POST", "/key/unblock", admin.key_unblock),
        ("POST", "/key/regenerate", admin.key_regenerate),
        ("POST", "/key/{key}/regenerate", admin.key_regenerate),
        ("POST", "/team/new", admin.team_new),
        ("POST", "/team/update", admin.team_update),
        ("POST", "/team/delete", admin.team_delete),
        ("GET", "/team/info", admin.team_info),
        ("GET", "/team/list", admin.team_list),
        ("POST", "/user/new", admin.user_new),
        ("POST", "/user/update", admin.user_update),
        ("POST", "/user/delete", admin.user_delete),
        ("GET", "/user/info", admin.user_info),
        ("GET", "/user/list", admin.user_list),
        ("GET", "/spend/logs", admin.spend_logs),
        ("GET", "/global/spend/report", admin.global_spend_report),
    ]
    # end users: /customer/* and the reference's older spelling /end_user/*
    for prefix in ("/customer", "/end_user"):
        table += [
            ("POST", f"{prefix}/new", admin.customer_new),
            ("POST", f"{prefix}/update", admin.customer_update),
            ("POST", f"{prefix}/delete", admin.customer_delete),
            ("POST", f"{prefix}/block", admin.customer_block),
            ("POST", f"{prefix}/unblock", admin.customer_unblock),
            ("GET", f"{prefix}/info", admin.customer_info),
            ("GET", f"{prefix}/list", admin.customer_list),
        ]
    # the reference serves its management API at the root only
    return [Route(path, _admin_only(handler), methods=[method]) for method, path, handler in table]


__all__ = ["AdminRoutes", "customer_info", "key_info", "routes", "team_info", "user_info"]
