"""The proxy's YAML, loaded once into frozen objects and validated at load.

Every error names the file and the key path (``config.yaml: model_list[1].litellm_params.model:
required``), so a bad config fails at startup with a message that says where to look.

Environment references resolve wherever a string value stands, at any depth, inside lists
too, with the grammar of ``lmgate._conf`` shared by every config reader: ``os.environ/NAME``,
``${NAME}`` and ``$NAME`` (``$$`` is a literal ``$``). A missing variable is an error naming the
key and the variable, never a silent empty string. Numbers, booleans and choices are checked
there too, and ``ConfigError`` is ``lmgate.exceptions.ConfigError``.

The master key comes from ``general_settings.master_key``; without it, from the environment:
``LMGATE_MASTER_KEY``, else ``LITELLM_MASTER_KEY`` (the reference reads the latter the same
way). A variable that is set but empty is an error, not a proxy without auth.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .. import _conf
from ..exceptions import ConfigError
from . import reference_keys as ref

DEFAULT_MAX_REQUEST_SIZE_MB = 10.0
DEFAULT_FLUSH_TIMEOUT_S = 30.0
DEFAULT_GRACEFUL_TIMEOUT_S = 30.0
# the HTTP server's limits (general_settings; docs/proxy.md "Limits and timeouts")
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 60.0
DEFAULT_KEEP_ALIVE_TIMEOUT_S = 5.0
DEFAULT_MAX_HEADER_KB = 32.0
ROUTING_STRATEGIES = (
    "round-robin",
    "least-busy",
    "simple-shuffle",
    "latency-based-routing",
    "usage-based-routing",
    "usage-based-routing-v2",
)
# where a master key may come from when general_settings has none, first found wins
MASTER_KEY_ENV = ("LMGATE_MASTER_KEY", "LITELLM_MASTER_KEY")

# litellm_params keys that steer routing and must not reach the provider
ROUTER_ONLY_PARAMS = frozenset(
    {"rpm", "tpm", "weight", "order", "max_parallel_requests", "region_name", "use_in_pass_through"}
)
_NUMBER_PARAMS = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "timeout",
    "stream_timeout",
    "mock_delay",
)
_STRING_PARAMS = (
    "model",
    "api_key",
    "api_base",
    "base_url",
    "api_version",
    "custom_llm_provider",
    "base_model",
)

TOP_LEVEL_KEYS = (
    "model_list",
    "litellm_settings",
    "callback_settings",
    "general_settings",
    "router_settings",
    "environment_variables",
)
LITELLM_SETTINGS_KEYS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "turn_off_message_logging",
    "cache",
    "cache_params",
    "drop_params",
    "num_retries",
    "request_timeout",
    "generic_logger_headers",
    "s3_callback_params",
)
# reference settings accepted and ignored (they configure parts lmgate does not have): reference_keys
IGNORED_LITELLM_SETTINGS = tuple(sorted(ref.IGNORED_LITELLM_SETTINGS))
GENERAL_SETTINGS_KEYS = (
    "master_key",
    "virtual_keys",
    "data_dir",
    "max_request_size_mb",
    "flush_timeout_s",
    "graceful_shutdown_timeout_s",
    "max_connections",
    "request_header_timeout_s",
    "request_body_timeout_s",
    "keep_alive_timeout_s",
    "max_request_header_kb",
    "store",  # the log store, on by default (proxy/store_config.py)
)
ROUTER_SETTINGS_KEYS = (
    "routing_strategy",
    "num_retries",
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
_FALLBACK_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")


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
class ServerLimits:
    """What one connection may hold of the server: see ``docs/proxy.md`` "Limits and timeouts"."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    keep_alive_timeout_s: float = DEFAULT_KEEP_ALIVE_TIMEOUT_S
    max_header_bytes: int = int(DEFAULT_MAX_HEADER_KB * 1024)


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
    limits: ServerLimits = ServerLimits()
    # the reference's keys this config sets that lmgate does not act on (key paths, config order):
    # named in one startup warning
    ignored_keys: tuple[str, ...] = ()
    # virtual keys (docs/keys.md): on only when general_settings.virtual_keys is true; then
    # database_url (general_settings, else DATABASE_URL) names the store, else SQLite in data_dir
    virtual_keys: bool = False
    database_url: str | None = None
    data_dir: str | None = None
    # the default log store's settings (proxy/store_config.py); None: off
    store: MappingProxyType[str, Any] | None = None
    # general_settings.alerting: ["webhook"]: where soft-budget alerts are POSTed (WEBHOOK_URL;
    # proxy/alerts.py); None: no webhook
    alert_webhook_url: str | None = None

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
        raise ConfigError(f"cannot read the config file: {error.strerror or error}", name, None) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"not valid YAML: {where}{problem}", name, None) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"the top level must be a mapping of sections, got {type(raw).__name__}", name, None
        )
    env = dict(os.environ if environ is None else environ)
    # environment_variables: set before anything else resolves, as the reference does
    extra_env = raw.get("environment_variables") or {}
    if not isinstance(extra_env, dict):
        raise ConfigError("must be a mapping of NAME: value", name, "environment_variables")
    for key, value in extra_env.items():
        value = _conf.resolve_env(value, where=f"environment_variables.{key}", file=name, environ=env)
        env[str(key)] = str(value)
        if environ is None:
            os.environ[str(key)] = str(value)
    data = _conf.resolve_env(raw, where="", file=name, environ=env)
    config = _build(name, file, data)
    config = _alerting(config, env)
    if config.master_key is not None:
        return replace(config, master_key_source="general_settings.master_key")
    if config.virtual_keys and not any(env.get(var, "").strip() for var in MASTER_KEY_ENV):
        raise ConfigError(
            f"virtual keys need an admin: set general_settings.master_key (or {' or '.join(MASTER_KEY_ENV)})",
            name,
            "general_settings.virtual_keys",
        )
    for var in MASTER_KEY_ENV:
        value = env.get(var)
        if value is None:
            continue
        if not value.strip():
            raise ConfigError(
                f"environment variable {var} is set but empty: set it to the master key, "
                "or unset it to run without a key (bound to 127.0.0.1)",
                name,
                None,
            )
        # surrounding whitespace is never part of a key (a Kubernetes secret often ends in a newline)
        return replace(config, master_key=value.strip(), master_key_source=var)
    return config


def _alerting(config: ProxyConfig, env: dict[str, str]) -> ProxyConfig:
    """``general_settings.alerting``: ``webhook`` delivers soft-budget alerts (proxy/alerts.py);
    the reference's other types stay named in the startup warning."""
    from .alerts import WEBHOOK, webhook_url

    general = config.general_settings
    url = webhook_url(general, env, str(config.path), config.virtual_keys)
    if url is None:
        return config
    kinds = general.get("alerting")
    ignored = config.ignored_keys
    if all(kind == WEBHOOK for kind in ([kinds] if isinstance(kinds, str) else kinds or ())):
        ignored = tuple(k for k in ignored if k != "general_settings.alerting")
    return replace(config, alert_webhook_url=url, ignored_keys=ignored)


# ---------------------------------------------------------------------- validation


def _key_store(general: dict[str, Any], file: str, ignored: list[str]) -> tuple[bool, str | None, str | None]:
    """``virtual_keys``, ``database_url`` and ``data_dir`` of general_settings.

    Keys are on only when ``virtual_keys`` is true: a reference config that names a
    ``database_url`` for its own proxy keeps running as before (the URL ignored, with the
    warning) until its owner asks for keys.
    """
    enabled = _conf.boolean(
        general.get("virtual_keys", False), name="general_settings.virtual_keys", where=file
    )
    data_dir = general.get("data_dir")
    if data_dir is not None and (not isinstance(data_dir, str) or not data_dir.strip()):
        raise ConfigError("must be a directory path", file, "general_settings.data_dir")
    url = general.get("database_url")
    if not enabled:
        return False, None, data_dir
    if "general_settings.database_url" in ignored:
        ignored.remove("general_settings.database_url")
    scheme = (
        url.partition("://")[0].split("+", 1)[0].lower() if isinstance(url, str) and "://" in url else None
    )
    if url is not None and scheme not in ("sqlite", "postgres", "postgresql"):
        # the value is not echoed: a URL may carry a password
        raise ConfigError(
            "must be a database URL: sqlite:///path or postgresql://user:password@host:5432/db",
            file,
            "general_settings.database_url",
        )
    return True, url.strip() if isinstance(url, str) else None, data_dir


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
        raise ConfigError(f"must be a mapping, got {type(value).__name__}", file, key)
    return value


def _number(value: Any, key: str, file: str, *, minimum: float = 0.0, integer: bool = False) -> Any:
    return _conf.number(value, name=key, where=file, minimum=minimum, integer=integer)


def _check_keys(
    keys: Any,
    file: str,
    prefix: str,
    ours: tuple[str, ...] | frozenset[str],
    ignored: frozenset[str],
    refused: dict[str, str],
    found: list[str],
    *,
    noun: str = "key",
) -> None:
    """Every key is ours, the reference's and ignored (added to ``found``), or an error: refused
    with the reason, or unknown with the nearest known name."""
    for key in keys:
        where = f"{prefix}{key}"
        if key in ours:
            continue
        if key in refused:
            raise ConfigError(f"not supported by lmgate, refusing to start: {refused[key]}", file, where)
        if key in ignored:
            found.append(where)
            continue
        known = set(ours) | set(ignored) | set(refused)
        message = ref.unknown_key_message(str(key), known, ours)
        if noun != "key":
            message = message.replace("unknown key", f"unknown {noun}").replace(
                "known keys", f"known {noun}s"
            )
        raise ConfigError(message, file, where)


def _build(file: str, path: Path, data: dict[str, Any]) -> ProxyConfig:
    ignored: list[str] = []
    _check_keys(
        data, file, "", TOP_LEVEL_KEYS, ref.IGNORED_SECTIONS, ref.REFUSED_SECTIONS, ignored, noun="section"
    )
    deployments = _model_list(data.get("model_list"), file, ignored)
    litellm_settings = _litellm_settings(_mapping(data, "litellm_settings", file), file, ignored)
    callback_settings = _mapping(data, "callback_settings", file)
    for name, settings in callback_settings.items():
        if not isinstance(settings, dict):
            raise ConfigError(
                f"must be a mapping, got {type(settings).__name__}", file, f"callback_settings.{name}"
            )
    general = _mapping(data, "general_settings", file)
    _check_keys(
        general,
        file,
        "general_settings.",
        GENERAL_SETTINGS_KEYS,
        ref.IGNORED_GENERAL_SETTINGS,
        ref.REFUSED_GENERAL_SETTINGS,
        ignored,
    )
    master_key = general.get("master_key")
    if master_key is not None and (not isinstance(master_key, str) or not master_key.strip()):
        raise ConfigError("must be a non-empty string", file, "general_settings.master_key")
    if isinstance(master_key, str):
        master_key = master_key.strip()  # as from the environment: whitespace around a key is not the key
    size_mb = _conf.number(
        general.get("max_request_size_mb", DEFAULT_MAX_REQUEST_SIZE_MB),
        name="general_settings.max_request_size_mb",
        where=file,
        minimum=0.0001,
    )
    flush_timeout = _conf.duration_s(
        general.get("flush_timeout_s", DEFAULT_FLUSH_TIMEOUT_S),
        name="general_settings.flush_timeout_s",
        where=file,
    )
    graceful = _conf.duration_s(
        general.get("graceful_shutdown_timeout_s", DEFAULT_GRACEFUL_TIMEOUT_S),
        name="general_settings.graceful_shutdown_timeout_s",
        where=file,
    )
    limits = _limits(general, file)
    virtual_keys, database_url, data_dir = _key_store(general, file, ignored)
    from . import store_config

    store = store_config.parse(general, file)
    router = _mapping(data, "router_settings", file)
    _check_keys(
        router, file, "router_settings.", ROUTER_SETTINGS_KEYS, ref.IGNORED_ROUTER_SETTINGS, {}, ignored
    )
    strategy_value = router.get("routing_strategy", "round-robin")
    if strategy_value in ref.REFERENCE_ONLY_ROUTING_STRATEGIES:
        # the reference's strategy that lmgate lacks: the default, named in the warning
        ignored.append(f"router_settings.routing_strategy={strategy_value}")
        strategy_value = "round-robin"
    strategy = _conf.choice(
        strategy_value,
        ROUTING_STRATEGIES,
        name="router_settings.routing_strategy",
        where=file,
    )
    router_retries = router.get("num_retries")
    if router_retries is not None:
        router_retries = _number(router_retries, "router_settings.num_retries", file, integer=True)
    _router_settings(router, {d.model_name for d in deployments}, file)
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
        virtual_keys=virtual_keys,
        database_url=database_url,
        data_dir=data_dir,
        store=None if store is None else _freeze(store),
        limits=limits,
        ignored_keys=tuple(dict.fromkeys(ignored)),
    )


def _router_settings(router: dict[str, Any], groups: set[str], file: str) -> None:
    """Check the Router's settings here, so an error names the file (lmgate.Router takes them as read)."""
    from ..router.fallbacks import read_fallbacks

    if router.get("allowed_fails") is not None:
        router["allowed_fails"] = _number(
            router["allowed_fails"], "router_settings.allowed_fails", file, integer=True
        )
    if router.get("cooldown_time") is not None:
        router["cooldown_time"] = _conf.duration_s(
            router["cooldown_time"], name="router_settings.cooldown_time", where=file
        )
    if router.get("redis_port") is not None:
        router["redis_port"] = _number(router["redis_port"], "router_settings.redis_port", file, integer=True)
    for key in ("redis_url", "redis_host", "redis_password"):
        if router.get(key) is not None and not isinstance(router[key], str):
            raise ConfigError(
                f"must be a string, got {type(router[key]).__name__}", file, f"router_settings.{key}"
            )
    for key in _FALLBACK_KEYS:
        try:
            table = read_fallbacks(router.get(key), key)
        except ConfigError as error:
            raise ConfigError(error.detail, file, f"router_settings.{error.key}", error.fix) from None
        for targets in table.values():
            for target in targets:
                if target not in groups:
                    raise ConfigError(
                        f"names {target!r}, which is not a model_name of model_list",
                        file,
                        f"router_settings.{key}",
                        fix=f"use one of: {', '.join(sorted(groups)) or '(no models configured)'}",
                    )


def _limits(general: dict[str, Any], file: str) -> ServerLimits:
    def seconds(key: str, default: float) -> float:
        return _conf.duration_s(
            general.get(key, default), name=f"general_settings.{key}", where=file, minimum=0.01
        )

    def number(key: str, default: float, integer: bool = False) -> Any:
        return _conf.number(
            general.get(key, default), name=f"general_settings.{key}", where=file, minimum=1, integer=integer
        )

    return ServerLimits(
        max_connections=number("max_connections", DEFAULT_MAX_CONNECTIONS, integer=True),
        header_timeout_s=seconds("request_header_timeout_s", DEFAULT_HEADER_TIMEOUT_S),
        body_timeout_s=seconds("request_body_timeout_s", DEFAULT_BODY_TIMEOUT_S),
        keep_alive_timeout_s=seconds("keep_alive_timeout_s", DEFAULT_KEEP_ALIVE_TIMEOUT_S),
        max_header_bytes=int(number("max_request_header_kb", DEFAULT_MAX_HEADER_KB) * 1024),
    )


def _known_litellm_params(providers: bool) -> frozenset[str]:
    """Every litellm_params key a deployment may set: lmgate's call controls, the router's, the
    reference's provider and ignored parameters, and (``providers``) the request and credential
    parameters of every provider. Collecting those imports every provider module (Bedrock's
    signer, Vertex's auth...), so a config asks for them only when a key is not in the rest: a
    proxy whose keys are all common ones never loads a provider it does not use."""
    from .._call import CONTROL_PARAMS

    common = (
        CONTROL_PARAMS
        | ROUTER_ONLY_PARAMS
        | ref.PROVIDER_PARAMS
        | ref.IGNORED_LITELLM_PARAMS
        | {"model", "stream"}
    )
    if not providers:
        return common
    from ..providers import PROVIDERS

    provider_params: set[str] = set()
    for provider in PROVIDERS.values():
        provider_params |= provider.supported_params or frozenset()
    return common | provider_params


def _check_provider(params: dict[str, Any], file: str, where: str) -> None:
    """An unknown provider prefix fails at start, not as a 400 blamed on the client later."""
    from .. import exceptions as exc
    from ..providers import PROVIDERS, resolve
    from ..providers.mock import asks_for_mock

    if asks_for_mock(params):
        return  # a mock answers for any model name
    model = params["model"]
    if not isinstance(model, str) or not model:
        raise ConfigError(f"must be a non-empty string, got {model!r}", file, f"{where}.model")
    try:
        resolve(model, params.get("custom_llm_provider"), params.get("api_base") or params.get("base_url"))
    except exc.UnknownModelError:
        provider = params.get("custom_llm_provider")
        key = f"{where}.custom_llm_provider" if provider else f"{where}.model"
        prefix = provider or model.partition("/")[0]
        guess = ref.nearest(prefix, PROVIDERS)
        hint = f"did you mean {guess!r}? " if guess and guess != prefix else ""
        raise ConfigError(
            f"no provider for {model!r}: {hint}known provider prefixes: {', '.join(sorted(PROVIDERS))}; "
            "a bare OpenAI (gpt-*) or Anthropic (claude-*) name; or any name with api_base "
            "(an OpenAI-compatible server)",
            file,
            key,
        ) from None


def _model_list(value: Any, file: str, ignored: list[str]) -> tuple[Deployment, ...]:
    if value is None:
        return ()
    known_params = _known_litellm_params(providers=False)
    every_param: frozenset[str] | None = None  # with the providers' own: built at the first uncommon key
    if not isinstance(value, list):
        raise ConfigError(f"must be a list of models, got {type(value).__name__}", file, "model_list")
    out: list[Deployment] = []
    seen_ids: dict[str, int] = {}
    for index, entry in enumerate(value):
        key = f"model_list[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(
                f"must be a mapping with model_name and litellm_params, got {type(entry).__name__}", file, key
            )
        name = entry.get("model_name")
        if name is None:
            raise ConfigError("required", file, f"{key}.model_name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"must be a non-empty string, got {name!r}", file, f"{key}.model_name")
        params = entry.get("litellm_params")
        if params is None:
            raise ConfigError("required", file, f"{key}.litellm_params")
        if not isinstance(params, dict):
            raise ConfigError(
                f"must be a mapping, got {type(params).__name__}", file, f"{key}.litellm_params"
            )
        if params.get("model") is None:
            raise ConfigError("required", file, f"{key}.litellm_params.model")
        for pkey in params:
            if pkey not in known_params and every_param is None:
                every_param = _known_litellm_params(providers=True)
            if pkey not in known_params and pkey not in (every_param or ()):
                guess = ref.nearest(str(pkey), every_param or known_params)
                what = (
                    f"did you mean {guess!r}?"
                    if guess
                    else "not a parameter of lmgate, its providers or the reference"
                )
                raise ConfigError(
                    f"unknown key; {what} (to send the provider a parameter lmgate does not know, "
                    f"put it under extra_body: {{{pkey}: ...}})",
                    file,
                    f"{key}.litellm_params.{pkey}",
                )
            if pkey in ref.IGNORED_LITELLM_PARAMS:
                ignored.append(f"{key}.litellm_params.{pkey}")
        for pkey in _STRING_PARAMS:
            if (
                pkey in params
                and params[pkey] is not None
                and (not isinstance(params[pkey], str) or not params[pkey])
            ):
                raise ConfigError(
                    f"must be a non-empty string, got {params[pkey]!r}", file, f"{key}.litellm_params.{pkey}"
                )
        for pkey in _NUMBER_PARAMS:
            if params.get(pkey) is not None:
                params[pkey] = _number(params[pkey], f"{key}.litellm_params.{pkey}", file)
        for pkey in ("num_retries", "max_retries", "rpm", "tpm"):
            if params.get(pkey) is not None:
                params[pkey] = _number(params[pkey], f"{key}.litellm_params.{pkey}", file, integer=True)
        info = entry.get("model_info") or {}
        if not isinstance(info, dict):
            raise ConfigError(f"must be a mapping, got {type(info).__name__}", file, f"{key}.model_info")
        most = info.get("max_output_tokens")  # what a budget reserves for a request without max_tokens
        if most is not None and (not isinstance(most, int) or isinstance(most, bool) or most <= 0):
            raise ConfigError(
                f"must be a positive whole number of tokens (the most the model generates in one "
                f"answer), got {most!r}",
                file,
                f"{key}.model_info.max_output_tokens",
            )
        model_id = info.get("id")
        if model_id is None:
            # stable across restarts and workers: the same entry gets the same id
            digest = hashlib.sha256(
                f"{index}\0{name}\0{params.get('model')}\0{params.get('api_base')}".encode()
            )
            model_id = digest.hexdigest()[:16]
        model_id = str(model_id)
        if model_id in seen_ids:
            raise ConfigError(
                f"{model_id!r} is already the id of model_list[{seen_ids[model_id]}]",
                file,
                f"{key}.model_info.id",
            )
        seen_ids[model_id] = index
        unknown = set(entry) - {"model_name", "litellm_params", "model_info"}
        if unknown:
            first = sorted(unknown)[0]
            raise ConfigError(
                ref.unknown_key_message(first, ("model_name", "litellm_params", "model_info")),
                file,
                f"{key}.{first}",
            )
        _check_provider(params, file, f"{key}.litellm_params")
        call_params = {
            k: v
            for k, v in params.items()
            if k not in ROUTER_ONLY_PARAMS and k not in ref.IGNORED_LITELLM_PARAMS
        }
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
        raise ConfigError(f"must be a list of callback names, got {type(value).__name__}", file, key)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"must be a callback name or a dotted path, got {item!r}", file, f"{key}[{i}]")
    return list(value)


def _litellm_settings(settings: dict[str, Any], file: str, ignored: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, reason in ref.REFUSED_LITELLM_SETTINGS_WHEN_TRUE.items():
        if key in settings and _conf.boolean(settings[key], name=f"litellm_settings.{key}", where=file):
            raise ConfigError(
                f"not supported by lmgate, refusing to start: {reason}", file, f"litellm_settings.{key}"
            )
    ours = LITELLM_SETTINGS_KEYS + tuple(ref.REFUSED_LITELLM_SETTINGS_WHEN_TRUE)
    _check_keys(
        settings,
        file,
        "litellm_settings.",
        ours,
        ref.IGNORED_LITELLM_SETTINGS,
        ref.REFUSED_LITELLM_SETTINGS,
        ignored,
    )
    for key, value in settings.items():
        where = f"litellm_settings.{key}"
        if key not in LITELLM_SETTINGS_KEYS:
            continue  # ignored (named in the warning), or asked to be false: what lmgate does
        if value is None:
            continue
        if key in ("callbacks", "success_callback", "failure_callback"):
            out[key] = _name_list(value, where, file)
        elif key in ("turn_off_message_logging", "drop_params", "cache"):
            out[key] = _conf.boolean(value, name=where, where=file)
        elif key == "num_retries":
            out[key] = _number(value, where, file, integer=True)
        elif key == "request_timeout":
            out[key] = _conf.duration_s(value, name=where, where=file, above=0)
        elif key in ("cache_params", "generic_logger_headers", "s3_callback_params"):
            if not isinstance(value, dict):
                raise ConfigError(f"must be a mapping, got {type(value).__name__}", file, where)
            out[key] = value
    if "cache_params" in out and not out.get("cache"):
        raise ConfigError("given without cache: true", file, "litellm_settings.cache_params")
    return out


def thaw(value: Any) -> Any:
    """A plain (mutable) copy of a frozen config value."""
    if isinstance(value, MappingProxyType):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


__all__ = [
    "MASTER_KEY_ENV",
    "ConfigError",
    "Deployment",
    "ProxyConfig",
    "ServerLimits",
    "load_config",
    "thaw",
]
