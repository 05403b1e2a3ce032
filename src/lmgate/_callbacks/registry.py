"""Names in the callback lists (``"generic_api"``, a ``callback_settings`` name, a preset)
become logger instances here, once per name and settings.

A name resolves with the call's ``Settings`` (a Router's ``callback_settings`` and
``generic_logger_headers``, else the module's): instances are cached per (settings, name),
keyed by ``Settings.named_callbacks_owner()`` — the nearest settings that set either — weakly,
so a Router's loggers go with it. ``lmgate.reset_settings()`` forgets (closes) them all.

Built-in loggers live in ``lmgate.loggers``; they are imported only when a name asks for them.
A resolver is ``"module:function"``: the function takes the name and the settings and returns
a logger, or None when the name is not its own.
"""

from __future__ import annotations

import importlib
import threading
import weakref
from typing import Any

from ..settings import DEFAULT, Settings, on_reset

# tried in order; each returns a CustomLogger for names it knows, else None
NAMED_RESOLVERS: list[str] = [
    "lmgate.loggers.otel:logger_for_name",
    "lmgate.loggers.datadog:logger_for_name",
    "lmgate.loggers.s3:logger_for_name",
    "lmgate.loggers.prometheus:logger_for_name",
    "lmgate.loggers.store:logger_for_name",
    "lmgate.loggers.generic_api:logger_for_name",
]
# the names the built-in resolvers answer to (besides callback_settings entries and presets)
BUILT_IN_NAMES = (
    "otel",
    "opentelemetry",
    "langfuse",
    "langfuse_otel",
    "datadog",
    "s3",
    "prometheus",
    "store",
    "generic_api",
)

# owner settings -> name -> logger
_instances: weakref.WeakKeyDictionary[Settings, dict[str, Any]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def resolve_callback(name: str, settings: Settings | None = None) -> Any:
    """The logger instance for a callback name under ``settings`` (default: the module's); the
    same instance every time for the same configuration."""
    owner = (settings or DEFAULT).named_callbacks_owner()
    instance = _instances.get(owner, {}).get(name)
    if instance is not None:
        return instance
    with _lock:
        named = _instances.setdefault(owner, {})
        instance = named.get(name)
        if instance is not None:
            return instance
        for spec in NAMED_RESOLVERS:
            module_name, _, func_name = spec.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as error:
                if error.name != module_name:
                    raise
                continue
            instance = getattr(module, func_name)(name, owner)
            if instance is not None:
                named[name] = instance
                return instance
    raise ValueError(f"unknown callback name {name!r}: {known_names_hint()}")


def known_names_hint() -> str:
    from ..loggers.presets import load_presets

    return (
        f"built in: {', '.join(BUILT_IN_NAMES)}; generic_api presets: {', '.join(sorted(load_presets()))}; "
        "or a name from callback_settings with callback_type: generic_api (any HTTP endpoint, "
        "docs/loggers.md), or a dotted path to your own CustomLogger instance"
    )


def forget_named_callbacks(close_timeout: float | None = 5.0) -> None:
    """Drop cached instances, closing them (flushing what they hold): after configuration changes, and in tests."""
    with _lock:
        instances = [instance for named in _instances.values() for instance in named.values()]
        _instances.clear()
    for instance in instances:
        close = getattr(instance, "close", None)
        if callable(close):
            close(close_timeout)


on_reset(forget_named_callbacks)
