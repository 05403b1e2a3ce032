"""lmgate: one OpenAI-shaped API over many LLM providers, with callbacks that never lose a record.

    import lmgate
    r = lmgate.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])

Module-level settings read like plain attributes (they are the face of ``lmgate.settings.DEFAULT``,
read at every call), so code written for the reference implementation (``import lmgate as
litellm``) works unchanged::

    lmgate.callbacks = [MyLogger()]           # CustomLogger instances, functions, logger names
    lmgate.success_callback = [fn]            # fn(kwargs, response, start_time, end_time)
    lmgate.failure_callback = [fn]
    lmgate.input_callback = [fn]              # fn(kwargs) before the request is sent
    lmgate.cache = lmgate.Cache()             # response caching
    lmgate.drop_params = True                 # drop parameters a provider cannot take
    lmgate.reset_settings()                   # every setting back to its default

Everything else is imported on first use, so ``import lmgate`` stays fast.
"""

from __future__ import annotations

import sys as _sys
import types as _types
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .settings import DEFAULT as _DEFAULT
from .settings import NAMES as _SETTING_NAMES
from .settings import Settings, reset_settings

# ---- settings users assign (read at every call) ----
# The names below are the compatible face of ``lmgate.settings.DEFAULT``: the module's class
# (set at the end of this file) forwards gets and sets of them to it, so ``lmgate.callbacks = [x]``
# and ``lmgate.callbacks.append(x)`` both change what calls read.
if TYPE_CHECKING:  # pragma: no cover - declarations for type checkers
    callbacks: list[Any]
    input_callback: list[Any]
    success_callback: list[Any]
    failure_callback: list[Any]
    cache: Any
    drop_params: bool
    strict_callbacks: bool
    turn_off_message_logging: bool
    log_raw_request_response: bool
    num_retries: int
    request_timeout: float | None
    retry_policy: Any
    callback_settings: dict[str, Any]
    generic_logger_headers: dict[str, str] | None
    s3_callback_params: dict[str, Any] | None
    client_session: Any
    aclient_session: Any

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "completion": "lmgate._call",
    "acompletion": "lmgate._call",
    "embedding": "lmgate._call",
    "aembedding": "lmgate._call",
    "anthropic_messages": "lmgate._messages.api",
    "aanthropic_messages": "lmgate._messages.api",
    "responses": "lmgate._responses.api",
    "aresponses": "lmgate._responses.api",
    "text_completion": "lmgate._completions",
    "atext_completion": "lmgate._completions",
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
    "Router": "lmgate.router",
    "TextCompletionResponse": "lmgate.types",
    "ImageResponse": "lmgate.types",
    "TranscriptionResponse": "lmgate.types",
}
_EXCEPTIONS = (
    "LmgateError",
    "APIError",
    "BadRequestError",
    "ContextWindowExceededError",
    "ContentPolicyViolationError",
    "UnsupportedParamsError",
    "UnknownModelError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "UnprocessableEntityError",
    "RateLimitError",
    "RouterRateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "APIConnectionError",
    "Timeout",
    "CallbackError",
    "ConfigError",
    # the reference's further exception names (lmgate.exceptions)
    "InvalidRequestError",
    "PaymentRequiredError",
    "UnsupportedEndpointError",
    "BadGatewayError",
    "APIResponseValidationError",
    "JSONSchemaValidationError",
    "OpenAIError",
    "LiteLLMUnknownProvider",
    "BudgetExceededError",
    "MockException",
    "ModelNotMappedError",
)
_LAZY.update(dict.fromkeys(_EXCEPTIONS, "lmgate.exceptions"))

__all__ = sorted([*_LAZY, *_SETTING_NAMES, "Settings", "reset_settings"])


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
    from ._completions import atext_completion, text_completion  # noqa: F401
    from ._flush import aflush_callbacks, callback_stats, flush_callbacks  # noqa: F401
    from ._messages.api import aanthropic_messages, anthropic_messages  # noqa: F401
    from ._responses.api import aresponses, responses  # noqa: F401
    from ._retry import RetryPolicy  # noqa: F401
    from .caching import Cache  # noqa: F401
    from .cost import completion_cost  # noqa: F401
    from .exceptions import *  # noqa: F403
    from .router import Router  # noqa: F401
    from .streaming import CustomStreamWrapper  # noqa: F401
    from .types import *  # noqa: F403


def _forward(name: str) -> property:
    def get(module: Any) -> Any:
        return getattr(_DEFAULT, name)

    def set(module: Any, value: Any) -> None:
        setattr(_DEFAULT, name, value)

    def delete(module: Any) -> None:
        delattr(_DEFAULT, name)

    return property(get, set, delete, f"lmgate.settings.DEFAULT.{name}")


# properties on the module's own class: data descriptors win over the module's __dict__, so the
# setting names always read and write DEFAULT (``from lmgate import callbacks`` too)
_SettingsFace = type(
    "_SettingsFace",
    (_types.ModuleType,),
    {name: _forward(name) for name in _SETTING_NAMES} | {"__slots__": ()},
)
_sys.modules[__name__].__class__ = _SettingsFace
