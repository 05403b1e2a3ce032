"""The proxy's YAML, loaded once into frozen objects and validated at load.

Every error names the file and the key path (``config.yaml: model_list[1].litellm_params.model:
required``), so a bad config fails at startup with a message that says where to look.

Environment references resolve wherever a string value stands, at any depth, inside lists
too: ``os.environ/NAME`` (the whole value), ``${NAME}`` and ``$NAME`` (inside a string;
``$$`` is a literal ``$``). A missing variable is an error naming the key and the variable,
never a silent empty string.

The master key comes from ``general_settings.master_key``; without it, from the environment:
``LMGATE_MASTER_KEY``, else ``LITELLM_MASTER_KEY`` (the reference reads the latter the same
way). A variable that is set but empty is an error, not a proxy without auth.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

DEFAULT_MAX_REQUEST_SIZE_MB = 10.0
DEFAULT_FLUSH_TIMEOUT_S = 30.0
DEFAULT_GRACEFUL_TIMEOUT_S = 30.0
ROUTING_STRATEGIES = ("round-robin", "least-busy", "simple-shuffle")
# where a master key may come from when general_settings has none, first found wins
MASTER_KEY_ENV = ("LMGATE_MASTER_KEY", "LITELLM_MASTER_KEY")

# litellm_params keys that steer routing and must not reach the provider
ROUTER_ONLY_PARAMS = frozenset(
    {"rpm", "tpm", "weight", "order", "max_parallel_requests", "region_name", "use_in_pass_through"}
)
_NUMBER_PARAMS = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
                  "cache_creation_input_token_cost", "timeout", "stream_timeout", "mock_delay")
_STRING_PARAMS = ("model", "api_key", "api_base", "base_url", "api_version", "custom_llm_provider", "base_model")

TOP_LEVEL_KEYS = ("model_list", "litellm_settings", "callback_settings", "general_settings", "router_settings",
                  "environment_variables")
LITELLM_SETTINGS_KEYS = (
    "callbacks", "success_callback", "failure_callback", "turn_off_message_logging", "cache", "cache_params",
    "drop_params", "num_retries", "request_timeout", "generic_logger_headers",
)
# reference settings accepted and ignored (they configure parts lmgate does not have)
IGNORED_LITELLM_SETTINGS = ("set_verbose", "json_logs", "redact_user_api_key_info", "telemetry",
                            "redact_messages_in_exceptions", "service_callback")
GENERAL_SETTINGS_KEYS = ("master_key", "max_request_size_mb", "flush_timeout_s", "graceful_shutdown_timeout_s")
ROUTER_SETTINGS_KEYS = ("routing_strategy", "num_retries")

_ENV_FULL = "os.environ/"
_ENV_INLINE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class ConfigError(ValueError):
    """The config file is missing, not YAML, or has a bad value; the message names file and key."""

    def __init__(self, file: str, key: str | None, message: str) -> None:
        self.file = file
        self.key = key
        self.detail = message
        super().__init__(f"{file}: {key}: {message}" if key else f"{file}: {message}")


@dataclass(frozen=True)
class Deployment:
    """One entry of ``model_list``: a model name (the group) and how to call it."""

    model_name: str
    model_id: str
    litellm_params: MappingProxyType[str, Any]
    model_info: MappingProxyType[str, Any]
    # the keyword arguments for lmgate.acompletion, computed once (copied per request)
    call_params: MappingProxyType[str, Any] = field(repr=False)

    @property
    def model(self) -> str:
        return str(self.litellm_params["model"])


@dataclass(frozen=True)
class ProxyConfig:
    """The whole config, validated; see ``docs/proxy.md`` for every key."""

    path: str
    directory: Path
    model_list: tuple[Deployment, ...]
    litellm_settings: MappingProxyType[str, Any]
    callback_settings: MappingProxyType[str, Any]
    general_settings: MappingProxyType[str, Any]
    router_settings: MappingProxyType[str, Any]
    master_key: str | None
    max_request_bytes: int
    flush_timeout_s: float
    graceful_shutdown_timeout_s: float
    routing_strategy: str
    router_num_retries: int | None
    # where master_key came from: "general_settings.master_key", an environment variable, or None
    master_key_source: str | None = None

    @property
    def model_names(self) -> tuple[str, ...]:
        """Group names in config order, each once."""
        return tuple(dict.fromkeys(d.model_name for d in self.model_list))


def load_config(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> ProxyConfig:
    """Read, resolve and validate ``path``; raises ``ConfigError`` naming the file and key."""
    import yaml

    name = str(path)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(name, None, f"cannot read the config file: {error.strerror or error}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(name, None, f"not valid YAML: {where}{problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(name, None, f"the top level must be a mapping of sections, got {type(raw).__name__}")
    env = dict(os.environ if environ is None else environ)
    # environment_variables: set before anything else resolves, as the reference does
    extra_env = raw.get("environment_variables") or {}
    if not isinstance(extra_env, dict):
        raise ConfigError(name, "environment_variables", "must be a mapping of NAME: value")
    for key, value in extra_env.items():
        value = _resolve(value, f"environment_variables.{key}", env, name)
        env[str(key)] = str(value)
        if environ is None:
            os.environ[str(key)] = str(value)
    data = _resolve(raw, "", env, name)
    config = _build(name, file, data)
    if config.master_key is not None:
        return replace(config, master_key_source="general_settings.master_key")
    for var in MASTER_KEY_ENV:
        value = env.get(var)
        if value is None:
            continue
        if not value.strip():
            raise ConfigError(name, None, f"environment variable {var} is set but empty: set it to the master key, "
                              "or unset it to run without a key (bound to 127.0.0.1)")
        # surrounding whitespace is never part of a key (a Kubernetes secret often ends in a newline)
        return replace(config, master_key=value.strip(), master_key_source=var)
    return config


# ---------------------------------------------------------------------- environment references


def _resolve(value: Any, key: str, env: dict[str, str], file: str) -> Any:
    if isinstance(value, str):
        return _resolve_string(value, key, env, file)
    if isinstance(value, dict):
        return {k: _resolve(v, _join(key, str(k)), env, file) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, f"{key}[{i}]", env, file) for i, v in enumerate(value)]
    return value


def _resolve_string(value: str, key: str, env: dict[str, str], file: str) -> str:
    if value.startswith(_ENV_FULL):
        var = value[len(_ENV_FULL):]
        if var not in env:
            raise ConfigError(file, key or None, f"environment variable {var} is not set (referenced as {value!r})")
        return env[var]
    if "$" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        var = match.group(1) or match.group(2)
        if var not in env:
            raise ConfigError(file, key or None, f"environment variable {var} is not set (referenced as {match.group(0)!r})")
        return env[var]

    return _ENV_INLINE.sub(substitute, value)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


# ---------------------------------------------------------------------- validation


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _mapping(data: dict[str, Any], key: str, file: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(file, key, f"must be a mapping, got {type(value).__name__}")
    return value


def _number(value: Any, key: str, file: str, *, minimum: float = 0.0, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not _numeric_string(value):
        raise ConfigError(file, key, f"must be a number, got {value!r}")
    number = float(value)
    if number < minimum:
        raise ConfigError(file, key, f"must be at least {minimum:g}, got {value!r}")
    if integer:
        if number != int(number):
            raise ConfigError(file, key, f"must be a whole number, got {value!r}")
        return int(number)
    return number


def _numeric_string(value: Any) -> bool:
    # env references produce strings: "os.environ/RETRIES" must still count as a number
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _bool(value: Any, key: str, file: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ConfigError(file, key, f"must be true or false, got {value!r}")


def _build(file: str, path: Path, data: dict[str, Any]) -> ProxyConfig:
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(file, str(key), f"unknown section; known sections: {', '.join(TOP_LEVEL_KEYS)}")
    deployments = _model_list(data.get("model_list"), file)
    litellm_settings = _litellm_settings(_mapping(data, "litellm_settings", file), file)
    callback_settings = _mapping(data, "callback_settings", file)
    for name, settings in callback_settings.items():
        if not isinstance(settings, dict):
            raise ConfigError(file, f"callback_settings.{name}", f"must be a mapping, got {type(settings).__name__}")
    general = _mapping(data, "general_settings", file)
    for key in general:
        if key not in GENERAL_SETTINGS_KEYS:
            raise ConfigError(file, f"general_settings.{key}", f"unknown key; known keys: {', '.join(GENERAL_SETTINGS_KEYS)}")
    master_key = general.get("master_key")
    if master_key is not None and (not isinstance(master_key, str) or not master_key.strip()):
        raise ConfigError(file, "general_settings.master_key", "must be a non-empty string")
    if isinstance(master_key, str):
        master_key = master_key.strip()  # as from the environment: whitespace around a key is not the key
    size_mb = _number(general.get("max_request_size_mb", DEFAULT_MAX_REQUEST_SIZE_MB),
                      "general_settings.max_request_size_mb", file, minimum=0.0001)
    flush_timeout = _number(general.get("flush_timeout_s", DEFAULT_FLUSH_TIMEOUT_S), "general_settings.flush_timeout_s", file)
    graceful = _number(general.get("graceful_shutdown_timeout_s", DEFAULT_GRACEFUL_TIMEOUT_S),
                       "general_settings.graceful_shutdown_timeout_s", file)
    router = _mapping(data, "router_settings", file)
    for key in router:
        if key not in ROUTER_SETTINGS_KEYS:
            raise ConfigError(file, f"router_settings.{key}", f"unknown key; known keys: {', '.join(ROUTER_SETTINGS_KEYS)}")
    strategy = router.get("routing_strategy", "round-robin")
    if strategy not in ROUTING_STRATEGIES:
        raise ConfigError(file, "router_settings.routing_strategy",
                          f"must be one of {', '.join(ROUTING_STRATEGIES)}, got {strategy!r}")
    router_retries = router.get("num_retries")
    if router_retries is not None:
        router_retries = _number(router_retries, "router_settings.num_retries", file, integer=True)
    return ProxyConfig(
        path=file,
        directory=path.resolve().parent,
        model_list=deployments,
        litellm_settings=_freeze(litellm_settings),
        callback_settings=_freeze(callback_settings),
        general_settings=_freeze(general),
        router_settings=_freeze(router),
        master_key=master_key,
        max_request_bytes=int(size_mb * 1024 * 1024),
        flush_timeout_s=flush_timeout,
        graceful_shutdown_timeout_s=graceful,
        routing_strategy=strategy,
        router_num_retries=router_retries,
    )


def _model_list(value: Any, file: str) -> tuple[Deployment, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(file, "model_list", f"must be a list of models, got {type(value).__name__}")
    out: list[Deployment] = []
    seen_ids: dict[str, int] = {}
    for index, entry in enumerate(value):
        key = f"model_list[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(file, key, f"must be a mapping with model_name and litellm_params, got {type(entry).__name__}")
        name = entry.get("model_name")
        if name is None:
            raise ConfigError(file, f"{key}.model_name", "required")
        if not isinstance(name, str) or not name:
            raise ConfigError(file, f"{key}.model_name", f"must be a non-empty string, got {name!r}")
        params = entry.get("litellm_params")
        if params is None:
            raise ConfigError(file, f"{key}.litellm_params", "required")
        if not isinstance(params, dict):
            raise ConfigError(file, f"{key}.litellm_params", f"must be a mapping, got {type(params).__name__}")
        if params.get("model") is None:
            raise ConfigError(file, f"{key}.litellm_params.model", "required")
        for pkey in _STRING_PARAMS:
            if pkey in params and params[pkey] is not None and (not isinstance(params[pkey], str) or not params[pkey]):
                raise ConfigError(file, f"{key}.litellm_params.{pkey}", f"must be a non-empty string, got {params[pkey]!r}")
        for pkey in _NUMBER_PARAMS:
            if params.get(pkey) is not None:
                params[pkey] = _number(params[pkey], f"{key}.litellm_params.{pkey}", file)
        for pkey in ("num_retries", "max_retries", "rpm", "tpm"):
            if params.get(pkey) is not None:
                params[pkey] = _number(params[pkey], f"{key}.litellm_params.{pkey}", file, integer=True)
        info = entry.get("model_info") or {}
        if not isinstance(info, dict):
            raise ConfigError(file, f"{key}.model_info", f"must be a mapping, got {type(info).__name__}")
        model_id = info.get("id")
        if model_id is None:
            # stable across restarts and workers: the same entry gets the same id
            digest = hashlib.sha256(f"{index}\0{name}\0{params.get('model')}\0{params.get('api_base')}".encode())
            model_id = digest.hexdigest()[:16]
        model_id = str(model_id)
        if model_id in seen_ids:
            raise ConfigError(file, f"{key}.model_info.id", f"{model_id!r} is already the id of model_list[{seen_ids[model_id]}]")
        seen_ids[model_id] = index
        unknown = set(entry) - {"model_name", "litellm_params", "model_info"}
        if unknown:
            raise ConfigError(file, f"{key}.{sorted(unknown)[0]}", "unknown key; known keys: model_name, litellm_params, model_info")
        call_params = {k: v for k, v in params.items() if k not in ROUTER_ONLY_PARAMS}
        if info:
            call_params["model_info"] = dict(info)
        out.append(
            Deployment(
                model_name=name,
                model_id=model_id,
                litellm_params=_freeze(params),
                model_info=_freeze(info),
                call_params=MappingProxyType(call_params),
            )
        )
    return tuple(out)


def _name_list(value: Any, key: str, file: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(file, key, f"must be a list of callback names, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ConfigError(file, f"{key}[{i}]", f"must be a callback name or a dotted path, got {item!r}")
    return list(value)


def _litellm_settings(settings: dict[str, Any], file: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        where = f"litellm_settings.{key}"
        if key in IGNORED_LITELLM_SETTINGS:
            continue
        if key not in LITELLM_SETTINGS_KEYS:
            raise ConfigError(file, where, f"unknown key; known keys: {', '.join(LITELLM_SETTINGS_KEYS)}")
        if value is None:
            continue
        if key in ("callbacks", "success_callback", "failure_callback"):
            out[key] = _name_list(value, where, file)
        elif key in ("turn_off_message_logging", "drop_params", "cache"):
            out[key] = _bool(value, where, file)
        elif key == "num_retries":
            out[key] = _number(value, where, file, integer=True)
        elif key == "request_timeout":
            out[key] = _number(value, where, file, minimum=0.001)
        elif key in ("cache_params", "generic_logger_headers"):
            if not isinstance(value, dict):
                raise ConfigError(file, where, f"must be a mapping, got {type(value).__name__}")
            out[key] = value
    if "cache_params" in out and not out.get("cache"):
        raise ConfigError(file, "litellm_settings.cache_params", "given without cache: true")
    return out


def thaw(value: Any) -> Any:
    """A plain (mutable) copy of a frozen config value."""
    if isinstance(value, MappingProxyType):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


__all__ = ["MASTER_KEY_ENV", "ConfigError", "Deployment", "ProxyConfig", "load_config", "thaw"]
