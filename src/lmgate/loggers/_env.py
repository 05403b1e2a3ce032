"""Environment lookups for the built-in loggers, in one place.

Endpoint and header values may name environment variables anywhere in the string, with the
grammar every config reader shares (``lmgate._conf``): ``${NAME}``, ``$NAME``,
``os.environ/NAME`` and (the presets' syntax) ``{{environment_variables.NAME}}``; ``$$`` is a
literal ``$``. A variable that is not set is an error naming it and the setting, never an empty
string: an empty token or URL fails later, far from its cause.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .. import _conf
from .._secrets import remember_secret
from ..exceptions import ConfigError

# the loggers' name for a config error; one class, so ``except LoggerConfigError`` and
# ``except lmgate.exceptions.ConfigError`` catch the same errors
LoggerConfigError = ConfigError


def resolve_env_refs(
    value: str, setting: str, environ: Mapping[str, str] | None = None, secret: bool = False
) -> str:
    """``value`` with every environment reference replaced by the variable's value.

    ``secret`` marks the resolved values as secrets, so they are masked in our own logs.
    """
    return _conf.resolve_env(
        value, where=setting, environ=environ, on_resolved=remember_secret if secret else None
    )


def parse_header_list(text: str, setting: str) -> dict[str, str]:
    """``"k1=v1,k2=v2"`` (the GENERIC_LOGGER_HEADERS form) as a dict."""
    headers: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise LoggerConfigError(
                f"{setting}: expected 'name=value' pairs separated by commas, got an item without '='"
            )
        headers[key.strip()] = value.strip()
    return headers


def env_number(name: str, default: float, integer: bool = False) -> float:
    """A positive number from the environment, else ``default``; a bad value names the variable."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    return _conf.number(raw, name=f"environment variable {name}", integer=integer, above=0)  # type: ignore[no-any-return]


def cache_dir() -> str:
    """Where lmgate keeps local state: ``$LMGATE_CACHE_DIR``, ``$XDG_CACHE_HOME/lmgate``, ``~/.cache/lmgate``."""
    explicit = os.environ.get("LMGATE_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lmgate")
