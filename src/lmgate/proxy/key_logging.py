"""Per-key and per-team logging: a key or its team may send its calls' records to callbacks of
its own, and may turn message logging off for its calls.

Both live in the ``metadata`` an admin sets on the key or team (``/key/generate``,
``/key/update``, ``/team/new``, ``/team/update``: admin-only routes), in the reference's shape:

    {"logging": [{"callback_name": "search-team-sink", "callback_type": "success"}],
     "turn_off_message_logging": true}

``callback_name`` names an entry of the config's ``callback_settings`` (a destination the
operator configured, e.g. a ``generic_api`` endpoint): a key can name a destination, never
define one (no URL, header or credential in a key's metadata), so whoever holds the admin
key cannot turn a key into a way to ship logs to an address the config does not list either.
``callback_type`` is ``success``, ``failure`` or ``success_and_failure`` (the default).

A request body can never do any of this: ``callbacks``, ``success_callback``,
``failure_callback``, ``turn_off_message_logging`` and every other control parameter are
dropped from what a client sends (``routes/llm.py``); the controls built here are the proxy's
own call arguments, added after that filter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

LOGGING = "logging"
QUIET = "turn_off_message_logging"
_TYPES = {
    "success": "success_callback",
    "failure": "failure_callback",
    "success_and_failure": "callbacks",
}
_ENTRY_FIELDS = {"callback_name", "callback_type"}


class BadLogging(ValueError):
    """A key's or team's logging settings are wrong; ``field`` names where."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def check(metadata: Any, known: Iterable[str], where: str = "metadata") -> None:
    """Refuse ``metadata``'s logging settings unless every callback is one of ``known``
    (the config's ``callback_settings`` names) and the shapes are right."""
    if not isinstance(metadata, Mapping):
        return
    quiet = metadata.get(QUIET)
    if quiet is not None and not isinstance(quiet, bool):
        raise BadLogging(f"{where}.{QUIET}", f"{where}.{QUIET} must be true or false")
    entries = metadata.get(LOGGING)
    if entries is None:
        return
    field = f"{where}.{LOGGING}"
    if not isinstance(entries, list):
        raise BadLogging(field, f"{field} must be a list of {{'callback_name': ..., 'callback_type': ...}}")
    names = sorted(set(known))
    for i, entry in enumerate(entries):
        here = f"{field}[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("callback_name"), str):
            raise BadLogging(here, f"{here} must be an object with a 'callback_name' string")
        extra = sorted(set(entry) - _ENTRY_FIELDS)
        if extra:
            raise BadLogging(
                f"{here}.{extra[0]}",
                f"{here}.{extra[0]} is not accepted: a key names a destination from the config's "
                "callback_settings and never defines one (callback_vars, URLs and credentials belong in the config)",
            )
        if entry["callback_name"] not in names:
            raise BadLogging(
                f"{here}.callback_name",
                f"{here}.callback_name {entry['callback_name']!r} is not a callback_settings entry of the "
                f"config; known: {', '.join(names) or '(none: add one under callback_settings)'}",
            )
        kind = entry.get("callback_type", "success_and_failure")
        if kind not in _TYPES:
            raise BadLogging(
                f"{here}.callback_type",
                f"{here}.callback_type must be one of {', '.join(_TYPES)}, got {kind!r}",
            )


def call_controls(key_metadata: Mapping[str, Any], team_metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The call arguments the key's and its team's logging settings add, or None (most keys):
    ``callbacks`` / ``success_callback`` / ``failure_callback`` lists of callback names, and
    ``turn_off_message_logging`` when either turned it off."""
    if (
        LOGGING not in key_metadata
        and LOGGING not in team_metadata
        and not (key_metadata.get(QUIET) or team_metadata.get(QUIET))
    ):
        return None
    controls: dict[str, Any] = {}
    for metadata in (team_metadata, key_metadata):
        for entry in metadata.get(LOGGING) or ():
            if not isinstance(entry, Mapping):  # checked when set; a hand-edited row is skipped
                continue
            name = entry.get("callback_name")
            list_name = _TYPES.get(entry.get("callback_type", "success_and_failure"))
            if isinstance(name, str) and list_name is not None:
                names = controls.setdefault(list_name, [])
                if name not in names:
                    names.append(name)
    if key_metadata.get(QUIET) is True or team_metadata.get(QUIET) is True:
        controls[QUIET] = True
    return controls or None


__all__ = ["LOGGING", "QUIET", "BadLogging", "call_controls", "check"]
