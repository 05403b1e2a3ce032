"""Which deployments are cooling down: taken out of every pick for a while after failing.

A deployment that fails more than ``allowed_fails`` times within a minute (connection errors,
timeouts, 429, 5xx, and the 401/404 that mean the deployment itself is wrong) is left alone
for ``cooldown_time`` seconds. Time is an injected clock, so tests move it instead of sleeping.
State is per process (like the reference's in-memory cooldown list when no Redis is given).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from .. import exceptions as exc

_WINDOW_S = 60.0  # failures count within this window
_COOLDOWN_STATUSES = frozenset({401, 404, 408, 409, 429})


def counts_against_deployment(error: BaseException) -> bool:
    """Whether ``error`` says something about the deployment (not about the request)."""
    if isinstance(error, exc.APIConnectionError):
        return True
    if isinstance(error, exc.LmgateError) and not isinstance(error, exc.ConfigError):
        status = error.status_code
        return status in _COOLDOWN_STATUSES or status >= 500
    return False


class Cooldowns:
    def __init__(self, allowed_fails: int, cooldown_time: float, clock: Callable[[], float]) -> None:
        self.allowed_fails = allowed_fails
        self.cooldown_time = cooldown_time
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}
        self._until: dict[str, float] = {}

    def failed(self, model_id: str) -> bool:
        """Count a failure; True when it puts the deployment in cooldown."""
        now = self._clock()
        with self._lock:
            recent = [t for t in self._failures.get(model_id, ()) if now - t < _WINDOW_S]
            recent.append(now)
            if len(recent) > self.allowed_fails:
                self._until[model_id] = now + self.cooldown_time
                self._failures.pop(model_id, None)  # counting starts again after the cooldown
                return True
            self._failures[model_id] = recent
            return False

    def cooling(self, model_ids: Iterable[str]) -> set[str]:
        """The ids among ``model_ids`` that are cooling down now."""
        if not self._until:
            return set()
        now = self._clock()
        with self._lock:
            for model_id, until in list(self._until.items()):
                if until <= now:  # recovered
                    del self._until[model_id]
            return {m for m in model_ids if m in self._until}

    def seconds_left(self, model_ids: Iterable[str]) -> float:
        """Until the first of ``model_ids`` comes back."""
        now = self._clock()
        with self._lock:
            left = [self._until[m] - now for m in model_ids if m in self._until]
        return max(0.0, min(left)) if left else 0.0


__all__ = ["Cooldowns", "counts_against_deployment"]
