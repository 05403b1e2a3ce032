"""lmgate: one OpenAI-shaped API over many LLM providers, with callbacks that never lose a record.

    import lmgate
    r = lmgate.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])

Module-level settings are plain attributes, read at every call, so code written for the
reference implementation (``import lmgate as litellm``) works unchanged::

    lmgate.callbacks = [MyLogger()]           # CustomLogger instances, functions, logger names
    lmgate.success_callback = [fn]            # fn(kwargs, response, start_time, end_time)
    lmgate.failure_callback = [fn]
    lmgate.input_callback = [fn]              # fn(kwargs) before the request is sent
    lmgate.cache = lmgate.Cache()             # response caching
    lmgate.drop_params = True                 # drop parameters a provider cannot take

Everything else is imported on first use, so ``import lmgate`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# ---- settings users assign (read at every call) ----
callbacks: list[Any] = []
input_callback: list[Any] = []
success_callback: list[Any] = []
failure_callback: list[Any] = []
cache: Any = None
drop_params: bool = False
strict_callbacks: bool = False
turn_off_message_logging: bool = False
num_retries: int = 0
request_timeout: float | None = None
retry_policy: Any = None
callback_settings: dict[str, Any] = {}
generic_logger_headers: dict[str, str] | None = None
client_session: Any = None  # an httpx.Client to use instead of lmgate's pooled one
aclient_session: Any = None  # an httpx.AsyncClient (bound to one event loop) for async calls

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "completion": "lmgate._call",
    "acompletion": "lmgate._call",
    "embedding": "lmgate._call",
    "aembedding": "lmgate._call",
    "completion_cost": "lmgate.cost",
    "CustomLogger": "lmgate._callbacks.custom_logger",
    "CustomStreamWrapper": "lmgate.streaming",
    "RetryPolicy": "lmgate._retry",
    "Cache": "lmgate.caching",
    "flush_callbacks": "lmgate._flush",
    "aflush_callbacks": "lmgate._flush",
    "callback_stats": "lmgate._flush",
    "ModelResponse": "lmgate.types",
    "ModelResponseStream": "lmgate.types",
    "EmbeddingResponse": "lmgate.types",
    "Usage": "lmgate.types",
    "Message": "lmgate.types",
    "Choices": "lmgate.types",
    "StreamingChoices": "lmgate.types",
    "Delta": "lmgate.types",
    "Function": "lmgate.types",
    "ChatCompletionMessageToolCall": "lmgate.types",
}
_EXCEPTIONS = (
    "LmgateError",
    "APIError",
    "BadRequestError",
    "ContextWindowExceededError",
    "UnsupportedParamsError",
    "UnknownModelError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "APIConnectionError",
    "Timeout",
    "CallbackError",
)
_LAZY.update(dict.fromkeys(_EXCEPTIONS, "lmgate.exceptions"))

__all__ = sorted(
    [
        *_LAZY,
        "callbacks",
        "input_callback",
        "success_callback",
        "failure_callback",
        "cache",
        "drop_params",
        "strict_callbacks",
        "turn_off_message_logging",
        "num_retries",
        "request_timeout",
        "retry_policy",
        "callback_settings",
        "generic_logger_headers",
        "client_session",
        "aclient_session",
    ]
)


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'lmgate' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    # ruff: noqa: F401
    from ._call import acompletion, aembedding, completion, embedding  # noqa: F401
    from ._callbacks.custom_logger import CustomLogger
    from ._flush import aflush_callbacks, callback_stats, flush_callbacks  # noqa: F401
    from ._retry import RetryPolicy  # noqa: F401
    from .caching import Cache  # noqa: F401
    from .cost import completion_cost  # noqa: F401
    from .exceptions import *  # noqa: F403
    from .streaming import CustomStreamWrapper  # noqa: F401
    from .types import *  # noqa: F403
