"""A spend journal's line: a settled request's ledger row as a JSON array of ``ROW_FIELDS``.

Written by the serving process (``spend.SpendWriter``) and read back by it at start and by the
ledger's writer child (``spend_process``): one module both import, so the format has one home
and the child does not import the writer's side.
"""

from __future__ import annotations

from typing import Any

#: a ledger row's fields, in the order of its journal line (a JSON array) and of ``pending``'s
#: tuples: an array is made and encoded for a third of an object's cost, once a request
ROW_FIELDS = (
    "request_id",
    "token",
    "team_id",
    "user_id",
    "end_user",
    "model",
    "cost",
    "prompt_tokens",
    "completion_tokens",
    "started_at",
    "ended_at",
)


def row_of(value: Any) -> dict[str, Any]:
    """A journal line's value as a ledger row (the ledger's columns by name): an array, as this
    version writes it, or an object, as versions before it did."""
    if isinstance(value, list):
        return dict(zip(ROW_FIELDS, value, strict=False))  # a shorter array: its last fields absent
    return value  # type: ignore[no-any-return]


__all__ = ["ROW_FIELDS", "row_of"]
