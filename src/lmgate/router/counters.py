"""The counters usage- and latency-based routing read: in this process, or shared through Redis.

Two kinds of data, keyed by deployment id:

* per-minute counts (requests and tokens), in buckets named by the minute of the injected
  clock, so a bucket is forgotten when its minute is over;
* the last few latencies of each deployment.

``LocalCounters`` keeps them in dicts; ``RedisCounters`` keeps them in Redis (``INCRBY`` with an
expiry, ``LPUSH``/``LTRIM`` lists), so several processes — several ``lmgate serve`` workers,
or several programs — route on the same numbers. Both are called from sync and async code
alike: the Redis client is the synchronous one (a local round trip of well under a millisecond,
done once before and once after a call).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

logger = logging.getLogger("lmgate.router")

LATENCY_WINDOW = 10  # latencies kept per deployment
_BUCKET_TTL_S = 120  # a minute's bucket lives a little longer than its minute


def minute(clock: Callable[[], float]) -> int:
    return int(clock() // 60)


class Counters(Protocol):
    """What the strategies read and the Router writes."""

    def add_usage(self, model_id: str, tokens: int) -> None: ...

    def usage(self, model_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(requests, tokens) of each deployment in the current minute."""
        ...

    def add_latency(self, model_id: str, seconds: float) -> None: ...

    def latencies(self, model_ids: Sequence[str]) -> dict[str, list[float]]: ...


class LocalCounters:
    """Counters of this process (thread-safe)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._minute = -1
        self._usage: dict[str, list[int]] = {}
        self._latency: dict[str, list[float]] = {}

    def _current(self) -> dict[str, list[int]]:
        now = minute(self._clock)
        if now != self._minute:  # a new minute: last minute's counts are over
            self._minute = now
            self._usage = {}
        return self._usage

    def add_usage(self, model_id: str, tokens: int) -> None:
        with self._lock:
            counts = self._current().setdefault(model_id, [0, 0])
            counts[0] += 1
            counts[1] += tokens

    def usage(self, model_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        with self._lock:
            current = self._current()
            return {m: (current[m][0], current[m][1]) if m in current else (0, 0) for m in model_ids}

    def add_latency(self, model_id: str, seconds: float) -> None:
        with self._lock:
            window = self._latency.setdefault(model_id, [])
            window.append(seconds)
            del window[:-LATENCY_WINDOW]

    def latencies(self, model_ids: Sequence[str]) -> dict[str, list[float]]:
        with self._lock:
            return {m: list(self._latency.get(m, ())) for m in model_ids}


class RedisCounters:
    """Counters in Redis, shared by every Router that points at the same server and prefix."""

    def __init__(self, client: Any, clock: Callable[[], float], prefix: str = "lmgate:router") -> None:
        self._redis = client
        self._clock = clock
        self._prefix = prefix
        # a Redis that does not answer must not fail requests: reads then see no counts (the
        # strategy picks as if nothing were measured), writes are lost; both are counted here
        self.errors = 0

    def _failed(self, what: str, error: Exception) -> None:
        self.errors += 1
        if self.errors == 1 or self.errors % 100 == 0:  # the first and then every 100th: no log flood
            logger.warning("routing counters: Redis %s failed (%d so far): %s", what, self.errors, error)

    @classmethod
    def connect(
        cls,
        clock: Callable[[], float],
        *,
        url: str | None = None,
        host: str | None = None,
        port: int | None = None,
        password: str | None = None,
    ) -> RedisCounters:
        try:
            import redis
        except ImportError as error:  # pragma: no cover - depends on the installed extras
            from ..exceptions import ConfigError

            raise ConfigError(
                "shared routing counters need the redis package",
                "Router",
                "redis_host",
                fix="pip install 'lmgate[redis]'",
            ) from error
        from .._secrets import remember_secret, url_secrets

        for secret in (password, *url_secrets(url or "")):  # masked in any log line that quotes them
            if secret:
                remember_secret(secret)
        if url:
            client = redis.Redis.from_url(url, socket_timeout=1.0)
        else:
            client = redis.Redis(
                host=host or "localhost", port=int(port or 6379), password=password, socket_timeout=1.0
            )
        return cls(client, clock)

    def _usage_keys(self, model_id: str) -> tuple[str, str]:
        bucket = minute(self._clock)
        return f"{self._prefix}:{model_id}:rpm:{bucket}", f"{self._prefix}:{model_id}:tpm:{bucket}"

    def add_usage(self, model_id: str, tokens: int) -> None:
        rpm_key, tpm_key = self._usage_keys(model_id)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.incrby(rpm_key, 1).expire(rpm_key, _BUCKET_TTL_S)
            pipe.incrby(tpm_key, tokens).expire(tpm_key, _BUCKET_TTL_S)
            pipe.execute()
        except Exception as error:
            self._failed("write", error)

    def usage(self, model_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        keys = [k for m in model_ids for k in self._usage_keys(m)]
        try:
            values = self._redis.mget(keys) if keys else []
            numbers = [int(v or 0) for v in values]
        except Exception as error:
            self._failed("read", error)
            return dict.fromkeys(model_ids, (0, 0))
        return {m: (numbers[2 * i], numbers[2 * i + 1]) for i, m in enumerate(model_ids)}

    def add_latency(self, model_id: str, seconds: float) -> None:
        key = f"{self._prefix}:{model_id}:latency"
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.lpush(key, repr(float(seconds))).ltrim(key, 0, LATENCY_WINDOW - 1).expire(key, 3600)
            pipe.execute()
        except Exception as error:
            self._failed("write", error)

    def latencies(self, model_ids: Sequence[str]) -> dict[str, list[float]]:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for m in model_ids:
                pipe.lrange(f"{self._prefix}:{m}:latency", 0, -1)
            answers = pipe.execute()
        except Exception as error:
            self._failed("read", error)
            return {m: [] for m in model_ids}
        return {m: [float(v) for v in values] for m, values in zip(model_ids, answers, strict=True)}


__all__ = ["LATENCY_WINDOW", "Counters", "LocalCounters", "RedisCounters", "minute"]
