"""``responses`` / ``aresponses``: the OpenAI Responses API over any model.

The request is translated to a chat completion (``translate.to_chat``) and made through
``completion`` / ``acompletion`` with the call type ``responses`` / ``aresponses``, so it is a
call like any other: callbacks, one terminal event, usage and exact cost, retries. An OpenAI
model gets the request as it was sent (``openai_passthrough``); every other one the chat
translation. The answer is a Responses ``response`` dict; ``stream=True`` gives an iterator of
the API's event dicts (closing it ends the call, as closing a chat stream does).

The Responses API's own ``metadata`` is the request's (echoed on the response); lmgate's
logging metadata goes in ``litellm_metadata=``, as in the reference. ``store`` (default True)
keeps the response in this process's store (``store.py``) for ``previous_response_id``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from .events import EventTranslator
from .log_store import call_id_for
from .store import ResponseStore, default_store, expand
from .translate import (
    ACALL_TYPE,
    CALL_TYPE,
    ResponsesRequestError,
    check_request,
    new_id,
    skeleton,
    to_chat,
    to_response,
)

_FIELDS = (
    "include",
    "instructions",
    "max_output_tokens",
    "metadata",
    "parallel_tool_calls",
    "previous_response_id",
    "reasoning",
    "store",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
    "truncation",
    "user",
)


def speaks_responses(call_params: Any) -> bool:
    """Whether a call with these parameters reaches a provider that takes the Responses API
    as it is (``passthrough_apis``: OpenAI's own), so the request is passed through."""
    return speaks_api(call_params, "responses")


def speaks_api(call_params: Any, api: str) -> bool:
    from ..providers import resolve

    if call_params.get("mock_response") is not None:
        return False
    try:
        provider, _ = resolve(
            str(call_params.get("model") or ""),
            call_params.get("custom_llm_provider"),
            call_params.get("api_base") or call_params.get("base_url"),
        )
    except Exception:
        return False
    return api in getattr(provider, "passthrough_apis", ())


def passthrough_body(data: dict[str, Any]) -> dict[str, Any]:
    """The body an OpenAI deployment gets: the request as sent (``previous_response_id``
    resolved where lmgate holds the conversation), the stream flag the call's."""
    return {k: v for k, v in data.items() if k != "stream"}


class Prepared:
    """One request made ready: the chat call's arguments, and what the answer is built from."""

    def __init__(
        self,
        data: dict[str, Any],
        passes: bool,
        store: ResponseStore,
        is_async: bool,
        controls: dict[str, Any],
    ) -> None:
        try:
            check_request(data, strict=not passes)
            sent, self.conversation = expand(data, store, passes)
            self.messages, self.params = to_chat(sent, strict=not passes)
        except ResponsesRequestError as error:
            from ..exceptions import BadRequestError, NotFoundError

            cls = NotFoundError if error.status_code == 404 else BadRequestError
            raise cls(str(error), "responses", str(data.get("model"))) from None
        self.data = data
        self.store = store
        self.params["_call_type"] = ACALL_TYPE if is_async else CALL_TYPE
        self.params["openai_passthrough"] = {"api": "responses", "body": passthrough_body(sent)}
        self.response_id = new_id("resp")
        # the call's id is the response's (log_store.call_id_for), unless it is not to be stored
        if "litellm_call_id" not in controls and data.get("store") is not False:
            self.params["litellm_call_id"] = call_id_for(self.response_id)

    def respond(self, result: Any) -> dict[str, Any]:
        response = to_response(result, self.data, self.response_id, str(self.data["model"]))
        self.keep(response, getattr(result, "_passthrough_body", None) is not None)
        return response

    def events(self) -> EventTranslator:
        return EventTranslator(skeleton(self.data, self.response_id, str(self.data["model"])))

    def keep(self, response: dict[str, Any] | None, upstream: bool) -> None:
        if response is not None and self.data.get("store") is not False:
            self.store.put(response, self.conversation, upstream)


def _prepare(
    input: Any, model: str, stream: bool, fields: dict[str, Any], controls: dict[str, Any], is_async: bool
) -> Prepared:
    data: dict[str, Any] = {"model": model, "input": input}
    data.update({k: v for k, v in fields.items() if v is not None})
    if stream:
        data["stream"] = True
    store = controls.pop("responses_store", None) or default_store()
    return Prepared(data, speaks_responses({**controls, "model": model}), store, is_async, controls)


def responses(
    input: Any,
    model: str,
    *,
    include: list[str] | None = None,
    instructions: str | None = None,
    max_output_tokens: int | None = None,
    metadata: dict[str, Any] | None = None,
    parallel_tool_calls: bool | None = None,
    previous_response_id: str | None = None,
    reasoning: dict[str, Any] | None = None,
    store: bool | None = None,
    stream: bool | None = None,
    temperature: float | None = None,
    text: dict[str, Any] | None = None,
    tool_choice: Any = None,
    tools: list[dict[str, Any]] | None = None,
    top_p: float | None = None,
    truncation: str | None = None,
    user: str | None = None,
    **kwargs: Any,
) -> Any:
    """One Responses API call; ``kwargs`` are lmgate's call controls (``api_key``,
    ``mock_response``, ``litellm_metadata``, …)."""
    from .._call import completion

    fields = {k: v for k, v in locals().items() if k in _FIELDS}
    prepared = _prepare(input, model, bool(stream), fields, kwargs, False)
    result = completion(
        model=model, messages=prepared.messages, stream=bool(stream), **prepared.params, **kwargs
    )
    if stream:
        return _events(result, prepared)
    return prepared.respond(result)


async def aresponses(
    input: Any,
    model: str,
    *,
    include: list[str] | None = None,
    instructions: str | None = None,
    max_output_tokens: int | None = None,
    metadata: dict[str, Any] | None = None,
    parallel_tool_calls: bool | None = None,
    previous_response_id: str | None = None,
    reasoning: dict[str, Any] | None = None,
    store: bool | None = None,
    stream: bool | None = None,
    temperature: float | None = None,
    text: dict[str, Any] | None = None,
    tool_choice: Any = None,
    tools: list[dict[str, Any]] | None = None,
    top_p: float | None = None,
    truncation: str | None = None,
    user: str | None = None,
    **kwargs: Any,
) -> Any:
    """The async form of ``responses``; a stream is an async iterator of events."""
    from .._call import acompletion

    fields = {k: v for k, v in locals().items() if k in _FIELDS}
    prepared = _prepare(input, model, bool(stream), fields, kwargs, True)
    result = await acompletion(
        model=model, messages=prepared.messages, stream=bool(stream), **prepared.params, **kwargs
    )
    if stream:
        return _aevents(result, prepared)
    return prepared.respond(result)


def _events(stream: Any, prepared: Prepared) -> Iterator[dict[str, Any]]:
    events = prepared.events()
    try:
        for chunk in stream:
            yield from events.feed(chunk)
        yield from events.finish_events()
        prepared.keep(events.result(), events.passed_through)
    finally:
        stream.close()  # a consumer that stops early ends the call (abandoned), once


async def _aevents(stream: Any, prepared: Prepared) -> AsyncIterator[dict[str, Any]]:
    events = prepared.events()
    try:
        async for chunk in stream:
            for event in events.feed(chunk):
                yield event
        for event in events.finish_events():
            yield event
        prepared.keep(events.result(), events.passed_through)
    finally:
        await stream.aclose()
