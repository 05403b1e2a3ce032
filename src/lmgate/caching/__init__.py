"""Response caching (in progress): ``Cache`` is defined by the caching module."""

from __future__ import annotations

from typing import Any


class Cache:  # placeholder until the caching backends land
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("lmgate.Cache is not available yet")
