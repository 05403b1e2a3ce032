"""A batch logger's settings: one frozen object, validated once when the logger is made.

``BatchSettings.build(...)`` takes the values as a user gives them (arguments, a
``callback_settings`` entry, a preset, the environment: the caller merges those first) and
raises ``LoggerConfigError`` naming the setting for a bad one. After that nothing re-reads or
re-checks a setting; the processor, the adapter and the exit path read this object. Values are
checked by ``lmgate._conf`` (the one place numbers, durations, booleans and choices are read):
the intervals also take durations such as ``"250ms"`` or ``"2m"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .. import _conf
from .._retry import RetryPolicy
from ._env import LoggerConfigError, cache_dir

DEFAULT_BATCH_SIZE = 100
DEFAULT_FLUSH_INTERVAL_S = 5.0  # as the reference's DEFAULT_FLUSH_INTERVAL_SECONDS
DEFAULT_MAX_QUEUE_RECORDS = 100_000
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
DEFAULT_EXIT_TIMEOUT_S = 5.0
MAX_IN_FLIGHT_LIMIT = 64  # each is a thread
DEFAULT_RETRY_POLICY = RetryPolicy(base_delay_s=0.5, max_delay_s=10.0)
SPOOL_MODES = ("write_ahead", "exit", "off")
EVENT_TYPES = {"llm_api_success": "success", "llm_api_failure": "failure"}
#: the batch options ``BatchSettings.build`` takes (besides ``name``), written once: loggers
#: accept them as keyword arguments and pass them on as they are
BATCH_OPTIONS = (
    "event_types",
    "batch_size",
    "flush_interval",
    "max_queue_records",
    "max_queue_bytes",
    "max_retries",
    "retry_policy",
    "max_in_flight",
    "spool",
    "spool_dir",
    "spool_fsync",
    "exit_timeout",
)


@dataclass(frozen=True)
class BatchSettings:
    """What a batch processor needs to know, checked. ``spool_dir`` is None when ``spool`` is off."""

    events: frozenset[str]
    batch_size: int
    flush_interval: float
    max_queue_records: int
    max_queue_bytes: int
    max_retries: int | None
    retry_policy: RetryPolicy
    max_in_flight: int
    spool: str
    spool_dir: str | None
    spool_fsync: bool
    exit_timeout: float

    @classmethod
    def build(
        cls,
        *,
        name: str,
        event_types: Any = None,
        batch_size: Any = DEFAULT_BATCH_SIZE,
        flush_interval: Any = DEFAULT_FLUSH_INTERVAL_S,
        max_queue_records: Any = DEFAULT_MAX_QUEUE_RECORDS,
        max_queue_bytes: Any = DEFAULT_MAX_QUEUE_BYTES,
        max_retries: Any = None,
        retry_policy: RetryPolicy | None = None,
        max_in_flight: Any = 1,
        spool: str = "exit",
        spool_dir: str | None = None,
        spool_fsync: bool = False,
        exit_timeout: Any = None,
    ) -> BatchSettings:
        # checked in this order, so the first bad setting is the one named
        events = parse_event_types(event_types)
        size = positive(batch_size, "batch_size", integer=True)
        interval = _conf.duration_s(flush_interval, name="flush_interval", above=0)
        queue_records = positive(max_queue_records, "max_queue_records", integer=True)
        queue_bytes = positive(max_queue_bytes, "max_queue_bytes", integer=True)
        if max_retries is not None:
            max_retries = _conf.number(max_retries, name="max_retries", integer=True, minimum=0)
        in_flight = _conf.number(
            max_in_flight, name="max_in_flight", integer=True, above=0, maximum=MAX_IN_FLIGHT_LIMIT
        )
        spool = _conf.choice(spool, SPOOL_MODES, name="spool")
        if exit_timeout is None:
            exit_timeout = os.environ.get("LMGATE_EXIT_FLUSH_TIMEOUT_S", DEFAULT_EXIT_TIMEOUT_S)
        return cls(
            events=events,
            batch_size=size,
            flush_interval=interval,
            max_queue_records=queue_records,
            max_queue_bytes=queue_bytes,
            max_retries=max_retries,
            retry_policy=retry_policy or DEFAULT_RETRY_POLICY,
            max_in_flight=in_flight,
            spool=spool,
            spool_dir=None if spool == "off" else spool_dir or default_spool_dir(name),
            spool_fsync=_conf.boolean(spool_fsync, name="spool_fsync"),
            exit_timeout=_conf.duration_s(exit_timeout, name="exit_timeout", above=0),
        )


def positive(value: Any, name: str, integer: bool = False, allow_none: bool = False) -> Any:
    """``value`` as a positive number, or a ``LoggerConfigError`` (a ``ConfigError``) naming ``name``."""
    if value is None and allow_none:
        return None
    return _conf.number(value, name=name, integer=integer, above=0)


def parse_event_types(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset(EVENT_TYPES.values())
    if isinstance(value, str):
        value = [value]
    events = set()
    for item in value:
        if item not in EVENT_TYPES:
            raise LoggerConfigError(f"event_types: unknown event type {item!r}; use {sorted(EVENT_TYPES)}")
        events.add(EVENT_TYPES[item])
    return frozenset(events)


def default_spool_dir(name: str) -> str:
    """``<cache>/spool/<name>``, with the name made safe for a directory."""
    import hashlib

    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64]
    return os.path.join(cache_dir(), "spool", cleaned or hashlib.sha256(name.encode()).hexdigest()[:16])
