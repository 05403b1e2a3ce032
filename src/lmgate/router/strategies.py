"""Routing strategies: which deployment of a group serves the next attempt.

Each strategy is a ``pick(group, candidates, request_tokens)`` over the deployments that are not
cooling down (and, within one request, not yet tried). ``candidates`` is never empty; ``pick``
returns None only when every candidate is over its ``rpm``/``tpm`` limit (usage-based routing).

* ``simple-shuffle`` (the reference's default): at random, weighted by ``weight``, else by
  ``rpm``, else by ``tpm`` when the deployments give one;
* ``round-robin`` (lmgate's, the proxy's default): each deployment in turn;
* ``least-busy``: the fewest requests in flight (streams count until they end);
* ``latency-based-routing``: the lowest average of the last few latencies (a deployment not
  yet measured goes first, so each gets measured);
* ``usage-based-routing`` (also ``-v2``): the fewest tokens this minute among the deployments
  under their ``rpm``/``tpm`` limits.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import Protocol

from .counters import Counters
from .deployments import Deployment


class Strategy(Protocol):
    def pick(
        self, group: str, candidates: Sequence[Deployment], request_tokens: int
    ) -> Deployment | None: ...


class InFlight:
    """Requests in flight per deployment (read by least-busy; kept by the Router for every strategy)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def acquire(self, model_id: str) -> None:
        with self._lock:
            self.counts[model_id] = self.counts.get(model_id, 0) + 1

    def release(self, model_id: str) -> None:
        with self._lock:
            self.counts[model_id] -= 1


class SimpleShuffle:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, group: str, candidates: Sequence[Deployment], request_tokens: int) -> Deployment | None:
        if len(candidates) == 1:
            return candidates[0]
        for name in ("weight", "rpm", "tpm"):
            weights = [getattr(d, name) for d in candidates]
            if any(weights):
                return self._rng.choices(candidates, weights=[w or 0 for w in weights])[0]
        return self._rng.choice(candidates)


class RoundRobin:
    def __init__(self, groups: dict[str, tuple[Deployment, ...]]) -> None:
        self._groups = groups
        self._next: dict[str, int] = {}
        self._lock = threading.Lock()

    def pick(self, group: str, candidates: Sequence[Deployment], request_tokens: int) -> Deployment | None:
        members = self._groups[group]
        with self._lock:  # the whole group in turn, skipping the ones not among the candidates
            start = self._next.get(group, 0)
            for step in range(len(members)):
                d = members[(start + step) % len(members)]
                if d in candidates:
                    self._next[group] = start + step + 1
                    return d
        return candidates[0]


class LeastBusy:
    def __init__(self, in_flight: InFlight) -> None:
        self._in_flight = in_flight

    def pick(self, group: str, candidates: Sequence[Deployment], request_tokens: int) -> Deployment | None:
        counts = self._in_flight.counts
        return min(candidates, key=lambda d: counts.get(d.model_id, 0))


class LatencyBased:
    def __init__(self, counters: Counters) -> None:
        self._counters = counters

    def pick(self, group: str, candidates: Sequence[Deployment], request_tokens: int) -> Deployment | None:
        if len(candidates) == 1:
            return candidates[0]
        seen = self._counters.latencies([d.model_id for d in candidates])

        def average(d: Deployment) -> float:
            window = seen.get(d.model_id)
            return sum(window) / len(window) if window else 0.0  # not measured yet: try it first

        return min(candidates, key=average)


class UsageBased:
    def __init__(self, counters: Counters) -> None:
        self._counters = counters

    def pick(self, group: str, candidates: Sequence[Deployment], request_tokens: int) -> Deployment | None:
        usage = self._counters.usage([d.model_id for d in candidates])
        fitting = []
        for d in candidates:
            requests, tokens = usage[d.model_id]
            if d.rpm is not None and requests + 1 > d.rpm:
                continue
            if d.tpm is not None and tokens + request_tokens > d.tpm:
                continue
            fitting.append(d)
        if not fitting:
            return None
        return min(fitting, key=lambda d: usage[d.model_id][1])


STRATEGIES = (
    "simple-shuffle",
    "round-robin",
    "least-busy",
    "latency-based-routing",
    "usage-based-routing",
    "usage-based-routing-v2",
)


def make_strategy(
    name: str,
    groups: dict[str, tuple[Deployment, ...]],
    counters: Counters,
    in_flight: InFlight,
    rng: random.Random,
) -> Strategy:
    if name == "simple-shuffle":
        return SimpleShuffle(rng)
    if name == "round-robin":
        return RoundRobin(groups)
    if name == "least-busy":
        return LeastBusy(in_flight)
    if name == "latency-based-routing":
        return LatencyBased(counters)
    return UsageBased(counters)


__all__ = ["STRATEGIES", "InFlight", "Strategy", "make_strategy"]
