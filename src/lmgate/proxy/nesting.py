"""How deep a request body nests, bounded before anything walks it.

A JSON body may nest up to the parser's limit (1024 levels), and much of what handles a request
(copies, encoders, a provider SDK) walks it recursively. No real OpenAI request nests deeper
than a handful of levels, so the proxy refuses a body whose parameters nest deeper than
``MAX_PARAM_DEPTH`` with a 400. ``metadata`` is exempt: it is the client's own, only logged,
and a record whose metadata cannot be encoded is still delivered with the deep part replaced
and flagged (``lmgate._callbacks.encoding``).
"""

from __future__ import annotations

from typing import Any

from .errors import ProxyError

#: the deepest a body parameter may nest (the parameter itself counts as level 1)
MAX_PARAM_DEPTH = 64
_EXEMPT = frozenset({"metadata"})


def depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers more than ``limit`` deep, stopping at the limit (so the
    recursion is at most ``limit`` calls deep, far from Python's own bound)."""
    if limit < 1:  # ``value`` itself is level 1
        return True
    return isinstance(value, (dict, list)) and _over(value, limit)


def _over(node: dict[str, Any] | list[Any], room: int) -> bool:
    """Whether the container ``node`` nests deeper than ``room`` levels (itself counts as one)."""
    if room <= 0:
        return True
    for child in node.values() if isinstance(node, dict) else node:
        if isinstance(child, (dict, list)) and _over(child, room - 1):
            return True
    return False


def check_nesting(data: dict[str, Any]) -> None:
    """A 400 naming the first parameter (other than metadata) nested deeper than ``MAX_PARAM_DEPTH``."""
    for name, value in data.items():
        if name not in _EXEMPT and isinstance(value, (dict, list)) and depth_over(value, MAX_PARAM_DEPTH):
            raise ProxyError(
                400,
                f"'{name}' is nested too deeply: at most {MAX_PARAM_DEPTH} levels of objects and lists",
                param=str(name),
                code="nested_too_deeply",
            )


__all__ = ["MAX_PARAM_DEPTH", "check_nesting", "depth_over"]
