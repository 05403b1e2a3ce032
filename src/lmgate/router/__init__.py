"""``lmgate.Router``: model groups, routing strategies, cooldowns and fallbacks (docs/router.md).

Modules, each with one job: ``deployments`` (model_list entries), ``strategies`` (which
deployment), ``counters`` (usage and latency, local or in Redis), ``cooldown`` (who sits out),
``fallbacks`` (which other group), ``router`` (one request's decisions and its two drivers).
Lower layers never import this package.
"""

from .router import Routed, Router

__all__ = ["Routed", "Router"]
