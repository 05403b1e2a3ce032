"""``prometheus`` in a callback list: accepted, and does nothing, because the proxy already serves
its metrics at ``/metrics`` (``docs/proxy.md``). A config written for the reference keeps working;
the startup log says the callback is a no-op so nobody looks for a second exporter.
"""

from __future__ import annotations

import logging
from typing import Any

from .._callbacks.custom_logger import CustomLogger

NAMES = ("prometheus",)


class PrometheusCallback(CustomLogger):
    """A no-op: the proxy's ``/metrics`` already counts every call."""

    def __repr__(self) -> str:
        return "<PrometheusCallback: no-op, metrics are served at /metrics>"


def logger_for_name(name: str, settings: Any = None) -> PrometheusCallback | None:
    """``"prometheus"`` in a callback list: a no-op (the proxy serves /metrics); ``settings`` unused."""
    if name not in NAMES:
        return None
    logging.getLogger("lmgate.loggers").info(
        "callback 'prometheus': a no-op in lmgate; the proxy serves Prometheus metrics at /metrics"
    )
    return PrometheusCallback()


__all__ = ["PrometheusCallback", "logger_for_name"]
