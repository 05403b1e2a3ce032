"""Which other model groups a failed request moves to.

``fallbacks`` (any error once the group's retries are spent), ``context_window_fallbacks``
(``ContextWindowExceededError``) and ``content_policy_fallbacks``
(``ContentPolicyViolationError``) are lists of ``{group: [other groups]}`` as the reference
writes them; a ``"*"`` key applies to every group without an entry of its own. A specific list
wins over the general one; with no specific list the general one applies. Fallback groups are
tried in order, each with its own retries; their own fallbacks are not followed (no chains,
no loops).
"""

from __future__ import annotations

from typing import Any

from .. import exceptions as exc


def read_fallbacks(value: Any, name: str) -> dict[str, list[str]]:
    """``[{"gpt": ["claude"]}, ...]`` (or one dict) as a mapping; a wrong shape is a ConfigError."""
    if value is None:
        return {}
    items = [value] if isinstance(value, dict) else value
    out: dict[str, list[str]] = {}
    if not isinstance(items, list):
        raise exc.ConfigError(
            f"must be a list like [{{'gpt': ['claude']}}], got {type(value).__name__}", "Router", name
        )
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise exc.ConfigError(
                f"must be a mapping of a group to a list of groups, got {item!r}",
                "Router",
                f"{name}[{index}]",
            )
        for group, targets in item.items():
            targets = [targets] if isinstance(targets, str) else targets
            if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                raise exc.ConfigError(
                    f"must be a list of model group names, got {targets!r}",
                    "Router",
                    f"{name}[{index}].{group}",
                )
            out.setdefault(str(group), []).extend(targets)
    return out


class Fallbacks:
    def __init__(self, general: Any = None, context_window: Any = None, content_policy: Any = None) -> None:
        self.general = read_fallbacks(general, "fallbacks")
        self.context_window = read_fallbacks(context_window, "context_window_fallbacks")
        self.content_policy = read_fallbacks(content_policy, "content_policy_fallbacks")

    def groups(self) -> set[str]:
        """Every group named as a fallback target (checked against the model list)."""
        return {
            g
            for table in (self.general, self.context_window, self.content_policy)
            for v in table.values()
            for g in v
        }

    def may_apply(self, group: str) -> bool:
        """Whether some error of ``group`` could have a fallback (the group's own entry, or ``*``)."""
        return any(
            group in table or "*" in table
            for table in (self.general, self.context_window, self.content_policy)
        )

    def for_error(self, group: str, error: BaseException) -> list[str]:
        """The groups to try after ``error`` ended ``group``'s attempts, in order."""
        if not isinstance(error, exc.LmgateError) or isinstance(error, exc.ConfigError):
            return []
        specific: list[str] | None = None
        if isinstance(error, exc.ContextWindowExceededError):
            specific = _lookup(self.context_window, group)
        elif isinstance(error, exc.ContentPolicyViolationError):
            specific = _lookup(self.content_policy, group)
        chosen = specific if specific is not None else _lookup(self.general, group)
        return [g for g in chosen or () if g != group]


def _lookup(table: dict[str, list[str]], group: str) -> list[str] | None:
    if group in table:
        return table[group]
    return table.get("*")


__all__ = ["Fallbacks", "read_fallbacks"]
