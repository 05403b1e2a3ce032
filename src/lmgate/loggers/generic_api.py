"""``GenericAPILogger``: standard logging payloads POSTed to any HTTP endpoint (a webhook).

Configured four ways (see ``docs/loggers.md``): ``lmgate.callbacks = ["generic_api"]`` with
``GENERIC_LOGGER_ENDPOINT`` / ``GENERIC_LOGGER_HEADERS``; an instance; a named entry of
``lmgate.callback_settings`` with ``callback_type: generic_api``; a preset of
``generic_api_compatible_callbacks.json`` by name (a user's settings override its defaults).

The wire (``HTTPExporter``): ``json_array`` — one POST with a JSON array; ``ndjson`` — one POST,
``application/x-ndjson``, one record a line; ``single`` — one POST per record, at most
``max_concurrency`` at a time. Each request carries an ``Idempotency-Key``, the same on every
retry. Delivery, retries, bounds, spool and exit are the batching base's (``batch.py``).
"""

from __future__ import annotations

import email.utils
import functools
import gzip as gzip_module
import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from .._retry import RetryPolicy
from .._secrets import is_secret_header, remember_secret, url_origin
from ._env import LoggerConfigError, env_number, parse_header_list, resolve_env_refs
from .batch import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_RECORDS,
    DELIVERED,
    Batch,
    BatchLogger,
    Outcome,
    positive,
)

__all__ = ["GenericAPILogger", "HTTPExporter", "logger_for_name", "load_presets"]

LOG_FORMATS = ("json_array", "ndjson", "single")
CONTENT_TYPES = {
    "json_array": "application/json",
    "ndjson": "application/x-ndjson",
    "single": "application/json",
}
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_CONCURRENCY = 8
# batches on the wire at once: while one waits for the receiver's answer the next is sent
# (about 1.5x the records/s of one at a time to a local receiver; docs/loggers.md "Throughput")
DEFAULT_MAX_IN_FLIGHT = 3
PRESETS_FILE = "generic_api_compatible_callbacks.json"
# answers that refuse a request as a whole: too large, or holding a record the receiver refuses
SPLIT_STATUSES = (400, 413)
# headers that carry no secret, so their values need no masking
_PLAIN_HEADERS = frozenset({"content-type", "accept", "user-agent", "content-encoding"})


def load_presets() -> dict[str, dict[str, Any]]:
    """The pre-configured callbacks shipped with lmgate, by name."""
    text = resources.files("lmgate.loggers").joinpath(PRESETS_FILE).read_text(encoding="utf-8")
    data: dict[str, dict[str, Any]] = json.loads(text)
    return data


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify(status: int, retry_after: str | None = None) -> Outcome:
    """2xx delivered; 408, 429 and 5xx retried; 413 (too large) and 400 (a record refused) split
    into halves to find what the receiver takes; anything else dropped (retrying cannot fix it)."""
    if 200 <= status < 300:
        return DELIVERED
    if status in (408, 429) or status >= 500:
        return Outcome("retry", f"http_{status}", _retry_after_s(retry_after))
    if status in SPLIT_STATUSES:
        return Outcome("split", f"rejected_{status}")
    return Outcome("drop", f"http_{status}")


class _Pool:
    """A few threads of our own for ``single`` mode, started up front: no thread has to be
    created while the interpreter exits, when Python refuses to."""

    def __init__(self, size: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], Any], list[Any], int, threading.Condition, list[int]]
        ] = queue.SimpleQueue()
        for i in range(size):
            threading.Thread(target=self._run, name=f"lmgate-batch-{name}-{i}", daemon=True).start()

    def _run(self) -> None:
        while True:
            fn, results, index, cond, left = self._jobs.get()
            try:
                value = fn()
            except BaseException as error:  # noqa: B036 - handed back to map()
                value = error
            with cond:
                results[index] = value
                left[0] -= 1
                cond.notify()

    def map(self, fns: Sequence[Callable[[], Any]]) -> list[Any]:
        results: list[Any] = [None] * len(fns)
        cond = threading.Condition()
        left = [len(fns)]
        for i, fn in enumerate(fns):
            self._jobs.put((fn, results, i, cond, left))
        with cond:
            cond.wait_for(lambda: left[0] == 0)
        return results


class HTTPExporter:
    """POSTs batches to ``endpoint`` with one keep-alive ``httpx.Client`` (created on first use)."""

    def __init__(
        self,
        endpoint: str,
        headers: dict[str, str],
        log_format: str = "json_array",
        timeout: float = DEFAULT_TIMEOUT_S,
        gzip: bool = False,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        transport: Any = None,
        name: str = "generic_api",
    ) -> None:
        self.endpoint = endpoint
        self.headers = headers
        self.log_format = log_format
        self.timeout = timeout
        self.gzip = gzip
        self._transport = transport
        self._client_obj: Any = None
        self._client_lock = threading.Lock()
        self._closed = False
        self._pool = _Pool(max_concurrency, name) if log_format == "single" else None

    def __repr__(self) -> str:  # never the headers, never the URL's path
        return f"<HTTPExporter {url_origin(self.endpoint)} {self.log_format}>"

    def prepare(self) -> None:
        """Import httpx and open the client ahead of the first batch (the batching base calls
        this on a delivery thread at start): ~0.2 s that the first delivery would otherwise wait."""
        self._client(prepare=True)

    def _client(self, prepare: bool = False) -> Any:
        client = self._client_obj
        if client is None:
            import httpx

            from .._http import timeout as make_timeout

            with self._client_lock:
                if self._closed:  # never open a client that nobody would close
                    if prepare:
                        return None
                    raise RuntimeError("the exporter is closed")
                if self._client_obj is None:
                    self._client_obj = httpx.Client(
                        timeout=make_timeout(self.timeout),
                        transport=self._transport,
                        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
                        follow_redirects=False,
                    )
                client = self._client_obj
        return client

    def export(self, batch: Batch) -> Outcome | Sequence[Outcome]:
        if self._pool is not None:
            sends = [
                functools.partial(self._post, body, batch.record_key(i))
                for i, body in enumerate(batch.records)
            ]
            results = self._pool.map(sends)
            return [_single(r) for r in results]
        if self.log_format == "ndjson":
            body = b"\n".join(batch.records) + b"\n"
        else:
            body = b"[" + b",".join(batch.records) + b"]"
        return self._post(body, batch.key)

    def _post(self, body: bytes, key: str) -> Outcome:
        import httpx

        headers = dict(self.headers)
        headers["Idempotency-Key"] = key
        if self.gzip:
            body = gzip_module.compress(body, compresslevel=5, mtime=0)
            headers["Content-Encoding"] = "gzip"
        try:
            response = self._client().post(self.endpoint, content=body, headers=headers)
        except httpx.TimeoutException:
            return Outcome("retry", "timeout")
        except httpx.TransportError:
            return Outcome("retry", "connection_error")
        return classify(response.status_code, response.headers.get("retry-after"))

    def close(self) -> None:
        with self._client_lock:
            self._closed = True
            client = self._client_obj
        if client is not None:
            client.close()


def _single(result: Any) -> Outcome:
    """A one-record request's outcome: a refusal is final (there is nothing to split)."""
    if not isinstance(result, Outcome):
        return Outcome("retry", "exporter_error")
    return Outcome("drop", result.reason) if result.kind == "split" else result


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


class GenericAPILogger(BatchLogger):
    """Sends standard logging payloads to an HTTP endpoint; see the module docstring."""

    def __init__(
        self,
        endpoint: str | None = None,
        headers: dict[str, Any] | None = None,
        event_types: Any = None,
        log_format: str | None = None,
        callback_name: str | None = None,
        *,
        batch_size: Any = None,
        flush_interval: Any = None,
        timeout: Any = None,
        max_retries: Any = None,
        retry_delay: Any = None,
        retry_policy: RetryPolicy | None = None,
        max_queue_records: Any = DEFAULT_MAX_QUEUE_RECORDS,
        max_queue_bytes: Any = DEFAULT_MAX_QUEUE_BYTES,
        gzip: bool = False,
        max_concurrency: Any = DEFAULT_MAX_CONCURRENCY,
        max_in_flight: Any = DEFAULT_MAX_IN_FLIGHT,
        spool: str = "exit",
        spool_dir: str | None = None,
        spool_fsync: bool = False,
        exit_timeout: Any = None,
        transport: Any = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("async_httpx_client", None)  # the reference's parameter; we own our client
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
        if log_format not in LOG_FORMATS:
            raise LoggerConfigError(f"log_format must be one of {LOG_FORMATS}, got {log_format!r}")
        self.endpoint = resolve_env_refs(str(endpoint), "endpoint")
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LoggerConfigError(f"endpoint must be an http(s) URL, got {url_origin(self.endpoint)!r}")
        import lmgate

        env_headers = os.environ.get("GENERIC_LOGGER_HEADERS")
        merged = _merge_headers(
            {"Content-Type": CONTENT_TYPES[log_format], "User-Agent": f"lmgate/{lmgate.__version__}"},
            parse_header_list(env_headers, "GENERIC_LOGGER_HEADERS") if env_headers else None,
            getattr(lmgate, "generic_logger_headers", None),
            preset.get("headers"),
            headers,
        )
        resolved: dict[str, str] = {}
        for name, value in merged.items():
            secret = name.lower() not in _PLAIN_HEADERS
            resolved[name] = resolve_env_refs(value, f"headers[{name!r}]", secret=secret)
            if secret or is_secret_header(name):
                remember_secret(resolved[name])
        self.log_format = log_format
        self.callback_name = callback_name
        if batch_size is None:
            batch_size = env_number("DEFAULT_BATCH_SIZE", DEFAULT_BATCH_SIZE, integer=True)
        if flush_interval is None:
            flush_interval = env_number("DEFAULT_FLUSH_INTERVAL_SECONDS", DEFAULT_FLUSH_INTERVAL_S)
        if retry_policy is None and retry_delay is not None:
            try:
                base = float(retry_delay)
            except (TypeError, ValueError):
                raise LoggerConfigError(
                    f"retry_delay must be a number of seconds, got {retry_delay!r}"
                ) from None
            retry_policy = RetryPolicy(base_delay_s=max(0.0, base), max_delay_s=max(10.0, base))
        timeout_s = positive(timeout if timeout is not None else DEFAULT_TIMEOUT_S, "timeout")
        exporter = HTTPExporter(
            self.endpoint,
            resolved,
            log_format,
            timeout=timeout_s,
            gzip=bool(gzip),
            max_concurrency=positive(max_concurrency, "max_concurrency", integer=True),
            transport=transport,
            name=callback_name or "generic_api",
        )
        name = callback_name or "generic_api-" + hashlib.sha256(self.endpoint.encode()).hexdigest()[:12]
        super().__init__(
            exporter,
            name=name,
            event_types=event_types,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue_records=max_queue_records,
            max_queue_bytes=max_queue_bytes,
            max_retries=max_retries,
            retry_policy=retry_policy,
            max_in_flight=max_in_flight,
            spool=spool,
            spool_dir=spool_dir,
            spool_fsync=spool_fsync,
            exit_timeout=exit_timeout,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"<GenericAPILogger {self.name!r} {url_origin(self.endpoint)} {self.log_format}>"

    @property
    def headers(self) -> dict[str, str]:
        """The headers sent (values as configured: keep this out of logs)."""
        return dict(self.exporter.headers)  # type: ignore[attr-defined]

    @classmethod
    def from_settings(cls, name: str, settings: dict[str, Any]) -> GenericAPILogger:
        """A logger from a ``callback_settings`` entry; an unknown key is an error naming it."""
        options = {k: v for k, v in settings.items() if k != "callback_type"}
        unknown = sorted(set(options) - _SETTING_KEYS)
        if unknown:
            raise LoggerConfigError(
                f"callback_settings[{name!r}]: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_SETTING_KEYS))}"
            )
        try:
            return cls(callback_name=name, **options)
        except LoggerConfigError as error:
            raise LoggerConfigError(f"callback_settings[{name!r}]: {error}") from None


_SETTING_KEYS = frozenset(
    {
        "endpoint",
        "headers",
        "event_types",
        "log_format",
        "batch_size",
        "flush_interval",
        "timeout",
        "max_retries",
        "retry_delay",
        "max_queue_records",
        "max_queue_bytes",
        "gzip",
        "max_concurrency",
        "max_in_flight",
        "spool",
        "spool_dir",
        "spool_fsync",
        "exit_timeout",
        "turn_off_message_logging",
    }
)


def logger_for_name(name: str) -> GenericAPILogger | None:
    """The registry's resolver: "generic_api", a ``callback_settings`` entry with
    ``callback_type: generic_api``, or a preset name; None for any other name."""
    import lmgate

    settings = (getattr(lmgate, "callback_settings", None) or {}).get(name)
    if isinstance(settings, dict) and settings.get("callback_type") == "generic_api":
        return GenericAPILogger.from_settings(name, settings)
    if name == "generic_api":
        return GenericAPILogger()
    if name in load_presets():
        return GenericAPILogger(callback_name=name)
    return None
