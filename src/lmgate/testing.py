"""Test helpers for users of lmgate (and for lmgate's own tests).

``CapturingLogger`` records every hook call in order, with the arguments it received::

    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    lmgate.completion(model="gpt-4o-mini", messages=[...], mock_response="hi")
    lmgate.flush_callbacks()
    assert capture.hooks() == ["log_pre_api_call", "log_post_api_call", "log_success_event"]

It defines both the sync and the async version of every logging hook, so it records what a
sync call and an async call each deliver. Recording is thread-safe; ``wait_for`` blocks on a
condition (no sleeping) until a number of events have arrived.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ._callbacks.custom_logger import CustomLogger


@dataclass
class HookEvent:
    """One recorded hook call."""

    hook: str
    kwargs: dict[str, Any]
    response_obj: Any = None
    start_time: Any = None
    end_time: Any = None
    thread: str = field(default_factory=lambda: threading.current_thread().name)

    @property
    def call_id(self) -> Any:
        return self.kwargs.get("litellm_call_id")


class CapturingLogger(CustomLogger):
    """Records every logging hook call in order; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events: list[HookEvent] = []
        self._cond = threading.Condition()

    def _record(self, hook: str, kwargs: dict[str, Any], response_obj: Any = None, start: Any = None, end: Any = None) -> None:
        with self._cond:
            self.events.append(HookEvent(hook, kwargs, response_obj, start, end))
            self._cond.notify_all()

    def hooks(self, call_id: str | None = None) -> list[str]:
        """Hook names in order (for one call when ``call_id`` is given)."""
        with self._cond:
            return [e.hook for e in self.events if call_id is None or e.call_id == call_id]

    def of(self, *hooks: str) -> list[HookEvent]:
        with self._cond:
            return [e for e in self.events if e.hook in hooks]

    def wait_for(self, count: int, timeout: float = 10.0, hooks: tuple[str, ...] | None = None) -> bool:
        """Wait until ``count`` events (of ``hooks`` if given) have been recorded."""

        def enough() -> bool:
            return len([e for e in self.events if hooks is None or e.hook in hooks]) >= count

        with self._cond:
            return self._cond.wait_for(enough, timeout)

    def clear(self) -> None:
        with self._cond:
            self.events.clear()

    # sync hooks
    def log_pre_api_call(self, model: Any, messages: Any, kwargs: dict[str, Any]) -> None:
        self._record("log_pre_api_call", kwargs)

    def log_post_api_call(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record("log_post_api_call", kwargs, response_obj, start_time, end_time)

    def log_stream_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record("log_stream_event", kwargs, response_obj, start_time, end_time)

    def log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record("log_success_event", kwargs, response_obj, start_time, end_time)

    def log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record("log_failure_event", kwargs, response_obj, start_time, end_time)

    # async hooks
    async def async_log_pre_api_call(self, model: Any, messages: Any, kwargs: dict[str, Any]) -> None:
        self._record("async_log_pre_api_call", kwargs)

    async def async_log_stream_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record("async_log_stream_event", kwargs, response_obj, start_time, end_time)

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record("async_log_success_event", kwargs, response_obj, start_time, end_time)

    async def async_log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record("async_log_failure_event", kwargs, response_obj, start_time, end_time)


__all__ = ["CapturingLogger", "HookEvent"]
