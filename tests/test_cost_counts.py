"""``compute_cost`` reads int counts as they are and converts anything else with ``int()``, as
before (issue 18 skips the call for an int): the same cost and breakdown for every shape."""

from __future__ import annotations

from typing import Any

import pytest

from lmgate.cost import compute_cost

MODELS: list[str | None] = ["gpt-4o-mini"]


@pytest.mark.parametrize(
    ("prompt", "completion"),
    [("12", "7"), (12.9, 7.2), (True, False), (0, 0), (None, 3), (12, None), (5, 7)],
)
def test_counts_of_any_shape_cost_what_their_ints_cost(prompt: Any, completion: Any) -> None:
    given = compute_cost(MODELS, {"prompt_tokens": prompt, "completion_tokens": completion})
    as_ints = compute_cost(
        MODELS, {"prompt_tokens": int(prompt or 0), "completion_tokens": int(completion or 0)}
    )
    assert given == as_ints
    assert given.cost is not None


def test_cached_tokens_beyond_the_prompt_leave_no_negative_input() -> None:
    result = compute_cost(
        MODELS, {"prompt_tokens": 3, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 9}}
    )
    assert result.breakdown is not None and result.breakdown["input_cost"] == 0.0


def test_a_count_that_is_not_a_number_still_has_its_reason() -> None:
    result = compute_cost(MODELS, {"prompt_tokens": "many", "completion_tokens": 1})
    assert result.cost is None and "not a number" in (result.reason or "")
