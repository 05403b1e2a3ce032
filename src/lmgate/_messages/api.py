"""``anthropic_messages`` / ``aanthropic_messages``: the Anthropic Messages API over any model.

The request is translated to a chat completion (``translate.to_chat``) and made through
``completion`` / ``acompletion`` with the call type ``anthropic_messages``, so it is a call
like any other: callbacks, one terminal event, usage and exact cost, caching rules, retries.
The answer comes back as an Anthropic ``message`` dict; ``stream=True`` gives an iterator of
Anthropic's stream event dicts (closing it ends the call, as closing a chat stream does).

Anthropic's own ``metadata`` (``user_id``) is the request's; lmgate's logging metadata goes in
``litellm_metadata=``, as in the reference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from .events import EventTranslator
from .translate import CALL_TYPE, check_request, passthrough, speaks_messages, to_chat, to_message

_FIELDS = (
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
)


def _prepare(
    max_tokens: int,
    messages: list[dict[str, Any]],
    model: str,
    stream: bool,
    fields: dict[str, Any],
    controls: dict[str, Any],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    request = {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": stream}
    request.update({k: v for k, v in fields.items() if v is not None})
    try:
        check_request(request)
        chat_messages, params = to_chat(request, strict=not speaks_messages({**controls, "model": model}))
    except ValueError as error:
        from ..exceptions import BadRequestError

        raise BadRequestError(str(error), "anthropic_messages", model) from None
    params["_call_type"] = CALL_TYPE
    params["anthropic_passthrough"] = passthrough(request)  # used when the model speaks this API
    return chat_messages, params


def anthropic_messages(
    max_tokens: int,
    messages: list[dict[str, Any]],
    model: str,
    *,
    stream: bool = False,
    system: Any = None,
    stop_sequences: list[str] | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    thinking: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """One Messages API call; ``kwargs`` are lmgate's call controls (``api_key``,
    ``mock_response``, ``litellm_metadata``, …)."""
    from .._call import completion

    fields = {k: v for k, v in locals().items() if k in _FIELDS}
    chat_messages, params = _prepare(max_tokens, messages, model, stream, fields, kwargs)
    result = completion(model=model, messages=chat_messages, stream=stream, **params, **kwargs)
    if stream:
        return _events(result, model)
    return to_message(result, model)


async def aanthropic_messages(
    max_tokens: int,
    messages: list[dict[str, Any]],
    model: str,
    *,
    stream: bool = False,
    system: Any = None,
    stop_sequences: list[str] | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    thinking: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """The async form of ``anthropic_messages``; a stream is an async iterator of events."""
    from .._call import acompletion

    fields = {k: v for k, v in locals().items() if k in _FIELDS}
    chat_messages, params = _prepare(max_tokens, messages, model, stream, fields, kwargs)
    result = await acompletion(model=model, messages=chat_messages, stream=stream, **params, **kwargs)
    if stream:
        return _aevents(result, model)
    return to_message(result, model)


def _events(stream: Any, model: str) -> Iterator[dict[str, Any]]:
    events = EventTranslator(model)
    try:
        for chunk in stream:
            yield from events.feed(chunk)
        yield from events.finish_events()
    finally:
        stream.close()  # a consumer that stops early ends the call (abandoned), once


async def _aevents(stream: Any, model: str) -> AsyncIterator[dict[str, Any]]:
    events = EventTranslator(model)
    try:
        async for chunk in stream:
            for event in events.feed(chunk):
                yield event
        for event in events.finish_events():
            yield event
    finally:
        await stream.aclose()
