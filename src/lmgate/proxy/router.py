"""Deployment groups: entries of ``model_list`` that share a ``model_name``.

A request to a group goes to one deployment, picked by the routing strategy:

* ``round-robin`` (default) — each deployment in turn;
* ``least-busy`` — the one with the fewest requests in flight (streams count until they end);
* ``simple-shuffle`` — at random.

When a deployment fails with an error worth retrying elsewhere (connection error, timeout,
429, 5xx), the request moves to a deployment it has not tried yet, so the client sees an
error only when every deployment failed. ``num_retries`` adds attempts beyond one per
deployment; an attempt that comes back to a deployment already tried waits the retry
policy's backoff first.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

from .._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from .config import Deployment, ProxyConfig


class Group:
    """The deployments of one model name, and the state the strategy needs."""

    __slots__ = ("name", "deployments", "strategy", "in_flight", "_next", "_rng")

    def __init__(self, name: str, deployments: list[Deployment], strategy: str, rng: random.Random) -> None:
        self.name = name
        self.deployments = tuple(deployments)
        self.strategy = strategy
        self.in_flight = {d.model_id: 0 for d in deployments}
        self._next = 0
        self._rng = rng

    def pick(self, tried: set[str] | None = None) -> Deployment:
        """A deployment, preferring ones not in ``tried``."""
        candidates = self.deployments
        if tried:
            fresh = tuple(d for d in candidates if d.model_id not in tried)
            candidates = fresh or candidates
        if len(candidates) == 1:
            return candidates[0]
        if self.strategy == "least-busy":
            return min(candidates, key=lambda d: self.in_flight[d.model_id])
        if self.strategy == "simple-shuffle":
            return self._rng.choice(candidates)
        # round-robin over the whole group, skipping the ones already tried
        for _ in range(len(self.deployments)):
            d = self.deployments[self._next % len(self.deployments)]
            self._next += 1
            if d in candidates:
                return d
        return candidates[0]

    def acquire(self, deployment: Deployment) -> Callable[[], None]:
        """Count a request in flight on ``deployment``; call the result once when it ends."""
        key = deployment.model_id
        self.in_flight[key] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight[key] -= 1

        return release


class Router:
    """Groups by model name; ``call`` runs one request with failover."""

    def __init__(self, config: ProxyConfig, *, policy: RetryPolicy = DEFAULT_RETRY_POLICY, rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        by_name: dict[str, list[Deployment]] = {}
        for d in config.model_list:
            by_name.setdefault(d.model_name, []).append(d)
        self.groups = {name: Group(name, deps, config.routing_strategy, rng) for name, deps in by_name.items()}
        self.policy = policy
        self.num_retries = config.router_num_retries

    def group(self, name: Any) -> Group | None:
        return self.groups.get(name) if isinstance(name, str) else None

    def attempts(self, group: Group, library_retries: int) -> int:
        retries = self.num_retries if self.num_retries is not None else library_retries
        return max(len(group.deployments), 1 + retries)

    async def call(
        self,
        group: Group,
        attempt: Callable[[Deployment, bool], Awaitable[Any]],
        library_retries: int,
    ) -> tuple[Deployment, Any, Callable[[], None]]:
        """Run ``attempt(deployment, last)`` until one succeeds; returns it, its result and its release.

        ``last`` tells the attempt whether it is the final one (a single-deployment group
        lets the library retry; a larger group retries across deployments here).
        """
        total = self.attempts(group, library_retries) if len(group.deployments) > 1 else 1
        tried: set[str] = set()
        order: list[Deployment] = []  # deployments in the order they were first tried
        last_error: Exception | None = None
        for index in range(total):
            if len(order) < len(group.deployments):
                deployment = group.pick(tried)
                order.append(deployment)
            else:  # every deployment failed once: go round again, oldest failure first, after a backoff
                deployment = order[index % len(order)]
                retry_after = getattr(last_error, "retry_after", None)
                await self.policy.async_sleep(self.policy.delay_s(index - len(order), retry_after))
            release = group.acquire(deployment)
            try:
                result = await attempt(deployment, index == total - 1)
            except Exception as error:
                release()
                if index == total - 1 or not self.policy.is_retryable(error):
                    # the client gets this error: its failure event, held back while a retry was
                    # possible, is the request's one terminal event
                    emit = getattr(error, "_lmgate_emit_failure", None)
                    if emit is not None:
                        emit()
                    raise
                last_error = error  # retried elsewhere: this attempt logs no terminal event
                tried.add(deployment.model_id)
                continue
            except BaseException:
                release()
                raise
            return deployment, result, release
        raise AssertionError("unreachable: the last attempt returns or raises")


__all__ = ["Group", "Router"]
