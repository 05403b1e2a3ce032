"""The management API's request bodies, checked and turned into column values.

Field names are the reference's (``/key/generate``, ``/team/new``). A bad value raises
``BadField`` naming the field, which the admin routes answer with a 400.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from .durations import parse_duration


class BadField(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


#: the longest text a column holds (control/schema.py): a longer value is refused by name here,
#: where PostgreSQL would refuse the whole statement (a 500) and SQLite would keep it silently
TEXT_LIMIT = 256
ID_LIMIT = 128  # team and user ids (``String(128)``)
DURATION_TEXT_LIMIT = 32  # ``budget_duration`` (``String(32)``)
#: a key's lifetime or a budget window of at most 100 years: a longer one is a typo, and
#: one past the year 9999 cannot even be shown as a date (it broke /key/list for every key)
DURATION_LIMIT_S = 100 * 365 * 86400.0
INT_LIMIT = 2**31 - 1  # the ``Integer`` columns (int4 on PostgreSQL)
#: a key's, team's, user's or end user's ``metadata`` as JSON: it rides on every request's identity
METADATA_LIMIT = 64 * 1024


def check_text(name: str, value: str, limit: int = TEXT_LIMIT) -> str:
    """``value`` if a column can hold it: at most ``limit`` characters, no NUL (PostgreSQL's text
    types refuse it)."""
    if len(value) > limit:
        raise BadField(name, f"{name} is {len(value)} characters long; at most {limit} are allowed")
    if "\x00" in value:
        raise BadField(name, f"{name} must not contain a NUL character")
    return value


def _str(name: str, value: Any, limit: int = TEXT_LIMIT) -> str | None:
    if value is None:
        return value
    if isinstance(value, str):
        return check_text(name, value, limit)
    raise BadField(name, f"{name} must be a string, got {type(value).__name__}")


def _id(name: str, value: Any) -> str | None:
    return _str(name, value, ID_LIMIT)


def _str_list(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [check_text(name, v) for v in value]
    raise BadField(name, f"{name} must be a list of strings")


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        size = len(orjson.dumps(value))
        if size > METADATA_LIMIT:
            raise BadField(name, f"{name} is {size} bytes as JSON; at most {METADATA_LIMIT} are allowed")
        return dict(value)
    raise BadField(name, f"{name} must be an object")


def _budget(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise BadField(name, f"{name} must be a number of at least 0, got {value!r}")


def _limit(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT_LIMIT:
        return value
    raise BadField(name, f"{name} must be a whole number from 0 to {INT_LIMIT}, got {value!r}")


def _flag(name: str, value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise BadField(name, f"{name} must be true or false")


def _duration_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    bounded_duration(value, name)
    return check_text(name, str(value), DURATION_TEXT_LIMIT)


def bounded_duration(value: Any, name: str) -> float:
    """The seconds of a duration text, refused by name when unreadable or over 100 years."""
    try:
        seconds = parse_duration(value, name)
    except ValueError as error:
        raise BadField(name, str(error)) from None
    if seconds > DURATION_LIMIT_S:
        raise BadField(name, f"{name} must be at most 100 years, got {value!r}")
    return seconds


Check = Callable[[str, Any], Any]

_KEY_FIELDS: dict[str, Check] = {
    "key_alias": _str,
    "team_id": _id,
    "user_id": _id,
    "models": _str_list,
    "max_budget": _budget,
    "budget_duration": _duration_text,
    "rpm_limit": _limit,
    "tpm_limit": _limit,
    "max_parallel_requests": _limit,
    "metadata": _mapping,
    "tags": _str_list,
    "blocked": _flag,
    "soft_budget": _budget,
}
_TEAM_FIELDS: dict[str, Check] = {
    "team_alias": _str,
    "models": _str_list,
    "max_budget": _budget,
    "budget_duration": _duration_text,
    "rpm_limit": _limit,
    "tpm_limit": _limit,
    "metadata": _mapping,
    "blocked": _flag,
    "soft_budget": _budget,
}
# accepted for compatibility and not acted on yet (the reference's other fields are refused by name)
_KEY_ACCEPTED = frozenset({"key", "duration", "send_invite_email", "key_type"})
_TEAM_ACCEPTED = frozenset({"team_id", "members_with_roles", "organization_id"})


def _role(name: str, value: Any) -> str | None:
    if value is None or value in USER_ROLES:
        return value  # type: ignore[no-any-return]
    raise BadField(name, f"{name} must be one of {', '.join(USER_ROLES)}, got {value!r}")


#: the reference's roles; stored and shown, not acted on (the master key is the only admin)
USER_ROLES = ("proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer")

_USER_FIELDS: dict[str, Check] = {
    "user_alias": _str,
    "user_email": _str,
    "user_role": _role,
    "max_budget": _budget,
    "budget_duration": _duration_text,
    "rpm_limit": _limit,
    "tpm_limit": _limit,
    "metadata": _mapping,
    "soft_budget": _budget,
}
_USER_ACCEPTED = frozenset({"user_id", "auto_create_key", "key_alias", "duration", "send_invite_email"})
_CUSTOMER_FIELDS: dict[str, Check] = {
    "alias": _str,
    "blocked": _flag,
    "max_budget": _budget,
    "budget_duration": _duration_text,
    "rpm_limit": _limit,
    "tpm_limit": _limit,
    "default_model": _str,
    "allowed_model_region": lambda name, value: _str(name, value, 32),
    "metadata": _mapping,
}
_CUSTOMER_ACCEPTED = frozenset({"user_id"})


def _columns(
    body: dict[str, Any], fields: dict[str, Check], accepted: frozenset[str], partial: bool
) -> dict[str, Any]:
    unknown = sorted(set(body) - set(fields) - accepted)
    if unknown:
        raise BadField(
            unknown[0],
            f"unknown field {unknown[0]!r}; known fields: {', '.join(sorted(fields) + sorted(accepted))}",
        )
    names = [n for n in fields if n in body] if partial else list(fields)
    return {name: fields[name](name, body.get(name)) for name in names}


def key_columns(body: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """The key columns ``body`` sets (all of them for a new key, those present for an update)."""
    return _columns(body, _KEY_FIELDS, _KEY_ACCEPTED, partial)


def team_columns(body: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    return _columns(body, _TEAM_FIELDS, _TEAM_ACCEPTED, partial)


def user_columns(body: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    return _columns(body, _USER_FIELDS, _USER_ACCEPTED, partial)


def customer_columns(body: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    return _columns(body, _CUSTOMER_FIELDS, _CUSTOMER_ACCEPTED, partial)


def duration_seconds(body: dict[str, Any]) -> float | None:
    """``duration`` (the key's lifetime) in seconds, or None for a key that never expires."""
    value = body.get("duration")
    if value is None:
        return None
    return bounded_duration(value, "duration")


__all__ = [
    "USER_ROLES",
    "ID_LIMIT",
    "TEXT_LIMIT",
    "BadField",
    "bounded_duration",
    "check_text",
    "customer_columns",
    "duration_seconds",
    "key_columns",
    "team_columns",
    "user_columns",
]
