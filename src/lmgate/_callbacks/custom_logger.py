"""``CustomLogger``: the callback class. Every hook is a no-op; override the ones you need.

Logging hooks (library and proxy) receive ``kwargs`` (your own copy of the call's details),
the response object (a chunk for stream events, ``None`` for pre/post/failure), and the start
and end times as naive local ``datetime`` objects. They run off the caller's path: sync hooks
on lmgate's callback threads, async hooks on lmgate's callback event loop. For a sync call
the sync hook runs (the async one when only that is overridden); for an async call the async
hook runs (the sync one when only that is overridden). Hooks are called with the reference's
keyword arguments (``kwargs=``, ``response_obj=``, ``start_time=``, ``end_time=``; ``model=``,
``messages=``, ``kwargs=`` for ``log_pre_api_call``); a hook whose parameters are named
otherwise (``*args``) is called positionally.

Proxy hooks (``async_pre_call_hook`` …) run inline on the proxy's request path, because they
can change the request and the response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

# environment variables the built-in loggers read, by callback name (get_callback_env_vars)
_CALLBACK_ENV_VARS: dict[str, list[str]] = {
    "generic_api": ["GENERIC_LOGGER_ENDPOINT", "GENERIC_LOGGER_HEADERS"],
    "otel": ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_PROTOCOL"],
    "langfuse": ["LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST"],
    "datadog": ["DD_API_KEY", "DD_SITE"],
    "s3": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION_NAME"],
}
_CALLBACK_ALIASES = {"langfuse_otel": "langfuse", "s3_v2": "s3", "opentelemetry": "otel"}


class CustomLogger:
    """Subclass and override the hooks you need; see ``docs/callbacks.md``."""

    def __init__(
        self,
        turn_off_message_logging: bool = False,
        message_logging: bool = True,
        full_kwargs: bool = True,
        **kwargs: Any,
    ) -> None:
        # per-logger redaction: this logger gets redacted messages and responses, success and failure alike
        self.turn_off_message_logging = turn_off_message_logging or not message_logging
        self.message_logging = not self.turn_off_message_logging
        # kwargs with every value in the dict's own storage, so orjson.dumps(kwargs) writes every
        # key, as code written for the reference expects; costs a payload encoding per call even
        # when unread. False: the larger keys are made on first read (cheaper; orjson misses them)
        self.full_kwargs = full_kwargs
        for key, value in kwargs.items():
            setattr(self, key, value)

    @staticmethod
    def get_callback_env_vars(callback_name: str | None = None) -> list[str]:
        """The environment variables a built-in callback name reads (``[]`` for unknown names)."""
        if callback_name is None:
            return []
        name = callback_name.lower()
        name = _CALLBACK_ALIASES.get(name, name)
        if name in _CALLBACK_ENV_VARS:
            return list(_CALLBACK_ENV_VARS[name])
        import json
        from importlib import resources

        try:
            text = (
                resources.files("lmgate.loggers")
                .joinpath("generic_api_compatible_callbacks.json")
                .read_text()
            )
            preset = json.loads(text).get(name)
        except (OSError, ValueError):
            return []
        return list(preset.get("environment_variables") or []) if isinstance(preset, dict) else []

    # ---- logging hooks: sync ----
    def log_pre_api_call(self, model: Any, messages: Any, kwargs: dict[str, Any]) -> None:
        """Before the request is sent; ``kwargs["additional_args"]["complete_input_dict"]`` is the body."""

    def log_post_api_call(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """After the provider answered; ``kwargs["original_response"]`` is the raw body."""

    def log_stream_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Once per streamed chunk, in order; ``response_obj`` is the chunk."""

    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Once per successful call; for streams ``response_obj`` is the assembled response."""

    def log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Once per failed call; ``kwargs["exception"]`` is the error."""

    # ---- logging hooks: async ----
    async def async_log_pre_api_call(self, model: Any, messages: Any, kwargs: dict[str, Any]) -> None:
        """Async twin of ``log_pre_api_call``."""

    async def async_log_stream_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Async twin of ``log_stream_event``."""

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Async twin of ``log_success_event``."""

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Async twin of ``log_failure_event``."""

    # ---- proxy hooks (run by ``lmgate serve`` on the request path) ----
    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> Any:
        """Return a changed request dict, a string (it becomes the answer), None (unchanged), or raise to reject."""
        return None

    async def async_moderation_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, call_type: str
    ) -> Any:
        """Runs in parallel with the provider call; raise to reject the request."""
        return None

    async def async_post_call_success_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, response: Any
    ) -> Any:
        """After a non-streamed success; return a replacement response or None."""
        return None

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: BaseException,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> Any:
        """After any proxy-side failure; may return or raise an HTTP error to send instead."""
        return None

    async def async_post_call_streaming_hook(self, user_api_key_dict: Any, response: Any) -> Any:
        """Per streamed chunk; return a replacement chunk or None."""
        return None

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: AsyncIterator[Any], request_data: dict[str, Any]
    ) -> AsyncIterator[Any]:
        """Wraps the whole chunk iterator; the default passes chunks through unchanged."""
        async for chunk in response:
            yield chunk

    # ---- delivery control (batch loggers override) ----
    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything this logger holds; True when nothing is left pending."""
        return True

    async def aflush(self, timeout: float | None = None) -> bool:
        """Async ``flush``."""
        import asyncio

        return await asyncio.to_thread(self.flush, timeout)


def overrides(obj: Any, name: str, base: type = CustomLogger) -> bool:
    """True when ``obj`` has its own ``name`` (not ``base``'s): a hook it wants called. A hook set
    on the instance counts too: users' tests patch one with ``patch.object(handler,
    "log_success_event")`` and inspect ``call_args.kwargs``."""
    if name in getattr(obj, "__dict__", ()):
        return True
    method = getattr(type(obj), name, None)
    return method is not None and method is not getattr(base, name, None)
