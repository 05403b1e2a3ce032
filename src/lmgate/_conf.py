"""Configuration values, read the same way everywhere: environment references, numbers,
durations, booleans and choices, each failing with a ``ConfigError`` that names where the value
came from, what is wrong and what to do.

Environment references (one grammar for the proxy's YAML, logger settings and presets):

- ``os.environ/NAME`` — the reference's form, usually the whole value (``os.environ/BASE/v1``
  works too: a name is letters, digits and ``_``);
- ``${NAME}`` and ``$NAME`` inside a string;
- ``{{environment_variables.NAME}}`` — the form of the reference's logger presets;
- ``$$`` is a literal ``$``.

A variable that is not set is an error naming the key and the variable, never an empty
string: an empty token or URL would fail later, far from its cause.

``where`` is the place a value came from, written in front of the message: a key path
(``litellm_settings.num_retries``), an owner (``Cache``) or both (``config.yaml:
general_settings``). ``name`` is the parameter itself. This module is a leaf: it imports only
``lmgate.exceptions``, so any layer may use it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from .exceptions import ConfigError

__all__ = ["ConfigError", "boolean", "choice", "duration_s", "number", "resolve_env"]

T = TypeVar("T")

ENV_PREFIX = "os.environ/"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REFERENCE = (
    r"(?P<escaped>\$\$)"
    r"|\{\{\s*environment_variables\.(?P<tpl>" + _NAME + r")\s*\}\}"
    r"|\$\{(?P<braced>" + _NAME + r")\}"
    r"|os\.environ/(?P<osenv>" + _NAME + r")"
    r"|\$(?P<bare>" + _NAME + r")"
)
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_DURATION = r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|m|h)?\s*"
# the patterns are compiled on first use (re caches them): importing this module stays cheap
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def resolve_env(
    value: T,
    *,
    where: str,
    file: str | None = None,
    environ: Mapping[str, str] | None = None,
    on_resolved: Callable[[str], None] | None = None,
) -> T:
    """``value`` with every environment reference replaced, inside nested dicts and lists too.

    ``where`` is the key path of ``value`` (children extend it: ``a.b``, ``a[0]``); ``file`` is
    named in front of it in errors. ``on_resolved`` sees each variable's value (the loggers
    pass ``remember_secret`` so resolved tokens are masked in logs).
    """
    env = os.environ if environ is None else environ
    return _resolve(value, where, file, env, on_resolved)  # type: ignore[no-any-return]


def _resolve(
    value: Any, key: str, file: str | None, env: Mapping[str, str], on_resolved: Callable[[str], None] | None
) -> Any:
    if isinstance(value, str):
        return _resolve_string(value, key, file, env, on_resolved)
    if isinstance(value, dict):
        return {
            k: _resolve(v, f"{key}.{k}" if key else str(k), file, env, on_resolved) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_resolve(v, f"{key}[{i}]", file, env, on_resolved) for i, v in enumerate(value)]
    return value


def _resolve_string(
    value: str, key: str, file: str | None, env: Mapping[str, str], on_resolved: Callable[[str], None] | None
) -> str:
    if "$" not in value and ENV_PREFIX not in value and "{{" not in value:
        return value

    def lookup(var: str, written: str) -> str:
        if var not in env:
            raise ConfigError(
                f"environment variable {var} is not set (referenced as {written!r})",
                file,
                key or None,
                fix=f"set {var}, or write $$ for a literal $",
            )
        resolved = env[var]
        if on_resolved is not None:
            on_resolved(resolved)
        return resolved

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        var = next(g for g in match.groups()[1:] if g is not None)
        return lookup(var, match.group(0))

    return re.sub(_REFERENCE, substitute, value)


def _fail(message: str, name: str, where: str, fix: str | None = None) -> ConfigError:
    return ConfigError(message, where or None, name or None, fix)


def number(
    value: Any,
    *,
    name: str,
    where: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
    above: float | None = None,
) -> Any:
    """``value`` as a float (an int with ``integer``), within ``minimum``/``maximum`` (inclusive)
    and greater than ``above``; numeric strings count (an environment reference yields one)."""
    kind = "a whole number" if integer else "a number"
    parsed: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        parsed = float(value)
    elif isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            parsed = None
    if parsed is None or not math.isfinite(parsed):
        raise _fail(
            f"must be {kind}, got {value!r}",
            name,
            where,
            fix=f"give {kind}{_range_text(minimum, maximum, above)}",
        )
    if integer and parsed != int(parsed):
        raise _fail(f"must be a whole number, got {value!r}", name, where)
    if minimum is not None and parsed < minimum:
        raise _fail(f"must be at least {minimum:g}, got {value!r}", name, where)
    if above is not None and parsed <= above:
        raise _fail(f"must be greater than {above:g}, got {value!r}", name, where)
    if maximum is not None and parsed > maximum:
        raise _fail(f"must be at most {maximum:g}, got {value!r}", name, where)
    return int(parsed) if integer else parsed


def _range_text(minimum: float | None, maximum: float | None, above: float | None) -> str:
    parts = []
    if above is not None:
        parts.append(f"> {above:g}")
    if minimum is not None:
        parts.append(f">= {minimum:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    return f" {' and '.join(parts)}" if parts else ""


def duration_s(
    value: Any,
    *,
    name: str,
    where: str = "",
    minimum: float | None = 0.0,
    maximum: float | None = None,
    above: float | None = None,
) -> float:
    """Seconds from a number (``2.5``) or a string with a unit (``"250ms"``, ``"5s"``, ``"2m"``, ``"1h"``)."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        match = re.fullmatch(_DURATION, value)
        if match is not None:
            seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds is None or not math.isfinite(seconds):
        raise _fail(
            f"must be a duration, got {value!r}",
            name,
            where,
            fix="give seconds (2.5) or a number with a unit: 250ms, 5s, 2m, 1h",
        )
    if minimum is not None and seconds < minimum:
        raise _fail(f"must be at least {minimum:g} seconds, got {value!r}", name, where)
    if above is not None and seconds <= above:
        raise _fail(f"must be more than {above:g} seconds, got {value!r}", name, where)
    if maximum is not None and seconds > maximum:
        raise _fail(f"must be at most {maximum:g} seconds, got {value!r}", name, where)
    return seconds


def boolean(value: Any, *, name: str, where: str = "") -> bool:
    """``value`` as a bool: ``True``/``False``, or the strings true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _fail(f"must be true or false, got {value!r}", name, where, fix="write true or false")


def choice(value: Any, choices: Collection[T], *, name: str, where: str = "") -> T:
    """``value`` if it is one of ``choices`` (compared as given, then as text)."""
    for option in choices:
        if value == option or str(getattr(option, "value", option)) == value:
            return option
    listed = ", ".join(str(getattr(c, "value", c)) for c in choices)
    # "Invalid log_format ..." is the reference's wording, which users' tests match on
    leaf = name.rsplit(".", 1)[-1] if name else "value"
    message = f"Invalid {leaf} {value!r}: must be one of {listed}"
    if not where and leaf == name:
        # a bare argument (a logger's log_format=): the message starts with the reference's
        # "Invalid log_format ...", which already names the key; the key stays on the error
        error = _fail(message, "", "")
        error.key = name
        raise error
    raise _fail(message, name, where)
