"""A key's limits lowered (POST /key/update) take effect on every instance at once, leases
held or not: two ``lmgate serve`` sharing one Redis, each holding a slice of the key's
counters (``proxy/leases.py``), then the budget, rpm or parallel limit lowered on one — the
other instance admits nothing its slice held under the old limit (docs/keys.md "Several
instances")."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import openai
from fakes import FakeProvider
from fakes.provider import Reply
from test_proxy_limits import (
    CALL_COST,
    Cluster,
    admin,
    chat,
    cluster_of,
    generate,
    in_one_minute,
    outcome,
)
from test_proxy_server import Served

__all__ = ["cluster_of"]  # the fixture, shared with test_proxy_limits

STALE = 2  # requests that may pass on the other instance before the invalidation reaches it (pub/sub)


def _admitted_until_refused(server: Served, key: str) -> tuple[int, openai.APIStatusError]:
    """Requests on ``server`` until the first refusal (bounded): how many passed, and the refusal."""
    for passed in range(40):
        result = outcome(server, key)
        if result != 200:
            assert isinstance(result, openai.APIStatusError)
            return passed, result
    raise AssertionError("40 requests passed: the lowered limit never took effect")


def test_a_lowered_budget_binds_on_both_instances_at_once(cluster_of: Callable[..., Cluster]) -> None:
    cluster = cluster_of()
    a, b = cluster.start(2)
    key = generate(a, max_budget=10.0)["key"]  # room for slices of 32 requests' worst case each
    for server in (a, b, a, b, a, b):
        assert chat(server, key).choices[0].message.content  # each instance leases a slice
    update = admin(a, "POST", "/key/update", json={"key": key, "max_budget": 2 * CALL_COST})
    assert update.status_code == 200, update.text
    # 6 calls spent: more than the new budget. The instance that made the change refuses at once…
    passed, error = _admitted_until_refused(a, key)
    assert passed == 0 and error.status_code == 400 and error.body["type"] == "budget_exceeded"  # type: ignore[index]
    # …and the other as soon as the invalidation reaches it, its slice notwithstanding
    passed, error = _admitted_until_refused(b, key)
    assert passed <= STALE and error.body["type"] == "budget_exceeded"  # type: ignore[index]
    assert outcome(b, key) != 200 and outcome(a, key) != 200


def test_a_lowered_rpm_binds_on_both_instances_at_once(cluster_of: Callable[..., Cluster]) -> None:
    a, b = cluster_of().start(2)

    def run() -> bool:
        key = generate(a, rpm_limit=400)["key"]
        for server in (a, b, a, b):
            if outcome(server, key) != 200:
                return False
        assert admin(a, "POST", "/key/update", json={"key": key, "rpm_limit": 3}).status_code == 200
        passed, error = _admitted_until_refused(a, key)
        assert passed == 0 and error.status_code == 429 and "rpm_limit: 3" in error.message
        passed, error = _admitted_until_refused(b, key)
        assert passed <= STALE and error.status_code == 429 and "rpm_limit: 3" in error.message
        return True

    in_one_minute(run)


def test_a_lowered_tpm_binds_on_both_instances_at_once(cluster_of: Callable[..., Cluster]) -> None:
    a, b = cluster_of().start(2)

    def run() -> bool:
        key = generate(a, tpm_limit=100_000)["key"]
        for server in (a, b, a, b):  # 12 tokens each
            if outcome(server, key) != 200:
                return False
        assert admin(a, "POST", "/key/update", json={"key": key, "tpm_limit": 20}).status_code == 200
        passed, error = _admitted_until_refused(a, key)
        assert passed == 0 and error.status_code == 429 and "tpm_limit: 20" in error.message
        passed, error = _admitted_until_refused(b, key)
        assert passed <= STALE and error.status_code == 429 and "tpm_limit: 20" in error.message
        return True

    in_one_minute(run)


def test_a_lowered_parallel_limit_binds_on_both_instances_at_once(
    cluster_of: Callable[..., Cluster], fake_provider: FakeProvider
) -> None:
    a, b = cluster_of().start(2)
    key = generate(a, max_parallel_requests=50)["key"]
    for server in (a, b, a, b):
        assert chat(server, key).choices[0].message.content  # each instance leases slots
    gate = threading.Event()
    fake_provider.enqueue(Reply(delay_event=gate))
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(chat, a, key)  # one request in flight on a
        try:
            assert fake_provider.wait_for_requests(5, timeout=20)
            assert (
                admin(a, "POST", "/key/update", json={"key": key, "max_parallel_requests": 1}).status_code
                == 200
            )
            passed, error = _admitted_until_refused(a, key)
            assert passed == 0 and error.status_code == 429
            passed, error = _admitted_until_refused(b, key)
            assert passed <= STALE and "max_parallel_requests: 1" in error.message
        finally:
            gate.set()
        assert held.result().choices[0].message.content
