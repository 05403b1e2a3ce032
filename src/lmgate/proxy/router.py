"""The proxy's model groups and failover: one ``lmgate.Router`` built from the config.

``model_list`` entries that share a ``model_name`` form a group; ``router_settings`` chooses
the strategy (``round-robin`` by default here, as before; ``simple-shuffle``, ``least-busy``,
``latency-based-routing``, ``usage-based-routing``), ``num_retries``, ``allowed_fails``,
``cooldown_time``, the three kinds of fallbacks and the Redis server the routing counters are
shared through. Everything else — which deployment, retrying on another, cooldowns,
fallbacks, one terminal event per request — is the library Router's (``lmgate/router/``);
the proxy uses it as a user would.
"""

from __future__ import annotations

from ..router import Router
from ..router.deployments import Deployment as RouterDeployment
from .config import Deployment, ProxyConfig, thaw

_PASSED = (
    "allowed_fails",
    "cooldown_time",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "redis_url",
    "redis_host",
    "redis_port",
    "redis_password",
)


def _routed(d: Deployment) -> RouterDeployment:
    params = d.litellm_params
    return RouterDeployment(
        model_name=d.model_name,
        model_id=d.model_id,
        call_params=d.call_params,
        rpm=params.get("rpm"),
        tpm=params.get("tpm"),
        weight=params.get("weight"),
        order=params.get("order"),
        api_base=params.get("api_base"),
    )


def build_router(config: ProxyConfig) -> Router:
    """The config's Router (settings already checked by ``config.py``, env references resolved)."""
    settings = {
        k: thaw(config.router_settings[k]) for k in _PASSED if config.router_settings.get(k) is not None
    }
    return Router(
        model_list=[_routed(d) for d in config.model_list],
        routing_strategy=config.routing_strategy,
        num_retries=config.router_num_retries,
        **settings,
    )


__all__ = ["build_router"]
