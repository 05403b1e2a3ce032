"""``MemoryCounters`` holds slices of its tpm counters as of its rpm, parallel and budget ones (a
plan's grant of tokens, given back before anyone is refused for want of it): random streams of
admissions and settlements over keys sharing their team's counters get the decisions, and the
refusals' counts, of the rule applied to exact counters."""

from __future__ import annotations

import random

import pytest

from lmgate.proxy.limits import Check, MemoryCounters, Refusal

NOW = 1000.0
TEAM_TPM = {"t0": 2000, "t1": 70}  # t1's keys share a small one: its grants used to the token


class ExactCounters:
    """The rule on plain counters: every rpm, tpm and parallel count below its limit; every
    budget's spent below its limit and its spent, reserved and the request's worst case within it."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.reserved: dict[str, int] = {}

    def admit(self, checks: list[Check], amount: int) -> tuple[int, int, int] | None:
        for i, check in enumerate(checks):
            used = self.count.get(check.name, 0)
            if check.kind == "budget":
                reserved = self.reserved.get(check.name, 0)
                if used >= check.limit or used + reserved + amount > check.limit:
                    return (i, used, reserved)
            elif used >= check.limit:
                return (i, used, 0)
        for check in checks:
            if check.kind in ("rpm", "parallel"):
                self.count[check.name] = self.count.get(check.name, 0) + 1
            elif check.kind == "budget":
                self.reserved[check.name] = self.reserved.get(check.name, 0) + amount
        return None

    def settle(self, checks: list[Check], reserved: int, cost: int, tokens: int) -> None:
        for check in checks:
            if check.kind == "parallel":
                self.count[check.name] -= 1
            elif check.kind == "tpm":
                self.count[check.name] = self.count.get(check.name, 0) + tokens
            elif check.kind == "budget":
                self.reserved[check.name] -= reserved
                self.count[check.name] = self.count.get(check.name, 0) + cost


def _checks(rng: random.Random, key: str, team: str, tpm_only: bool, window: int) -> list[Check]:
    if tpm_only:
        return [
            Check("tpm", f"tpm:{key}:{window}", rng.randint(1, 60)),
            Check("tpm", f"tpm:{team}:{window}", TEAM_TPM[team]),
        ]
    return [
        Check("rpm", f"rpm:{key}", 10**6),
        Check("tpm", f"tpm:{key}:{window}", rng.randint(1, 900)),
        Check("parallel", f"par:{key}", rng.randint(1, 8)),
        Check("budget", f"budget:{key}", rng.randint(1000, 20_000)),
        Check("tpm", f"tpm:{team}:{window}", TEAM_TPM[team]),
        Check("parallel", f"par:{team}", 12),
        Check("budget", f"budget:{team}", 40_000),
    ]


@pytest.mark.parametrize("seed", range(40))
async def test_sliced_tpm_counters_decide_as_exact_counters(seed: int) -> None:
    rng = random.Random(seed)
    made, exact = MemoryCounters(), ExactCounters()
    names = [(f"k{i}", f"t{i % 2}", rng.random() < 0.3) for i in range(5)]
    plans = [_checks(rng, *name, 0) for name in names]
    for checks in plans:
        for check in checks:
            if check.kind == "budget":
                await made.seed(check, 0)
    in_flight: list[tuple[list[Check], int]] = []
    admitted = refused = 0
    for step in range(1000):
        if step % 200 == 199:  # the next minute: new tpm counters (budgets stay)
            budgets = [[c for c in checks if c.kind == "budget"] for checks in plans]
            plans = [_checks(rng, *name, step) for name in names]
            for checks, kept in zip(plans, budgets, strict=True):
                checks[:] = [c for c in checks if c.kind != "budget"] + kept
        if rng.random() < 0.03:  # a key's checks list made again (budgets.py: an edit)
            k = rng.randrange(len(plans))
            plans[k] = [Check(c.kind, c.name, c.limit) for c in plans[k]]
        if in_flight and rng.random() < 0.45:
            checks, amount = in_flight.pop(rng.randrange(len(in_flight)))
            cost = rng.choice(
                [0, amount // 2, amount, amount + rng.randint(1, 500)]
            )  # above: a cost over its worst case
            tokens = rng.choice(
                [0, 1, 2, rng.randint(1, 40), rng.randint(40, 300)]
            )  # often few: grants used to the token
            made.settle(f"r{step}", checks, amount, cost, tokens, NOW)
            exact.settle(checks, amount, cost, tokens)
            continue
        checks = plans[rng.randrange(len(plans))]
        amount = rng.choice([0, rng.randint(1, 300), rng.randint(300, 3000)])
        got: Refusal | None = await made.admit(f"r{step}", checks, amount, NOW)
        want = exact.admit(checks, amount)
        assert (got and (got.check, got.used, got.reserved)) == want, (seed, step)
        if want is None:
            in_flight.append((checks, amount))
            admitted += 1
        else:
            refused += 1
    assert admitted > 50 and refused > 50, (admitted, refused)  # both ways, often


async def test_a_grant_another_key_used_to_the_token_refuses_the_next_request() -> None:
    """Two keys share a tpm of 1: the first's grant (the one token) used by its request, the
    second is refused, as with exact counters, though the cell itself has not counted it yet."""
    made = MemoryCounters()
    a, b = ([Check("tpm", "tpm:team", 1)] for _ in range(2))
    assert await made.admit("r1", a, 0, NOW) is None
    made.settle("r1", a, 0, 0, 1, NOW)  # its grant used exactly: nothing given back yet
    refusal = await made.admit("r2", b, 0, NOW)
    assert refusal is not None and (refusal.check, refusal.used) == (0, 1)
