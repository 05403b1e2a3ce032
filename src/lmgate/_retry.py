"""When to retry and how long to wait: shared by provider calls and log delivery."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from . import _conf
from . import exceptions as exc

RETRYABLE_STATUSES = frozenset({408, 409, 429})


async def _asyncio_sleep(delay_s: float) -> None:
    import asyncio  # imported on first use: sync programs never pay for it

    await asyncio.sleep(delay_s)


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The server's retry hint: ``retry-after-ms``, or ``retry-after`` in seconds or as an HTTP
    date; None when absent or unreadable. Shared by provider calls and log delivery."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = (lowered.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        import email.utils  # rare path; the module costs ~10 ms to import

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, honouring the server's ``Retry-After``.

    ``sleep``/``async_sleep`` and ``rng`` are the seams tests inject to run in virtual time.
    """

    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    async_sleep: Callable[[float], Awaitable[None]] = _asyncio_sleep
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        # validated once when the policy is made; durations like "500ms" are accepted too
        for name in ("base_delay_s", "max_delay_s", "max_retry_after_s"):
            object.__setattr__(
                self, name, _conf.duration_s(getattr(self, name), name=name, where="RetryPolicy")
            )

    def is_retryable(self, error: BaseException) -> bool:
        if isinstance(error, exc.APIConnectionError):
            return True
        if isinstance(error, exc.ConfigError):  # a wrong setting stays wrong on the next attempt
            return False
        if isinstance(error, exc.LmgateError):
            return is_retryable_status(error.status_code)
        return False

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        if retry_after_s is not None:
            return min(max(0.0, retry_after_s), self.max_retry_after_s)
        ceiling = min(self.max_delay_s, self.base_delay_s * (2**attempt))
        return self.rng.uniform(0.0, ceiling)


DEFAULT_RETRY_POLICY = RetryPolicy()
