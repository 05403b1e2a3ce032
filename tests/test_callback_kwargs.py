"""kwargs behaves as a plain dict although its costlier keys are filled on first use."""

from __future__ import annotations

import copy
import json
import pickle

import orjson
import pytest
from helpers import call, flush

import lmgate
from lmgate.testing import CapturingLogger


@pytest.fixture
def kwargs():
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    call("sync", False, mock_response="ok", metadata={"m": 1}, temperature=0.3)
    flush()
    return capture.of("log_success_event")[0].kwargs


def test_lazy_keys_are_visible_to_every_dict_operation(kwargs):
    """in, get, [], keys, len, dict(), {**}, repr, copy and pickle all see the lazy keys."""
    assert "standard_logging_object" in kwargs and "messages" in kwargs
    assert kwargs.get("litellm_params")["metadata"] == {"m": 1}
    assert kwargs["additional_args"]["complete_input_dict"]["temperature"] == 0.3
    assert "input" in set(kwargs.keys())
    plain = dict(kwargs)
    assert plain["standard_logging_object"]["status"] == "success"
    assert {**kwargs}["messages"] == [{"role": "user", "content": "Hi"}]
    assert len(plain) == len(kwargs)
    assert "standard_logging_object" in repr(kwargs)
    assert copy.deepcopy(kwargs)["messages"] == kwargs["messages"]
    assert pickle.loads(pickle.dumps(kwargs, protocol=pickle.HIGHEST_PROTOCOL))["model"] == "gpt-4o-mini"


def test_json_dumps_of_a_view_with_default_str(kwargs):
    """json.dumps(kwargs, default=str) — how users often print kwargs — includes the lazy keys."""
    text = json.dumps(kwargs, default=str)
    assert '"standard_logging_object"' in text and '"litellm_params"' in text


def test_setting_and_deleting_lazy_keys(kwargs):
    """Assigning or deleting a key that was never read behaves like a normal dict."""
    kwargs["messages"] = "replaced"
    assert kwargs["messages"] == "replaced"
    del kwargs["input"]
    assert "input" not in kwargs
    with pytest.raises(KeyError):
        kwargs["no-such-key"]
    assert kwargs.pop("standard_logging_object")["status"] == "success"
    assert "standard_logging_object" not in kwargs


def test_payload_json_matches_the_dict(kwargs):
    """payload_json() (what batch loggers ship) equals the standard_logging_object dict."""
    raw = kwargs.payload_json()
    assert orjson.loads(raw) == kwargs["standard_logging_object"]


def test_payload_json_is_redacted_for_a_redacting_logger():
    """A logger that turned message logging off gets redacted JSON from payload_json()."""
    private = CapturingLogger(turn_off_message_logging=True)
    lmgate.callbacks = [private]
    call(
        "sync",
        False,
        mock_response="private answer",
        messages=[{"role": "user", "content": "private question"}],
    )
    flush()
    raw = private.of("log_success_event")[0].kwargs.payload_json()
    assert b"private answer" not in raw and b"private question" not in raw
