"""OpenAI's Responses API and legacy completions: ``POST /v1/responses``, ``GET`` and ``DELETE
/v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``, ``POST /v1/completions`` (each
also without ``/v1``).

The two POST routes are the LLM request flow of ``llm.py`` with a format of
``openai_formats.py``: checked as OpenAI checks them, the hooks see the request as sent (call
types ``aresponses`` and ``atext_completion``), the Router gets it as a chat request (or the
deployment the request as sent, when it speaks the API), and the answer and the stream go back
in the API's own shapes. ``GET``/``DELETE`` read the process's response store
(``lmgate._responses.store``): a key sees only the responses it made.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..._responses.store import listed_items, not_found, readable
from ..errors import ProxyError, to_proxy_error
from ..logs import log_request
from ..middleware import InFlight, caller
from ..openai_formats import OpenAIResponses, TextCompletions
from ..responses import error_response, json_response
from ..sse import SSEResponse
from ..state import ProxyState
from . import spellings
from .llm import LLMRoutes


def routes(state: ProxyState) -> list[Route]:
    flow = LLMRoutes(state)
    responses_fmt = OpenAIResponses(state.router)
    completions_fmt = TextCompletions(state.router)
    store = responses_fmt.store

    async def create(request: Request) -> Response | SSEResponse:
        return await flow.handle(request, "chat", responses_fmt.bind())

    async def completions(request: Request) -> Response | SSEResponse:
        return await flow.handle(request, "chat", completions_fmt.bind())

    async def stored(request: Request) -> Response:
        """``GET`` (the response) or ``DELETE`` (``{"id", "object", "deleted"}``) one response."""
        start = time.perf_counter()
        user: Any = None
        try:
            user = caller(request)
            rid = request.path_params["response_id"]
            # the master key (the proxy's admin) reads every stored response, as it reads every log
            owner = None if user.user_role == "proxy_admin" else user.api_key
            entry = await asyncio.to_thread(store.get, rid)  # may read the log store
            if entry is None or (owner is not None and readable(entry, owner) is None):
                error = not_found(rid)
                raise ProxyError(404, str(error), code="not_found")
            if request.method == "DELETE":
                await asyncio.to_thread(store.delete, rid)
                body: Any = {"id": rid, "object": "response", "deleted": True}
            else:
                body = entry.response
        except Exception as error:
            perr = to_proxy_error(error)
            log_request(
                request.scope, perr.status, None, None, user, time.perf_counter() - start, error=error
            )
            return error_response(perr)
        log_request(request.scope, 200, None, None, user, time.perf_counter() - start)
        return json_response(body)

    async def input_items(request: Request) -> Response:
        """``GET /v1/responses/{id}/input_items``: OpenAI's cursor page (``order`` desc by
        default, ``limit`` 1–100, default 20, ``after`` an item id)."""
        start = time.perf_counter()
        user: Any = None
        try:
            user = caller(request)
            rid = request.path_params["response_id"]
            owner = None if user.user_role == "proxy_admin" else user.api_key
            entry = await asyncio.to_thread(store.get, rid)
            if entry is None or (owner is not None and readable(entry, owner) is None):
                raise ProxyError(404, str(not_found(rid)), code="not_found")
            query = request.query_params
            order = query.get("order", "desc")
            limit = query.get("limit", "20")
            if order not in ("asc", "desc"):
                raise ProxyError(400, "Invalid 'order': expected 'asc' or 'desc'.", param="order")
            if not limit.isdigit() or not 1 <= int(limit) <= 100:
                raise ProxyError(400, "Invalid 'limit': expected an integer from 1 to 100.", param="limit")
            items = listed_items(entry, rid)
            if order == "desc":
                items.reverse()
            after = query.get("after")
            if after:
                ids = [item["id"] for item in items]
                if after not in ids:
                    raise ProxyError(
                        400, f"Invalid 'after': no item {after!r} in this response.", param="after"
                    )
                items = items[ids.index(after) + 1 :]
            page = items[: int(limit)]
            body = {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(items) > len(page),
            }
        except Exception as error:
            perr = to_proxy_error(error)
            log_request(
                request.scope, perr.status, None, None, user, time.perf_counter() - start, error=error
            )
            return error_response(perr)
        log_request(request.scope, 200, None, None, user, time.perf_counter() - start)
        return json_response(body)

    counted = [InFlight.using(state.metrics)]
    out = [Route(p, create, methods=["POST"], middleware=counted) for p in spellings("/responses")]
    out += [Route(p, completions, methods=["POST"], middleware=counted) for p in spellings("/completions")]
    out += [Route(p, stored, methods=["GET", "DELETE"]) for p in spellings("/responses/{response_id}")]
    out += [Route(p, input_items, methods=["GET"]) for p in spellings("/responses/{response_id}/input_items")]
    return out
