"""A bound on login guesses: after ``MAX_FAILURES`` refused keys from one address within
``WINDOW_S`` seconds, the login form answers 429 until the oldest failure leaves the window.

Kept in memory per process (a restart forgets it; several instances each count their own):
enough to turn guessing a human-chosen master key from thousands of tries a second into a few
a minute. The addresses remembered are capped, so a flood of addresses cannot grow memory
without bound (the oldest are forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES = 10
WINDOW_S = 300.0
MAX_ADDRESSES = 10_000


class LoginThrottle:
    """Counts refused logins per client address over a sliding window."""

    def __init__(
        self,
        clock: Callable[[], float],
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
    ) -> None:
        self._clock = clock
        self._max = max_failures
        self._window = window_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again; None when it may try now."""
        times = self._recent(address)
        if times is None or len(times) < self._max:
            return None
        return max(1.0, times[0] + self._window - self._clock())

    def failed(self, address: str) -> None:
        times = self._recent(address)
        if times is None:
            times = self._failures[address] = deque(maxlen=self._max)
            while len(self._failures) > MAX_ADDRESSES:
                self._failures.popitem(last=False)
        times.append(self._clock())
        self._failures.move_to_end(address)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def _recent(self, address: str) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        cutoff = self._clock() - self._window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times


__all__ = ["MAX_FAILURES", "WINDOW_S", "LoginThrottle"]
