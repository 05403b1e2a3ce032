"""Response caching: ``lmgate.cache = lmgate.Cache(...)``; see docs/caching.md.

Imported only when a cache is configured, so ``import lmgate`` stays fast; ``redis`` is
imported only when a Redis cache first talks to its server.
"""

from __future__ import annotations

from .cache import DEFAULT_NAMESPACE, DEFAULT_TTL_S, Cache, CacheMode

__all__ = ["Cache", "CacheMode", "DEFAULT_NAMESPACE", "DEFAULT_TTL_S"]
