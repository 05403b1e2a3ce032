"""The reference's duration strings (``"30s"``, ``"15m"``, ``"1h"``, ``"30d"``, ``"2w"``, ``"1mo"``)."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 30 * 86400}
_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(mo|s|m|h|d|w)\s*")


def parse_duration(value: object, name: str) -> float:
    """Seconds in ``value``; a month counts 30 days. Raises ValueError naming ``name``."""
    if isinstance(value, str):
        match = _PATTERN.fullmatch(value)
        if match is not None:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(
        f"{name} must be a duration such as '30s', '15m', '1h', '30d', '2w' or '1mo', got {value!r}"
    )


__all__ = ["parse_duration"]
