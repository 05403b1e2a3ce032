"""The Anthropic Messages API: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``
(also under ``/anthropic``, where Anthropic-SDK clients configured with a path prefix send).

``/v1/messages`` is the LLM request flow of ``llm.py`` with the ``AnthropicMessages`` format
(``formats.py``): checked as Anthropic checks it, the hooks see the request as sent (call type
``anthropic_messages``), the Router gets it translated to chat completions, and the answer,
the stream and every error go back in Anthropic's shapes. ``count_tokens`` estimates (see
``lmgate._messages.translate.estimate_input_tokens``).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..._messages.translate import estimate_input_tokens
from ..errors import to_proxy_error
from ..formats import AnthropicMessages
from ..logs import log_request
from ..middleware import InFlight, caller
from ..responses import json_response
from ..sse import SSEResponse
from ..state import ProxyState
from .llm import LLMRoutes

_PREFIXES = ("", "/v1", "/anthropic/v1")


def _paths(name: str) -> list[str]:
    return [f"{prefix}{name}{end}" for prefix in _PREFIXES for end in ("", "/")]


def routes(state: ProxyState) -> list[Route]:
    flow = LLMRoutes(state)
    fmt = AnthropicMessages(state.router)

    async def messages(request: Request) -> Response | SSEResponse:
        return await flow.handle(request, "chat", fmt)

    async def count_tokens(request: Request) -> Response:
        start = time.perf_counter()
        model: Any = None
        try:
            user = caller(request)
            data = await flow.read_json(request)
            model = data.get("model")
            # max_tokens is not part of a count request; the check wants one
            fmt.check({**data, "max_tokens": data.get("max_tokens") or 1})
            flow.group_for(data)
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

    counted = [InFlight.using(state.metrics)]
    return [Route(path, messages, methods=["POST"], middleware=counted) for path in _paths("/messages")] + [
        Route(path, count_tokens, methods=["POST"]) for path in _paths("/messages/count_tokens")
    ]
