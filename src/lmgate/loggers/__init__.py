"""Built-in loggers: the batching base, the generic API (webhook) logger and its Datadog preset,
S3, and OpenTelemetry (with Langfuse).

    from lmgate.loggers import GenericAPILogger
    lmgate.callbacks = [GenericAPILogger(endpoint="https://logs.example.com/ingest")]

Names are imported on first use, so ``import lmgate.loggers`` costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "BatchLogger": "lmgate.loggers.batch",
    "Batch": "lmgate.loggers.exporter",
    "Outcome": "lmgate.loggers.exporter",
    "InMemoryExporter": "lmgate.loggers.exporter",
    "GenericAPILogger": "lmgate.loggers.generic_api",
    "HTTPExporter": "lmgate.loggers.generic_api",
    "LoggerConfigError": "lmgate.loggers._env",
    "Spool": "lmgate.loggers.spool",
    "OpenTelemetryLogger": "lmgate.loggers.otel",
    "DatadogLogger": "lmgate.loggers.datadog",
    "S3Logger": "lmgate.loggers.s3",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'lmgate.loggers' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)


if TYPE_CHECKING:  # pragma: no cover
    from ._env import LoggerConfigError  # noqa: F401
    from .batch import BatchLogger  # noqa: F401
    from .datadog import DatadogLogger  # noqa: F401
    from .exporter import Batch, InMemoryExporter, Outcome  # noqa: F401
    from .generic_api import GenericAPILogger, HTTPExporter  # noqa: F401
    from .otel import OpenTelemetryLogger  # noqa: F401
    from .s3 import S3Logger  # noqa: F401
    from .spool import Spool  # noqa: F401
