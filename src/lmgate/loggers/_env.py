"""Environment lookups for the built-in loggers, in one place.

Endpoint and header values may name environment variables in four ways, anywhere in the
string: ``${NAME}``, ``$NAME``, ``os.environ/NAME`` and (the presets' syntax)
``{{environment_variables.NAME}}``; ``$$`` is a literal ``$``. A variable that is not set is an error naming it and the
setting, never an empty string: an empty token or URL fails later, far from its cause.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from .._secrets import remember_secret


class LoggerConfigError(ValueError):
    """A built-in logger's setting is missing or wrong; the message names the setting."""


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REFERENCE = re.compile(
    r"(?P<escaped>\$\$)"
    r"|\{\{\s*environment_variables\.(?P<tpl>" + _NAME + r")\s*\}\}"
    r"|\$\{(?P<braced>" + _NAME + r")\}"
    r"|os\.environ/(?P<osenv>" + _NAME + r")"
    r"|\$(?P<bare>" + _NAME + r")"
)


def resolve_env_refs(value: str, setting: str, environ: Mapping[str, str] | None = None, secret: bool = False) -> str:
    """``value`` with every environment reference replaced by the variable's value.

    ``secret`` marks the resolved values as secrets, so they are masked in our own logs.
    """
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = next(g for g in match.groups() if g is not None)
        if name not in env:
            raise LoggerConfigError(f"{setting} refers to environment variable {name}, which is not set")
        resolved = env[name]
        if secret:
            remember_secret(resolved)
        return resolved

    return _REFERENCE.sub(replace, value)


def parse_header_list(text: str, setting: str) -> dict[str, str]:
    """``"k1=v1,k2=v2"`` (the GENERIC_LOGGER_HEADERS form) as a dict."""
    headers: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise LoggerConfigError(f"{setting}: expected 'name=value' pairs separated by commas, got an item without '='")
        headers[key.strip()] = value.strip()
    return headers


def env_number(name: str, default: float, integer: bool = False) -> float:
    """A positive number from the environment, else ``default``; a bad value names the variable."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise LoggerConfigError(f"environment variable {name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise LoggerConfigError(f"environment variable {name} must be positive, got {raw!r}")
    return value


def cache_dir() -> str:
    """Where lmgate keeps local state: ``$LMGATE_CACHE_DIR``, ``$XDG_CACHE_HOME/lmgate``, ``~/.cache/lmgate``."""
    explicit = os.environ.get("LMGATE_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lmgate")
