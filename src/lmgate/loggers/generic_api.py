"""``GenericAPILogger``: standard logging payloads POSTed to any HTTP endpoint (a webhook).

Configured four ways (see ``docs/loggers.md``): ``lmgate.callbacks = ["generic_api"]`` with
``GENERIC_LOGGER_ENDPOINT`` / ``GENERIC_LOGGER_HEADERS``; an instance; a named entry of
``lmgate.callback_settings`` with ``callback_type: generic_api``; a preset of
``generic_api_compatible_callbacks.json`` by name (a user's settings override its defaults).
Those sources are merged once into a frozen ``GenericAPISettings``; the wire is
``http_exporter.HTTPExporter``; delivery, retries, bounds, spool and exit are the batch
processor's (``processor.py``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import _conf
from .._retry import RetryPolicy
from .._secrets import is_secret_header, remember_secret, url_origin
from ._env import LoggerConfigError, env_number, parse_header_list, resolve_env_refs
from .batch import BatchLogger
from .batch_settings import (
    BATCH_OPTIONS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_FLUSH_INTERVAL_S,
    BatchSettings,
    positive,
)
from .http_exporter import (  # noqa: F401 - re-exported: the names this module always had
    CONTENT_TYPES,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_TIMEOUT_S,
    LOG_FORMATS,
    SPLIT_STATUSES,
    HTTPExporter,
    classify,
)
from .presets import PRESETS_FILE, load_presets  # noqa: F401 - re-exported names

if TYPE_CHECKING:
    from ..settings import Settings

# GenericAPILogger(global_headers=...) not given: the module-level generic_logger_headers
_MODULE_HEADERS: Any = object()

__all__ = ["GenericAPILogger", "GenericAPISettings", "HTTPExporter", "logger_for_name", "load_presets"]

# batches on the wire at once: while one waits for the receiver's answer the next is sent
# (about 1.5x the records/s of one at a time to a local receiver; docs/loggers.md "Throughput")
DEFAULT_MAX_IN_FLIGHT = 3
# headers that carry no secret, so their values need no masking
_PLAIN_HEADERS = frozenset({"content-type", "accept", "user-agent", "content-encoding"})


def _merge_headers(*layers: dict[str, Any] | None) -> dict[str, str]:
    """Later layers win; names compare case-insensitively (the later spelling is kept)."""
    merged: dict[str, tuple[str, str]] = {}
    for layer in layers:
        for name, value in (layer or {}).items():
            if value is None:
                continue
            if isinstance(value, (dict, list, tuple, set)):
                raise LoggerConfigError(f"headers: the value of {name!r} must be text")
            merged[str(name).lower()] = (str(name), str(value))
    return dict(merged.values())


@dataclass(frozen=True)
class GenericAPISettings:
    """A generic API logger's settings, merged from every source and checked, once."""

    endpoint: str
    headers: dict[str, str]  # resolved values: keep them out of logs
    log_format: str
    timeout: float
    gzip: bool
    max_concurrency: int
    callback_name: str | None
    name: str
    batch: BatchSettings

    @classmethod
    def build(
        cls,
        endpoint: str | None = None,
        headers: dict[str, Any] | None = None,
        event_types: Any = None,
        log_format: str | None = None,
        callback_name: str | None = None,
        *,
        batch_size: Any = None,
        flush_interval: Any = None,
        timeout: Any = None,
        retry_delay: Any = None,
        retry_policy: RetryPolicy | None = None,
        gzip: bool = False,
        max_concurrency: Any = DEFAULT_MAX_CONCURRENCY,
        max_in_flight: Any = DEFAULT_MAX_IN_FLIGHT,
        global_headers: Any = None,
        version: str = "",
        generic_headers: bool = True,
        **batch_options: Any,
    ) -> GenericAPISettings:
        """Arguments win over the preset named by ``callback_name``, which wins over the
        environment (``GENERIC_LOGGER_*``, ``DEFAULT_BATCH_SIZE``, ``DEFAULT_FLUSH_INTERVAL_SECONDS``).
        ``batch_options`` are the other ``BATCH_OPTIONS``, checked by ``BatchSettings.build``."""
        if headers is not None and not isinstance(headers, dict):
            raise LoggerConfigError(
                f"headers must be a mapping of name to value, got {type(headers).__name__}"
            )
        preset: dict[str, Any] = {}
        if callback_name is not None:
            preset = load_presets().get(callback_name, {})
        # a user's settings win over the preset's; the preset fills what they leave out
        endpoint = endpoint or preset.get("endpoint") or os.environ.get("GENERIC_LOGGER_ENDPOINT")
        if not endpoint:
            raise LoggerConfigError(
                "endpoint is required: pass endpoint=, set it in callback_settings, or set GENERIC_LOGGER_ENDPOINT"
            )
        if event_types is None:
            event_types = preset.get("event_types")
        log_format = log_format or preset.get("log_format") or "json_array"
        log_format = _conf.choice(log_format, LOG_FORMATS, name="log_format")
        resolved_endpoint = resolve_env_refs(str(endpoint), "endpoint")
        parts = urlsplit(resolved_endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LoggerConfigError(f"endpoint must be an http(s) URL, got {url_origin(resolved_endpoint)!r}")
        # a preset for another service (Datadog) takes none of the headers meant for webhooks:
        # a webhook's token must not travel to a third party
        env_headers = os.environ.get("GENERIC_LOGGER_HEADERS") if generic_headers else None
        if not generic_headers:
            global_headers = None
        merged = _merge_headers(
            {"Content-Type": CONTENT_TYPES[log_format], "User-Agent": f"lmgate/{version}"},
            parse_header_list(env_headers, "GENERIC_LOGGER_HEADERS") if env_headers else None,
            global_headers,
            preset.get("headers"),
            headers,
        )
        resolved: dict[str, str] = {}
        for name, value in merged.items():
            secret = name.lower() not in _PLAIN_HEADERS
            resolved[name] = resolve_env_refs(value, f"headers[{name!r}]", secret=secret)
            if secret or is_secret_header(name):
                remember_secret(resolved[name])
        if batch_size is None:
            batch_size = env_number("DEFAULT_BATCH_SIZE", DEFAULT_BATCH_SIZE, integer=True)
        if flush_interval is None:
            flush_interval = env_number("DEFAULT_FLUSH_INTERVAL_SECONDS", DEFAULT_FLUSH_INTERVAL_S)
        if retry_policy is None and retry_delay is not None:
            base = _conf.duration_s(retry_delay, name="retry_delay")
            retry_policy = RetryPolicy(base_delay_s=max(0.0, base), max_delay_s=max(10.0, base))
        timeout_s = positive(timeout if timeout is not None else DEFAULT_TIMEOUT_S, "timeout")
        concurrency = positive(max_concurrency, "max_concurrency", integer=True)
        name = callback_name or "generic_api-" + hashlib.sha256(resolved_endpoint.encode()).hexdigest()[:12]
        return cls(
            endpoint=resolved_endpoint,
            headers=resolved,
            log_format=log_format,
            timeout=timeout_s,
            gzip=bool(gzip),
            max_concurrency=concurrency,
            callback_name=callback_name,
            name=name,
            batch=BatchSettings.build(
                name=name,
                event_types=event_types,
                batch_size=batch_size,
                flush_interval=flush_interval,
                retry_policy=retry_policy,
                max_in_flight=max_in_flight,
                **batch_options,
            ),
        )


class GenericAPILogger(BatchLogger):
    """Sends standard logging payloads to an HTTP endpoint; see the module docstring. Takes the
    reference's arguments and lmgate's (``GenericAPISettings.build``); ``transport`` is an
    ``httpx`` transport for tests."""

    # GENERIC_LOGGER_HEADERS and lmgate.generic_logger_headers apply (not to a preset for another service)
    takes_generic_headers = True

    def __init__(
        self,
        endpoint: str | None = None,
        headers: dict[str, Any] | None = None,
        event_types: Any = None,
        log_format: str | None = None,
        callback_name: str | None = None,
        *,
        transport: Any = None,
        global_headers: Any = _MODULE_HEADERS,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("async_httpx_client", None)  # the reference's parameter; we own our client
        own = {k: kwargs.pop(k) for k in _BUILD_KEYS if k in kwargs}
        from .._version import __version__

        if global_headers is _MODULE_HEADERS:  # built by hand: the module-level generic_logger_headers
            from ..settings import DEFAULT

            global_headers = DEFAULT.generic_logger_headers
        settings = GenericAPISettings.build(
            endpoint,
            headers,
            event_types,
            log_format,
            callback_name,
            global_headers=global_headers,
            version=__version__,
            generic_headers=self.takes_generic_headers,
            **own,
        )
        self.api_settings = settings
        self.endpoint = settings.endpoint
        self.log_format = settings.log_format
        self.callback_name = callback_name
        exporter = self.make_exporter(settings, transport)
        super().__init__(exporter, name=settings.name, settings=settings.batch, **kwargs)

    def make_exporter(self, settings: GenericAPISettings, transport: Any) -> HTTPExporter:
        """The wire for ``settings``; a preset with its own record shape (Datadog) overrides this."""
        return HTTPExporter(
            settings.endpoint,
            settings.headers,
            settings.log_format,
            timeout=settings.timeout,
            gzip=settings.gzip,
            max_concurrency=settings.max_concurrency,
            transport=transport,
            name=settings.callback_name or "generic_api",
        )

    def __repr__(self) -> str:
        return f"<GenericAPILogger {self.name!r} {url_origin(self.endpoint)} {self.log_format}>"

    @property
    def headers(self) -> dict[str, str]:
        """The headers sent (values as configured: keep this out of logs)."""
        return dict(self.exporter.headers)  # type: ignore[attr-defined]

    @classmethod
    def from_settings(cls, name: str, settings: dict[str, Any], **kwargs: Any) -> GenericAPILogger:
        """A logger from a ``callback_settings`` entry; an unknown key is an error naming it."""
        options = {k: v for k, v in settings.items() if k != "callback_type"}
        unknown = sorted(set(options) - _SETTING_KEYS)
        if unknown:
            raise LoggerConfigError(
                f"callback_settings[{name!r}]: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_SETTING_KEYS))}"
            )
        try:
            return cls(callback_name=name, **options, **kwargs)
        except LoggerConfigError as error:
            raise LoggerConfigError(f"callback_settings[{name!r}]: {error}") from None


# GenericAPISettings.build's keywords: the batch options (event_types is positional there) and its own
_BUILD_KEYS = (
    *(k for k in BATCH_OPTIONS if k != "event_types"),
    "timeout",
    "retry_delay",
    "gzip",
    "max_concurrency",
)
# what a callback_settings entry may hold (a retry_policy object cannot be written in YAML)
_SETTING_KEYS = frozenset(
    {"endpoint", "headers", "event_types", "log_format", "turn_off_message_logging", *_BUILD_KEYS}
) - {"retry_policy"}


def logger_for_name(name: str, settings: Settings | None = None) -> GenericAPILogger | None:
    """The registry's resolver: "generic_api", a ``callback_settings`` entry with
    ``callback_type: generic_api``, or a preset name; None for any other name. ``settings``
    (default: the module's) give ``callback_settings`` and ``generic_logger_headers``."""
    from ..settings import DEFAULT

    s = settings or DEFAULT
    headers = s.generic_logger_headers
    entry = (s.callback_settings or {}).get(name)
    if isinstance(entry, Mapping) and entry.get("callback_type") == "generic_api":
        return GenericAPILogger.from_settings(name, dict(entry), global_headers=headers)
    if name == "generic_api":
        return GenericAPILogger(global_headers=headers)
    if name in load_presets():
        return GenericAPILogger(callback_name=name, global_headers=headers)
    return None
