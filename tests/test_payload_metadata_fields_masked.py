"""A caller's metadata may name a field lmgate fills itself (``usage_object``,
``applied_guardrails``, ``used_client_oauth_token``, ``answered_by_pre_call_hook``): what the
caller put there is masked in the standard logging payload like the rest of its metadata (a
client of the proxy sends its metadata as it likes; those names are not the proxy's to strip)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import lmgate
from lmgate.integrations.custom_logger import CustomLogger

SHAPED = "sk-proj-metafieldabcdefghij1234567890"


class Capture(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.payloads: list[Any] = []

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.payloads.append(kwargs["standard_logging_object"])


@pytest.mark.parametrize(
    "field", ["usage_object", "applied_guardrails", "used_client_oauth_token", "answered_by_pre_call_hook"]
)
def test_a_secret_the_caller_put_under_a_field_lmgate_fills_is_masked(field: str) -> None:
    capture = Capture()
    lmgate.callbacks = [capture]
    lmgate.completion(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        mock_response="ok",
        metadata={field: {"note": f"key {SHAPED}", "api_key": "plainvalue-0123456789"}},
    )
    assert lmgate.flush_callbacks(10)
    [payload] = capture.payloads
    text = orjson.dumps(payload, default=str).decode()
    assert SHAPED not in text
    assert "plainvalue-0123456789" not in text
