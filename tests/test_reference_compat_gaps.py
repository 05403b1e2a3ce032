"""Issue 13, the reviewer's gaps: mocks selected by mock_tool_calls/mock_timeout alone, an exception
instance as mock_response, the log_format message, declared type defaults, s3_callback_params."""

from __future__ import annotations

from typing import Any

import pytest
from fakes.s3 import FakeS3

import lmgate
import lmgate as litellm
from lmgate.loggers.s3 import logger_for_name

MESSAGES = [{"role": "user", "content": "Hi"}]


def test_mock_timeout_alone_mocks_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without mock_response the reference still mocks: no request goes to the provider."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(litellm.Timeout):
        litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_timeout=True, timeout=0.05)
    # without a timeout there is nothing to exceed: the reference's default mock text
    response = litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_timeout=True)
    assert response.choices[0].message.content == "This is a mock request"


def test_mock_tool_calls_alone_mocks_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    tool_calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    response = litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_tool_calls=tool_calls)
    assert response.choices[0].message.tool_calls[0].function.name == "f"
    assert response.choices[0].finish_reason == "tool_calls"


def test_an_exception_instance_as_mock_response_is_mapped() -> None:
    """The reference wraps a plain exception in its own error (status 500 unless it carries one)."""
    with pytest.raises(litellm.InternalServerError, match="boom") as info:
        litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=ValueError("boom"))
    assert info.value.status_code == 500

    class Throttled(Exception):
        status_code = 429

    with pytest.raises(litellm.RateLimitError):
        litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=Throttled("slow"))


def test_invalid_log_format_message_starts_with_invalid_log_format() -> None:
    from lmgate.loggers.generic_api import GenericAPILogger

    with pytest.raises(ValueError) as info:
        GenericAPILogger(endpoint="http://127.0.0.1:9/logs", log_format="xml")
    assert str(info.value).startswith("Invalid log_format 'xml'")


def test_declared_fields_default_to_none() -> None:
    assert lmgate.TranscriptionResponse(text="t")["usage"] is None
    assert lmgate.types.ImageObject()["provider_specific_fields"] is None


def test_s3_callback_params_module_setting(tmp_path: Any) -> None:
    """The reference's library usage: ``litellm.s3_callback_params = {...}`` then ``"s3"``."""
    with FakeS3("AKIDTEST", "secret-key-1") as s3:
        litellm.s3_callback_params = {
            "s3_bucket_name": "logs",
            "s3_endpoint_url": s3.base_url,
            "s3_aws_access_key_id": "AKIDTEST",
            "s3_aws_secret_access_key": "secret-key-1",
            "spool_dir": str(tmp_path / "spool"),
        }
        probe = logger_for_name("s3")  # configured by the module setting alone
        assert probe is not None
        probe.close(0)
        litellm.callbacks = ["s3"]
        litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="ok")
        assert lmgate.flush_callbacks(10)
        assert s3.refused == []
        assert len(s3.objects()) == 1
