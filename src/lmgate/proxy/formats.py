"""The request formats the LLM routes speak besides chat completions: each says how a request
is checked and turned into a chat request, how the answer, the stream and errors look.

``AnthropicMessages`` is ``POST /v1/messages``: the translation itself is the library's
(``lmgate._messages``), shared with ``lmgate.anthropic_messages``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from .._messages.events import EventTranslator
from .._messages.translate import (
    CALL_TYPE,
    MessagesRequestError,
    check_request,
    error_body,
    passthrough,
    speaks_messages,
    to_chat,
    to_message,
)
from .client_body import forwardable
from .errors import ProxyError
from .nesting import check_nesting
from .responses import JSON
from .sse import Framing


def _event(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


class AnthropicFraming(Framing):
    """Chat chunks re-framed as Anthropic's named events; no ``[DONE]``."""

    def __init__(self, model: str, raw: bool = True) -> None:
        self.events = EventTranslator(model, raw)

    def frame(self, chunk: Any) -> bytes:
        return b"".join(_event(e) for e in self.events.feed(chunk))

    def end(self) -> bytes:
        return b"".join(_event(e) for e in self.events.finish_events())

    def error(self, error: ProxyError) -> bytes:
        return _event(error_body(error.status, error.message))


class BridgedFormat:
    """What every API served over chat completions shares: whether a model group's requests
    are passed through (every deployment it may reach speaks the API, ``speaks``)."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self._passes: dict[str, bool] = {}

    def speaks(self, call_params: Any) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def bind(self) -> Any:  # pragma: no cover - interface
        """The format for one request (one that keeps per-request state returns a new object)."""
        raise NotImplementedError

    def passes_through(self, group: str) -> bool:
        """Whether every deployment a request to ``group`` may reach (its own and its fallback
        groups') takes the API as it is: then the request need not be translatable."""
        known = self._passes.get(group)
        if known is None:
            groups, todo = set(), [group]
            fallbacks = self.router.fallbacks
            tables = (fallbacks.general, fallbacks.context_window, fallbacks.content_policy)
            while todo:
                g = todo.pop()
                if g in groups:
                    continue
                groups.add(g)
                for table in tables:
                    todo += table.get(g, []) + table.get("*", [])
            deployments = [d for g in groups for d in self.router.groups.get(g, ())]
            known = bool(deployments) and all(self.speaks(d.call_params) for d in deployments)
            self._passes[group] = known
        return known

    def strict(self, data: dict[str, Any]) -> bool:
        """Whether the request must be translatable: some deployment it may reach does not
        speak the API."""
        group = data.get("model")
        return not (isinstance(group, str) and group in self.router.groups and self.passes_through(group))


class AnthropicMessages(BridgedFormat):
    """The Anthropic Messages API, translated over chat completions."""

    route = "messages"  # the metrics' route label
    call_type = CALL_TYPE

    def speaks(self, call_params: Any) -> bool:
        return speaks_messages(call_params)

    def bind(self) -> AnthropicMessages:
        return self  # nothing per request

    def check(self, data: dict[str, Any]) -> None:
        check_nesting(data)  # as for chat: a body nested too deep is refused before anything walks it
        try:
            check_request(data, self.strict(data))
        except MessagesRequestError as error:
            raise ProxyError(400, str(error), param=error.param) from None

    def to_chat(self, data: dict[str, Any]) -> dict[str, Any]:
        """The chat request: translated fields, the proxy's stamped ``metadata`` kept."""
        self.check(data)  # again: a pre-call hook may have changed the request
        try:
            messages, params = to_chat(data, self.strict(data))
        except MessagesRequestError as error:
            raise ProxyError(400, str(error), param=error.param) from None
        chat = {"model": data["model"], "messages": messages, "stream": bool(data.get("stream")), **params}
        chat["metadata"] = data.get("metadata")
        return chat

    def extra(self, data: dict[str, Any], headers: Any) -> dict[str, Any]:
        """Call arguments the proxy adds: the request to pass through to a Claude deployment."""
        return {"anthropic_passthrough": passthrough(forwardable(data, ("timeout",)), headers)}

    def respond(self, result: Any, model: str, raw: bool = True) -> dict[str, Any]:
        return to_message(result, model, raw)

    def framing(self, model: str, raw: bool = True) -> Framing:
        return AnthropicFraming(model, raw)

    def error_response(self, error: ProxyError) -> Response:
        status = error.status
        if error.code == "model_not_found":  # Anthropic answers an unknown model with a 404
            status = 404
        body = orjson.dumps(error_body(status, error.message))
        return Response(body, status_code=status, headers=error.headers or None, media_type=JSON)


__all__ = ["AnthropicFraming", "AnthropicMessages", "BridgedFormat"]
