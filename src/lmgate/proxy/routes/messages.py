"""The Anthropic Messages API: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``
(also under ``/anthropic``, where Anthropic-SDK clients configured with a path prefix send).

``/v1/messages`` is the LLM request flow of ``llm.py`` with the ``AnthropicMessages`` format
(``formats.py``): checked as Anthropic checks it, the hooks see the request as sent (call type
``anthropic_messages``), the Router gets it translated to chat completions, and the answer,
the stream and every error go back in Anthropic's shapes. ``count_tokens`` estimates (see
``lmgate._messages.translate.estimate_input_tokens``) unless every deployment of the group is
Claude: then the first one's ``/v1/messages/count_tokens`` answers (passed through).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..._messages.translate import estimate_input_tokens, passthrough
from ..auth import check_model
from ..client_body import forwardable
from ..errors import to_proxy_error
from ..formats import AnthropicMessages
from ..logs import log_request
from ..middleware import CountedRoute, caller
from ..responses import JSON, json_response
from ..sse import SSEResponse
from ..state import ProxyState
from .llm import LLMRoutes

_PREFIXES = ("", "/v1", "/anthropic/v1")
COUNT_TIMEOUT_S = 30.0


async def _count_upstream(deployment: Any, data: dict[str, Any], headers: Any) -> Response:
    """Claude counts: the request goes to its ``count_tokens`` as sent (model and key the
    deployment's); its answer, or its error, comes back as it is."""
    from ..._http import async_client, map_transport_error
    from ...providers import resolve

    params = deployment.call_params
    provider, name = resolve(str(params["model"]), params.get("custom_llm_provider"), params.get("api_base"))
    ep = provider.endpoint(name, params.get("api_base"), params.get("api_key"), params.get("api_version"))
    body = {  # what a client may not set (client_body.py) is not sent on either
        k: v
        for k, v in passthrough(forwardable(data), headers)["body"].items()
        if k not in ("max_tokens", "metadata", "timeout")
    }
    req = provider.messages_request(ep, body, passthrough(data, headers)["headers"], False, "count_tokens")  # type: ignore[attr-defined]
    try:
        answer = await async_client().post(
            req.url, content=req.body_bytes(), headers=req.headers, timeout=COUNT_TIMEOUT_S
        )
    except Exception as error:
        raise map_transport_error(error, provider.name, name) from None
    return Response(answer.content, status_code=answer.status_code, media_type=JSON)


def _paths(name: str) -> list[str]:
    return [f"{prefix}{name}{end}" for prefix in _PREFIXES for end in ("", "/")]


def routes(state: ProxyState) -> list[Route]:
    flow = LLMRoutes(state)
    fmt = AnthropicMessages(state.router)

    async def messages(request: Request) -> Response | SSEResponse:
        return await flow.handle(request, "chat", fmt.bind())

    async def count_tokens(request: Request) -> Response:
        start = time.perf_counter()
        model: Any = None
        try:
            user = caller(request)
            data = await flow.read_json(request)
            model = data.get("model")
            # max_tokens is not part of a count request; the check wants one
            fmt.check({**data, "max_tokens": data.get("max_tokens") or 1})
            group = flow.group_for(data)
            if user.models or user.team_models:  # as /v1/messages: a count may go upstream too
                check_model(user, group)
            if fmt.passes_through(group):
                answer = await _count_upstream(state.router.groups[group][0], data, request.headers)
                log_request(request.scope, answer.status_code, model, None, user, time.perf_counter() - start)
                return answer
            fmt.to_chat({**data, "max_tokens": 1})  # refuses what could not be sent
            tokens = estimate_input_tokens(data)
        except Exception as error:
            perr = to_proxy_error(error)
            log_request(
                request.scope,
                perr.status,
                model if isinstance(model, str) else None,
                None,
                None,
                time.perf_counter() - start,
                error=error,
            )
            return fmt.error_response(perr)
        log_request(request.scope, 200, model, None, user, time.perf_counter() - start)
        return json_response({"input_tokens": tokens})

    # count_tokens is not an LLM call: not counted
    return [CountedRoute(path, messages, state.metrics) for path in _paths("/messages")] + [
        Route(path, count_tokens, methods=["POST"]) for path in _paths("/messages/count_tokens")
    ]
