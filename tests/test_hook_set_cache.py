"""``current_hooks`` keys its cached hook set by the ids of ``lmgate.callbacks``' objects: a
callback the set does not hold (a logger without proxy hooks) may be freed, and a new logger
with hooks given its id, and so the old, empty set. The cache keeps the objects it keys by."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import lmgate
from lmgate.integrations.custom_logger import CustomLogger
from lmgate.proxy.hooks import current_hooks


class Plain(CustomLogger):
    """A logger with no proxy hook."""


class Guard(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: Any, call_type: str) -> Any:
        return "refused"


@pytest.fixture
def saved_callbacks() -> Iterator[None]:
    saved = list(lmgate.callbacks)
    yield
    lmgate.callbacks[:] = saved


def test_a_new_hook_logger_given_a_freed_loggers_id_is_heard(saved_callbacks: None) -> None:
    lmgate.callbacks[:] = [Plain()]
    assert current_hooks().empty
    freed = id(lmgate.callbacks[0])
    lmgate.callbacks.clear()  # the plain logger freed (unless the cache holds it)
    kept = []  # every try stays alive, so each gets a new address
    guard = None
    for _ in range(1000):  # CPython hands a freed block of this size out again at once
        candidate = Guard()
        if id(candidate) == freed:
            guard = candidate
            break
        kept.append(candidate)
    if guard is None:  # the cache kept the plain logger alive: its id was never reused
        guard = Guard()
    lmgate.callbacks[:] = [guard]
    hooks = current_hooks()
    assert not hooks.empty
    assert len(hooks.pre_call) == 1
