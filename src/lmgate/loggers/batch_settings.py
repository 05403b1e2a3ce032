"""A batch logger's settings: one frozen object, validated once when the logger is made.

``BatchSettings.build(...)`` takes the values as a user gives them (arguments, a
``callback_settings`` entry, a preset, the environment: the caller merges those first) and
raises ``LoggerConfigError`` naming the setting for a bad one. After that nothing re-reads or
re-checks a setting; the processor, the adapter and the exit path read this object.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

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
        interval = positive(flush_interval, "flush_interval")
        queue_records = positive(max_queue_records, "max_queue_records", integer=True)
        queue_bytes = positive(max_queue_bytes, "max_queue_bytes", integer=True)
        if max_retries is not None and (
            isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
        ):
            raise LoggerConfigError(f"max_retries must be a whole number ≥ 0 or None, got {max_retries!r}")
        in_flight = positive(max_in_flight, "max_in_flight", integer=True)
        if in_flight > MAX_IN_FLIGHT_LIMIT:
            raise LoggerConfigError(
                f"max_in_flight must be at most {MAX_IN_FLIGHT_LIMIT}, got {max_in_flight!r}"
            )
        if spool not in SPOOL_MODES:
            raise LoggerConfigError(f"spool must be one of {SPOOL_MODES}, got {spool!r}")
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
            spool_fsync=bool(spool_fsync),
            exit_timeout=positive(exit_timeout, "exit_timeout"),
        )


def positive(value: Any, name: str, integer: bool = False, allow_none: bool = False) -> Any:
    """``value`` as a positive number, or a LoggerConfigError naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or value is None:
        raise LoggerConfigError(f"{name} must be a positive number, got {value!r}")
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise LoggerConfigError(f"{name} must be a positive number, got {value!r}") from None
    if integer and isinstance(value, float) and value != number:
        raise LoggerConfigError(f"{name} must be a whole number, got {value!r}")
    if number <= 0:
        raise LoggerConfigError(f"{name} must be positive, got {value!r}")
    return number


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
