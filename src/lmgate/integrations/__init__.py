"""Import paths kept for code written against the reference implementation, and the declared
interfaces a third-party logger implements (see ``docs/callbacks.md``, "The fast inline path"):

    from lmgate.integrations import CallSummary, Flushable, SummarySink, takes_summaries
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._callbacks.protocols import Flushable, SummarySink, takes_summaries

__all__ = ["CallSummary", "Flushable", "SummarySink", "takes_summaries"]


def __getattr__(name: str) -> Any:
    if name == "CallSummary":  # imported on first use: ``import lmgate.integrations`` stays cheap
        from .._callbacks.summary import CallSummary

        return CallSummary
    raise AttributeError(f"module 'lmgate.integrations' has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from .._callbacks.summary import CallSummary  # noqa: F401
