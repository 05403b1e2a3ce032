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
    """Whether ``value`` nests containers more than ``limit`` deep; a loop, stopping at the limit."""
    level: list[tuple[Any, int]] = [(value, 1)]
    while level:
        node, depth = level.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            level.extend((child, depth + 1) for child in node.values() if isinstance(child, (dict, list)))
        elif isinstance(node, list):
            level.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))
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
