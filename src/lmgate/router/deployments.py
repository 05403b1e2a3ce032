"""The entries of a Router's ``model_list``, read once into ``Deployment`` objects.

An entry has the reference's shape: ``{"model_name": group, "litellm_params": {...},
"model_info": {...}}``. ``litellm_params`` holds the call's arguments (``model``, ``api_key``,
``api_base``, …; ``os.environ/X`` references resolved here, once) and the routing facts the
strategies read (``rpm``, ``tpm``, ``weight``, ``order``), which never reach the provider.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .. import _conf
from .._secrets import remember_secret
from ..exceptions import ConfigError

#: litellm_params keys that steer routing and are not passed to the call
ROUTING_PARAMS = frozenset(
    {"rpm", "tpm", "weight", "order", "max_parallel_requests", "region_name", "use_in_pass_through"}
)


@dataclass(frozen=True)
class Deployment:
    """One place a model group can be served from."""

    model_name: str  # the group
    model_id: str  # model_info.id, or a stable hash of the entry
    call_params: MappingProxyType[str, Any] = field(repr=False)  # keyword arguments for the call
    rpm: int | None = None
    tpm: int | None = None
    weight: float | None = None
    order: int | None = None
    api_base: str | None = None


def read_model_list(model_list: Any, where: str = "Router(model_list=...)") -> tuple[Deployment, ...]:
    """Every entry as a ``Deployment`` (entries that are one already are taken as they are); a
    malformed entry is a ConfigError naming it."""
    if not isinstance(model_list, (list, tuple)):
        raise ConfigError(
            f"must be a list of deployments, got {type(model_list).__name__}", where, "model_list"
        )
    out: list[Deployment] = []
    seen: set[str] = set()
    for index, entry in enumerate(model_list):
        key = f"model_list[{index}]"
        if isinstance(entry, Deployment):  # read already (the proxy's config, env references resolved)
            if entry.model_id in seen:
                raise ConfigError(f"{entry.model_id!r} is the id of another deployment", where, key)
            seen.add(entry.model_id)
            out.append(entry)
            continue
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("model_name"), str)
            or not entry["model_name"]
        ):
            raise ConfigError(
                "must be a mapping with a model_name string and litellm_params",
                where,
                key,
                fix='write {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini"}}',
            )
        params = entry.get("litellm_params")
        if not isinstance(params, dict) or not params.get("model"):
            raise ConfigError("litellm_params must be a mapping with a model", where, f"{key}.litellm_params")
        params = _conf.resolve_env(
            dict(params), where=f"{key}.litellm_params", file=where, on_resolved=remember_secret
        )
        info = entry.get("model_info") or {}
        model_id = info.get("id")
        if model_id is None:  # stable across processes: the same entry gets the same id
            seed = f"{index}\0{entry['model_name']}\0{params.get('model')}\0{params.get('api_base')}"
            model_id = hashlib.sha256(seed.encode()).hexdigest()[:16]
        model_id = str(model_id)
        if model_id in seen:
            raise ConfigError(f"{model_id!r} is the id of another deployment", where, f"{key}.model_info.id")
        seen.add(model_id)
        call_params = {k: v for k, v in params.items() if k not in ROUTING_PARAMS}
        if info:
            call_params["model_info"] = dict(info)

        out.append(
            Deployment(
                model_name=entry["model_name"],
                model_id=model_id,
                call_params=MappingProxyType(call_params),
                rpm=_number(params, "rpm", key, where, True),
                tpm=_number(params, "tpm", key, where, True),
                weight=_number(params, "weight", key, where, False),
                order=_number(params, "order", key, where, True),
                api_base=params.get("api_base"),
            )
        )
    return tuple(out)


def _number(params: dict[str, Any], name: str, key: str, where: str, integer: bool) -> Any:
    value = params.get(name)
    if value is None:
        return None
    return _conf.number(value, name=f"{key}.litellm_params.{name}", where=where, minimum=0, integer=integer)


__all__ = ["ROUTING_PARAMS", "Deployment", "read_model_list"]
