"""The proxy-only ``CustomLogger`` hooks, run inline on the request path.

They run for every ``CustomLogger`` in ``lmgate.callbacks``, and only for hooks its class
overrides (a logger that overrides none costs nothing per request):

* ``async_pre_call_hook(user_api_key_dict, cache, data, call_type)`` — in list order; a dict
  replaces the request, a string becomes the answer, ``None`` leaves it, raising rejects it;
* ``async_moderation_hook(data, user_api_key_dict, call_type)`` — all at once, while the
  provider call runs; one raising fails the request;
* ``async_post_call_success_hook(data, user_api_key_dict, response)`` — in list order after a
  non-streamed success; a return value replaces the response;
* ``async_post_call_failure_hook(request_data, original_exception, user_api_key_dict,
  traceback_str)`` — after any failure past auth; the first HTTPException-like object
  returned or raised replaces the client's error;
* ``async_post_call_streaming_iterator_hook(user_api_key_dict, response, request_data)`` —
  wraps the chunk iterator (one wrapper per logger, in list order);
* ``async_post_call_streaming_hook(user_api_key_dict, response)`` — per chunk; a return
  value replaces the chunk.

``user_api_key_dict`` is the caller's ``UserAPIKeyAuth`` (``auth.py``): it carries the SHA-256 of
the caller's key, never the key.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any

from .._callbacks.custom_logger import CustomLogger, overrides
from ..settings import DEFAULT
from .auth import UserAPIKeyAuth, hash_key  # the identity hooks receive: kept importable from here
from .errors import is_http_exception

logger = logging.getLogger("lmgate.proxy")

HOOK_NAMES = (
    "async_pre_call_hook",
    "async_moderation_hook",
    "async_post_call_success_hook",
    "async_post_call_failure_hook",
    "async_post_call_streaming_hook",
    "async_post_call_streaming_iterator_hook",
)


class HookCache:
    """A small in-memory key/value store with TTLs, handed to hooks as ``cache``.

    It has the method names hooks written for the reference's ``DualCache`` call.
    """

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._data: dict[str, tuple[Any, float | None]] = {}
        self._clock = clock

    def get_cache(self, key: str, **_: Any) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and self._clock() >= expires:
            self._data.pop(key, None)
            return None
        return value

    def set_cache(self, key: str, value: Any, ttl: float | None = None, **_: Any) -> None:
        self._data[key] = (value, None if ttl is None else self._clock() + float(ttl))

    def delete_cache(self, key: str) -> None:
        self._data.pop(key, None)

    def increment_cache(self, key: str, value: float, ttl: float | None = None, **_: Any) -> Any:
        total = (self.get_cache(key) or 0) + value
        self.set_cache(key, total, ttl)
        return total

    async def async_get_cache(self, key: str, **kw: Any) -> Any:
        return self.get_cache(key, **kw)

    async def async_set_cache(self, key: str, value: Any, ttl: float | None = None, **kw: Any) -> None:
        self.set_cache(key, value, ttl)

    async def async_increment_cache(self, key: str, value: float, ttl: float | None = None, **kw: Any) -> Any:
        return self.increment_cache(key, value, ttl)

    async def async_delete_cache(self, key: str) -> None:
        self.delete_cache(key)


class HookSet:
    """The overriding hooks of the current ``lmgate.callbacks``, by hook name."""

    __slots__ = (
        "pre_call",
        "moderation",
        "post_success",
        "post_failure",
        "stream_chunk",
        "stream_iterator",
        "empty",
    )

    def __init__(self, callbacks: list[Any]) -> None:
        loggers = [c for c in callbacks if isinstance(c, CustomLogger)]

        def bound(name: str) -> tuple[Any, ...]:
            return tuple(getattr(c, name) for c in loggers if overrides(c, name))

        self.pre_call = bound("async_pre_call_hook")
        self.moderation = bound("async_moderation_hook")
        self.post_success = bound("async_post_call_success_hook")
        self.post_failure = bound("async_post_call_failure_hook")
        self.stream_chunk = bound("async_post_call_streaming_hook")
        self.stream_iterator = bound("async_post_call_streaming_iterator_hook")
        self.empty = not (
            self.pre_call
            or self.moderation
            or self.post_success
            or self.post_failure
            or self.stream_chunk
            or self.stream_iterator
        )


# (ids of the callbacks, their hook set, the callbacks themselves): the set holds only the
# loggers with hooks; the cache holds every object it keys by, so no id is reused while cached
_cached: tuple[tuple[int, ...], HookSet, tuple[Any, ...]] | None = None


def current_hooks() -> HookSet:
    """The hooks of ``lmgate.callbacks`` as it is now (rebuilt only when the list changes)."""
    global _cached
    # ``lmgate.callbacks`` is ``DEFAULT.callbacks`` (the package's names are its face): read here
    # without an ``import lmgate`` statement and the module's property, once a request (issue 18)
    listed = DEFAULT.callbacks
    cached = _cached
    if cached is not None and (cached[0] == tuple(map(id, listed)) if listed else not cached[0]):
        return cached[1]
    callbacks = tuple(listed)
    hooks = HookSet(list(callbacks))
    _cached = (tuple(id(c) for c in callbacks), hooks, callbacks)
    return hooks


class Answer:
    """A pre-call hook answered the request itself with this text."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


async def run_pre_call(
    hooks: HookSet, user: UserAPIKeyAuth, cache: HookCache, data: dict[str, Any], call_type: str
) -> dict[str, Any] | Answer:
    """Run the pre-call hooks in order; the (possibly replaced) request, or the hook's answer."""
    for hook in hooks.pre_call:
        result = await hook(user, cache, data, call_type)
        if result is None:
            continue
        if isinstance(result, str):
            return Answer(result)
        if isinstance(result, dict):
            data = result
            continue
        raise TypeError(f"{_name(hook)} returned {type(result).__name__}; expected a dict, a str or None")
    return data


async def run_moderation(hooks: HookSet, data: dict[str, Any], user: UserAPIKeyAuth, call_type: str) -> None:
    """Run every moderation hook concurrently; re-raise the first error."""
    if len(hooks.moderation) == 1:
        await hooks.moderation[0](data, user, call_type)
        return
    results = await asyncio.gather(
        *(h(data, user, call_type) for h in hooks.moderation), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def run_post_success(hooks: HookSet, data: dict[str, Any], user: UserAPIKeyAuth, response: Any) -> Any:
    for hook in hooks.post_success:
        result = await hook(data, user, response)
        if result is not None:
            response = result
    return response


async def run_post_failure(
    hooks: HookSet, data: dict[str, Any], error: BaseException, user: UserAPIKeyAuth
) -> BaseException | None:
    """Run the failure hooks; the first HTTPException-like result (returned or raised) wins."""
    tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    replacement: BaseException | None = None
    for hook in hooks.post_failure:
        try:
            result = await hook(data, error, user, tb)
        except Exception as raised:
            if replacement is None and is_http_exception(raised):
                replacement = raised
            elif not is_http_exception(raised):
                logger.error("%s raised %s: %s (ignored)", _name(hook), type(raised).__name__, raised)
            continue
        if replacement is None and isinstance(result, BaseException) and is_http_exception(result):
            replacement = result
    return replacement


def wrap_stream(
    hooks: HookSet, user: UserAPIKeyAuth, stream: AsyncIterator[Any], data: dict[str, Any]
) -> AsyncIterator[Any]:
    """The chunk iterator the client gets: the iterator hooks' chain, then the per-chunk hooks."""
    iterator: AsyncIterator[Any] = stream
    for hook in hooks.stream_iterator:
        iterator = hook(user, iterator, data)
    if hooks.stream_chunk:
        iterator = _per_chunk(hooks.stream_chunk, user, iterator)
    return iterator


async def _per_chunk(
    chunk_hooks: tuple[Any, ...], user: UserAPIKeyAuth, iterator: AsyncIterator[Any]
) -> AsyncIterator[Any]:
    try:
        async for chunk in iterator:
            for hook in chunk_hooks:
                result = await hook(user, chunk)
                if result is not None:
                    chunk = result
            yield chunk
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


def _name(hook: Any) -> str:
    owner = getattr(hook, "__self__", None)
    return (
        f"{type(owner).__name__}.{hook.__name__}"
        if owner is not None
        else getattr(hook, "__name__", repr(hook))
    )


__all__ = [
    "Answer",
    "HookCache",
    "HookSet",
    "UserAPIKeyAuth",
    "current_hooks",
    "hash_key",
    "run_moderation",
    "run_post_failure",
    "run_post_success",
    "run_pre_call",
    "wrap_stream",
]
