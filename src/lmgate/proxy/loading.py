"""From a validated config to a running ``lmgate``: objects named in the config, settings applied.

Dotted paths (``custom_callbacks.proxy_handler_instance``) load ``custom_callbacks.py`` from
the config's directory (nested dots are sub-directories) or, failing that, import an
installed module. A file is executed once per process and registered in ``sys.modules``, so
naming it twice (in ``callbacks`` and ``success_callback``, say) gives the same object, with
one copy of its state. Names without a dot (``generic_api``, a ``callback_settings`` name, a
preset) are resolved by ``lmgate._callbacks.registry``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..providers.mock import asks_for_mock
from .config import ConfigError, ProxyConfig, thaw

_file_modules: dict[str, ModuleType] = {}
_file_lock = threading.Lock()


@dataclass(frozen=True)
class Applied:
    """What ``apply_config`` registered, for the startup line and for readiness."""

    callbacks: tuple[Any, ...]
    callback_names: tuple[str, ...]
    success_callback: tuple[str, ...]
    failure_callback: tuple[str, ...]
    cache: str | None


def load_object(dotted: str, directory: Path, file: str, key: str) -> Any:
    """The object a dotted path names; ``ConfigError`` (naming ``key``) when it cannot be loaded."""
    module_path, _, attr = dotted.rpartition(".")
    if not module_path or not attr:
        raise ConfigError(
            f"{dotted!r} is not a dotted path like custom_callbacks.proxy_handler_instance", file, key
        )
    source = directory.joinpath(*module_path.split(".")).with_suffix(".py")
    if source.is_file():
        module = _load_file(module_path, source, file, key)
    else:
        try:
            module = importlib.import_module(module_path)
        except ImportError as error:
            raise ConfigError(
                f"cannot load {dotted!r}: no file {source} beside the config, and no importable module "
                f"{module_path!r} ({error})",
                file,
                key,
            ) from None
        except Exception as error:
            raise ConfigError(f"importing {module_path!r} raised {_describe(error)}", file, key) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        where = getattr(module, "__file__", None) or module_path
        raise ConfigError(f"{where} defines no {attr!r}", file, key) from None


def _load_file(module_path: str, source: Path, file: str, key: str) -> ModuleType:
    resolved = str(source.resolve())
    with _file_lock:
        module = _file_modules.get(resolved)
        if module is not None:
            return module
        existing = sys.modules.get(module_path)
        existing_file = getattr(existing, "__file__", None)
        if existing is not None and existing_file and str(Path(existing_file).resolve()) == resolved:
            _file_modules[resolved] = existing
            return existing
        # the natural name when it is free (so `import custom_callbacks` elsewhere finds the same
        # module); a private one when another module already owns that name
        name = module_path
        if name in sys.modules:
            name = f"_lmgate_config_{hashlib.sha256(resolved.encode()).hexdigest()[:12]}.{module_path}"
        spec = importlib.util.spec_from_file_location(name, source)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot load {source} as a Python module", file, key)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as error:
            del sys.modules[name]
            tb = "".join(traceback.format_exception_only(type(error), error)).strip()
            raise ConfigError(f"loading {source} raised {tb}", file, key) from None
        _file_modules[resolved] = module
        return module


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _check_callback(obj: Any, dotted: str, file: str, key: str) -> Any:
    from .._callbacks.dispatch import _is_logger

    if inspect.isclass(obj):
        raise ConfigError(
            f"{dotted!r} is a class; create an instance in the module "
            f"(for example `proxy_handler_instance = {obj.__name__}()`) and name the instance",
            file,
            key,
        )
    if not _is_logger(obj) and not callable(obj):
        raise ConfigError(
            f"{dotted!r} is a {type(obj).__name__}, neither a CustomLogger instance nor a function", file, key
        )
    return obj


def _resolve_entry(name: str, config: ProxyConfig, key: str) -> Any:
    if "." in name:
        obj = load_object(name, config.directory, config.path, key)
        return _check_callback(obj, name, config.path, key)
    from .._callbacks.registry import resolve_callback

    try:
        return resolve_callback(name)
    except ConfigError as error:
        if error.file is not None:  # already names its file and key
            raise
        raise ConfigError(f"cannot set up callback {name!r}: {_describe(error)}", config.path, key) from None
    except Exception as error:
        raise ConfigError(f"cannot set up callback {name!r}: {_describe(error)}", config.path, key) from None


def apply_config(config: ProxyConfig) -> Applied:
    """Set ``lmgate``'s module settings from ``config``; raises ``ConfigError`` naming the key."""
    import lmgate

    from .._secrets import header_secrets, remember_secret, url_secrets

    settings = config.litellm_settings
    warn_ignored(config)
    for deployment in config.model_list:
        remember_secret(deployment.litellm_params.get("api_key"))
        for name in ("aws_secret_access_key", "aws_session_token"):  # Bedrock's credentials
            remember_secret(deployment.litellm_params.get(name))
        for secret in url_secrets(
            deployment.litellm_params.get("api_base") or deployment.litellm_params.get("base_url")
        ):
            remember_secret(secret)
        for secret in header_secrets(deployment.litellm_params.get("extra_headers")):
            remember_secret(secret)
        if deployment.litellm_params.get("vertex_credentials"):  # vertex: a service account's private key
            from ..providers._google_auth import remember_credentials

            remember_credentials(deployment.litellm_params["vertex_credentials"])
    remember_secret(config.master_key)
    # callback_settings first: names in the lists are looked up in it
    callback_settings = thaw(config.callback_settings)
    if "s3_callback_params" in settings:  # the reference's place for the s3 logger's settings
        callback_settings.setdefault("s3", thaw(settings["s3_callback_params"]))
    default_store = _default_store(config, callback_settings, list(settings.get("callbacks") or ()), settings)
    lmgate.callback_settings = callback_settings
    if "generic_logger_headers" in settings:
        lmgate.generic_logger_headers = {
            str(k): str(v) for k, v in settings["generic_logger_headers"].items()
        }
    for flag in ("turn_off_message_logging", "drop_params"):
        if flag in settings:
            setattr(lmgate, flag, bool(settings[flag]))
    if "num_retries" in settings:
        lmgate.num_retries = int(settings["num_retries"])
    if "request_timeout" in settings:
        lmgate.request_timeout = float(settings["request_timeout"])
    cache_name = None
    if settings.get("cache"):
        params = thaw(settings.get("cache_params") or {})
        try:
            lmgate.cache = lmgate.Cache(**params)
        except Exception as error:
            raise ConfigError(
                f"cannot create the cache: {_describe(error)}", config.path, "litellm_settings.cache_params"
            ) from None
        cache_name = str(params.get("type") or "local")
    loaded: list[Any] = []
    names = list(settings.get("callbacks") or ())
    names += default_store
    for i, name in enumerate(names):
        loaded.append(_resolve_entry(name, config, f"litellm_settings.callbacks[{i}]"))
    lists: dict[str, list[Any]] = {}
    for list_name in ("success_callback", "failure_callback"):
        entries = settings.get(list_name)
        if entries is None:
            continue
        lists[list_name] = [
            _resolve_entry(name, config, f"litellm_settings.{list_name}[{i}]")
            for i, name in enumerate(entries)
        ]
    # callbacks are appended (as the reference does); the two function lists are replaced
    current = list(lmgate.callbacks)
    for obj in loaded:
        if not any(obj is c for c in current):
            current.append(obj)
    lmgate.callbacks = current
    for list_name, objs in lists.items():
        setattr(lmgate, list_name, objs)
    return Applied(
        callbacks=tuple(loaded),
        callback_names=tuple(names),
        success_callback=tuple(settings.get("success_callback") or ()),
        failure_callback=tuple(settings.get("failure_callback") or ()),
        cache=cache_name,
    )


def _default_store(
    config: ProxyConfig, callback_settings: dict[str, Any], names: list[str], settings: Any
) -> list[str]:
    """``["store"]`` when the default log store is on and the config does not name it already
    (proxy/store_config.py), with its ``callback_settings.store`` set; else ``[]``."""
    from . import store_config

    named = [*names, *(settings.get("success_callback") or ()), *(settings.get("failure_callback") or ())]
    if config.store is None or "store" in named or not store_config.switched_on():
        return []
    if (callback_settings.get("store") or {}).get("callback_type") not in (None, "store"):
        return []  # "store" names another logger in this config: leave the name to it
    callback_settings["store"] = store_config.callback_entry(thaw(config.store), config.data_dir)
    return ["store"]


def ignored_keys_warning(config: ProxyConfig) -> str | None:
    """The startup warning naming every key of the reference's that this config sets and lmgate
    does not act on; None when there is none."""
    if not config.ignored_keys:
        return None
    return (
        f"lmgate proxy: {config.path}: ignoring {len(config.ignored_keys)} key(s) the reference accepts and "
        f'lmgate does not act on: {", ".join(config.ignored_keys)} (docs/proxy.md "Keys from the reference")'
    )


def warn_ignored(config: ProxyConfig) -> None:
    """Log ``ignored_keys_warning`` once (per process that applies the config)."""
    import logging

    message = ignored_keys_warning(config)
    if message is not None:
        logging.getLogger("lmgate.proxy.config").warning(message)


def describe(config: ProxyConfig, applied: Applied) -> str:
    """The startup line: what was loaded, with every secret masked."""
    from .._secrets import mask_key, mask_url, scrub

    groups: dict[str, list[str]] = {}
    for d in config.model_list:
        text = d.model
        api_base = d.litellm_params.get("api_base") or d.litellm_params.get("base_url")
        if api_base:
            text += f" @ {mask_url(str(api_base))}"
        if d.litellm_params.get("api_key"):
            text += f" key={mask_key(str(d.litellm_params['api_key']))}"
        if asks_for_mock(d.litellm_params):
            text += " (mock)"
        groups.setdefault(d.model_name, []).append(text)
    models = "; ".join(f"{name} -> [{', '.join(items)}]" for name, items in groups.items()) or "none"
    parts = [
        f"lmgate proxy: loaded {config.path}",
        f"{len(groups)} model(s): {models}",
        f"callbacks: [{', '.join(applied.callback_names)}]",
    ]
    if applied.success_callback:
        parts.append(f"success_callback: [{', '.join(applied.success_callback)}]")
    if applied.failure_callback:
        parts.append(f"failure_callback: [{', '.join(applied.failure_callback)}]")
    if applied.cache:
        parts.append(f"cache: {applied.cache}")
    parts.append(f"routing: {config.routing_strategy}")
    parts.append(describe_auth(config))
    return scrub(" | ".join(parts))


def describe_auth(config: ProxyConfig) -> str:
    """The startup line's auth part: the masked key and where it came from, or in words that
    there is none."""
    from .._secrets import mask_key

    if not config.master_key:
        return "auth: NONE - every request is accepted without a key (set general_settings.master_key or LITELLM_MASTER_KEY)"
    text = f"auth: master_key {mask_key(config.master_key)} (from {config.master_key_source})"
    if config.virtual_keys:
        import os

        where = (
            "general_settings.database_url"
            if config.database_url
            else "DATABASE_URL"
            if os.environ.get("DATABASE_URL")
            else "SQLite in the data directory"
        )
        text += f" + virtual keys (store: {where})"
    return text


__all__ = ["Applied", "apply_config", "describe", "describe_auth", "ignored_keys_warning", "load_object"]
