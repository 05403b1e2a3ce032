"""OpenAI's other generation APIs on the LLM request flow (``routes/llm.py``), like
``formats.AnthropicMessages``: ``OpenAIResponses`` is ``POST /v1/responses`` and
``TextCompletions`` is ``POST /v1/completions``. The translation itself is the library's
(``lmgate._responses``, ``lmgate._completions``), shared with ``lmgate.responses`` and
``lmgate.text_completion``.

A format object is shared by every request of its route; ``bind()`` gives the request its own
(the Responses API builds its answer from the request as sent: instructions, tools and
metadata echoed, the conversation stored for ``previous_response_id``). Errors keep OpenAI's
shape (``{"error": {...}}``), the proxy's default.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from .._completions import (
    ACALL_TYPE as COMPLETIONS_CALL_TYPE,
)
from .._completions import (
    CompletionsRequestError,
    chunk_to_text,
    speaks_completions,
    to_text_completion,
)
from .._completions import (
    check_request as check_completions,
)
from .._completions import (
    to_chat as completions_to_chat,
)
from .._responses.api import passthrough_body, speaks_responses
from .._responses.events import EventTranslator
from .._responses.log_store import call_id_for
from .._responses.store import ResponseStore, default_store, expand
from .._responses.translate import (
    ACALL_TYPE,
    ResponsesRequestError,
    check_request,
    new_id,
    skeleton,
    to_chat,
    to_response,
)
from .client_body import forwardable
from .errors import ProxyError
from .formats import BridgedFormat
from .nesting import check_nesting
from .responses import error_response
from .sse import Framing


def _event(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


_NOT_PASSED_ON = ("metadata", "timeout")


def _upstream_body(body: dict[str, Any]) -> dict[str, Any]:
    """A body passed through, without the keys a client may not set (``client_body.py``:
    ``api_base``, ``api_key``, ``mock_response``, ``litellm_params``, …), the proxy's stamped
    metadata (``metadata`` is set apart by the caller) nor ``timeout`` (the proxy's to apply)."""
    return forwardable(body, _NOT_PASSED_ON)


def _refused(error: ResponsesRequestError | CompletionsRequestError) -> ProxyError:
    return ProxyError(error.status_code, str(error), param=error.param, code=getattr(error, "code", None))


class ResponsesFraming(Framing):
    """Chat chunks as the Responses API's named events; no ``[DONE]``. The finished response
    is stored at the end, as a non-streamed one is."""

    def __init__(self, request: BoundResponses, raw: bool) -> None:
        self.request = request
        self.events = EventTranslator(request.skeleton(), raw)

    def frame(self, chunk: Any) -> bytes:
        return b"".join(_event(e) for e in self.events.feed(chunk))

    def end(self) -> bytes:
        body = b"".join(_event(e) for e in self.events.finish_events())
        self.request.keep(self.events.result(), self.events.passed_through)
        return body

    def error(self, error: ProxyError) -> bytes:
        return _event(self.events.error_event(error.message, error.code, error.param))


class OpenAIResponses(BridgedFormat):
    """The OpenAI Responses API: passed through to OpenAI deployments, bridged over chat
    completions for every other one."""

    route = "responses"  # the metrics' route label
    call_type = ACALL_TYPE

    def __init__(self, router: Any, store: ResponseStore | None = None) -> None:
        super().__init__(router)
        self.store = store or default_store()

    def speaks(self, call_params: Any) -> bool:
        return speaks_responses(call_params)

    def bind(self) -> BoundResponses:
        return BoundResponses(self)

    def error_response(self, error: ProxyError) -> Response:
        return error_response(error)


class BoundResponses:
    """One ``/v1/responses`` request's view of the format."""

    route = OpenAIResponses.route
    call_type = OpenAIResponses.call_type

    def __init__(self, fmt: OpenAIResponses) -> None:
        self.fmt = fmt
        self.data: dict[str, Any] = {}  # the request as the hooks left it (what the answer echoes)
        self.metadata: dict[str, Any] = {}  # the client's own metadata (the proxy stamps its own)
        self.conversation: list[dict[str, Any]] = []
        self.sent: dict[str, Any] = {}  # the request with previous_response_id resolved
        self.owner: Any = None
        self.response_id = new_id("resp")

    def check(self, data: dict[str, Any]) -> None:
        check_nesting(data)  # as for chat: a body nested too deep is refused before anything walks it
        try:
            check_request(data, self.fmt.strict(data))
        except ResponsesRequestError as error:
            raise _refused(error) from None

    def to_chat(self, data: dict[str, Any]) -> dict[str, Any]:
        """The chat request: translated fields, the proxy's stamped ``metadata`` kept."""
        self.check(data)  # again: a pre-call hook may have changed the request
        stamped = data.get("metadata") or {}
        self.metadata = dict(stamped.get("requester_metadata") or {})
        self.owner = stamped.get("user_api_key_hash")
        self.data = dict(data, metadata=self.metadata)
        strict = self.fmt.strict(data)
        try:
            self.sent, self.conversation = expand(self.data, self.fmt.store, not strict, self.owner)
            messages, params = to_chat(self.sent, strict)
        except ResponsesRequestError as error:
            raise _refused(error) from None
        chat = {"model": data["model"], "messages": messages, "stream": bool(data.get("stream")), **params}
        chat["metadata"] = data.get("metadata")
        return chat

    def extra(self, data: dict[str, Any], headers: Any) -> dict[str, Any]:
        """Call arguments the proxy adds: the request to pass through to an OpenAI deployment
        (``to_chat``, which the flow calls first, resolved its ``previous_response_id``)."""
        body = _upstream_body(passthrough_body(self.sent))
        if self.metadata:
            body["metadata"] = self.metadata
        extra: dict[str, Any] = {"openai_passthrough": {"api": "responses", "body": body}}
        if self.data.get("store") is not False:  # the call's id is the response's: its log record is findable
            extra["litellm_call_id"] = call_id_for(self.response_id)
        return extra

    def skeleton(self) -> dict[str, Any]:
        return skeleton(self.data, self.response_id, str(self.data.get("model")), self.metadata)

    def respond(self, result: Any, model: str, raw: bool = True) -> dict[str, Any]:
        response = to_response(result, self.data, self.response_id, model, self.metadata, raw)
        self.keep(response, getattr(result, "_passthrough_body", None) is not None)
        return response

    def keep(self, response: dict[str, Any] | None, upstream: bool) -> None:
        if response is not None and self.data.get("store") is not False:
            self.fmt.store.put(response, self.conversation, upstream, owner=self.owner)

    def framing(self, model: str, raw: bool = True) -> Framing:
        return ResponsesFraming(self, raw)

    def error_response(self, error: ProxyError) -> Response:
        return error_response(error)


class TextCompletionFraming(Framing):
    """Chat chunks as ``text_completion`` chunks, ``data:`` lines ending in ``[DONE]``."""

    def __init__(self, model: str, raw: bool) -> None:
        self.model = model
        self.raw = raw

    def frame(self, chunk: Any) -> bytes:
        return b"data: " + orjson.dumps(chunk_to_text(chunk, self.model, self.raw)) + b"\n\n"


class TextCompletions(BridgedFormat):
    """Legacy text completions: passed through to OpenAI deployments (and servers reached
    through the ``openai/`` prefix), the prompt bridged as one user message for the others."""

    route = "completions"
    call_type = COMPLETIONS_CALL_TYPE

    def speaks(self, call_params: Any) -> bool:
        return speaks_completions(call_params)

    def check(self, data: dict[str, Any]) -> None:
        check_nesting(data)
        try:
            check_completions(data, self.strict(data))
        except CompletionsRequestError as error:
            raise _refused(error) from None

    def to_chat(self, data: dict[str, Any]) -> dict[str, Any]:
        self.check(data)
        messages, params = completions_to_chat(data)
        chat = {"model": data["model"], "messages": messages, "stream": bool(data.get("stream")), **params}
        chat["metadata"] = data.get("metadata")
        return chat

    def extra(self, data: dict[str, Any], headers: Any) -> dict[str, Any]:
        body = _upstream_body({k: v for k, v in data.items() if k != "stream"})
        return {"openai_passthrough": {"api": "completions", "body": body}}

    def respond(self, result: Any, model: str, raw: bool = True) -> Any:
        return to_text_completion(result, model, raw)

    def framing(self, model: str, raw: bool = True) -> Framing:
        return TextCompletionFraming(model, raw)

    def bind(self) -> TextCompletions:
        return self  # nothing per request

    def error_response(self, error: ProxyError) -> Response:
        return error_response(error)


__all__ = ["OpenAIResponses", "TextCompletions"]
