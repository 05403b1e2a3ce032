"""Hardening of the callback pipeline: what a hostile or unusual callback, setting or input cannot break."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import textwrap
import threading

import pytest
from fakes import FakeProvider, Reply
from helpers import MESSAGES, call, flush

import lmgate
from lmgate import CustomLogger, RetryPolicy
from lmgate.testing import CapturingLogger


class ExitingLogger(CustomLogger):
    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        raise SystemExit(3)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        raise SystemExit(4)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_system_exit_in_a_hook_is_counted_and_delivery_goes_on(mode):
    """A hook raising SystemExit neither kills lmgate's callback thread or loop nor hangs flush."""
    capture = CapturingLogger()
    lmgate.callbacks = [ExitingLogger(), capture]
    before = sum(lmgate.callback_stats()["errors"].values())
    for _ in range(3):
        call(mode, False, mock_response="ok")
    flush()
    for _ in range(2):  # the thread or loop is still alive afterwards
        call(mode, False, mock_response="ok")
    flush()
    assert len(capture.of("log_success_event", "async_log_success_event")) == 5
    assert sum(lmgate.callback_stats()["errors"].values()) - before == 5


@dataclasses.dataclass
class DataclassLogger(CustomLogger):  # eq=True makes instances unhashable
    name: str = "x"
    seen: list = dataclasses.field(default_factory=list)

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.seen.append(kwargs["litellm_call_id"])


def test_unhashable_and_equal_loggers():
    """An unhashable logger works, and two equal loggers are two loggers (the plan cache keys by identity)."""
    a, b = DataclassLogger(), DataclassLogger()
    assert a == b
    lmgate.callbacks = [a]
    call("sync", False, mock_response="ok")
    lmgate.callbacks = [b]
    call("sync", False, mock_response="ok")
    flush()
    assert len(a.seen) == 1 and len(b.seen) == 1


def test_lists_set_to_none_or_to_one_callback():
    """Setting a list to None or to a single callback (not a list) works instead of breaking every call."""
    logger = CapturingLogger()
    seen: list[str] = []
    lmgate.failure_callback = None
    lmgate.callbacks = logger
    lmgate.success_callback = lambda kwargs, r, s, e: seen.append("fn")
    call("sync", False, mock_response="ok")
    flush()
    assert logger.hooks()[-1] == "log_success_event" and seen == ["fn"]


def test_original_response_is_masked(fake_provider: FakeProvider):
    """A provider error body that quotes the key back reaches callbacks masked."""
    key = "sk-live-quoted-back-0123456789abcdef"
    fake_provider.enqueue(Reply(status=401, error_type="invalid_request_error", error_message=f"Incorrect API key provided: {key}"))
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    with pytest.raises(lmgate.AuthenticationError):
        lmgate.completion(model="openai/gpt-4o-mini", messages=MESSAGES, api_base=fake_provider.base_url + "/v1", api_key=key)
    flush()
    post = capture.of("log_post_api_call")[0].kwargs
    assert "Incorrect API key" in post["original_response"] and key not in post["original_response"]
    assert all(key not in repr(e.kwargs) for e in capture.events)


def test_global_redaction_covers_response_obj_and_original_response(fake_provider: FakeProvider):
    """With message logging off, the response object and the raw body reach callbacks redacted."""
    lmgate.turn_off_message_logging = True
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    r = lmgate.completion(model="openai/gpt-4o-mini", messages=MESSAGES, api_base=fake_provider.base_url + "/v1", api_key="sk-x")
    flush()
    assert r.choices[0].message.content == "Hello from fake"  # the caller's answer is untouched
    for e in capture.events:
        assert "Hello from fake" not in repr(e.kwargs) and "Hello from fake" not in repr(e.response_obj), e.hook


def test_each_attempt_is_logged_as_it_was(fake_provider: FakeProvider):
    """Pre and post events of a retried call carry their own attempt and raw body, even when delivered late."""
    release = threading.Event()

    class Slow(CapturingLogger):
        def log_pre_api_call(self, model, messages, kwargs):
            release.wait(10)  # the views of every later event are built after the whole call
            super().log_pre_api_call(model, messages, kwargs)

    fake_provider.enqueue(Reply(status=429, error_type="rate_limit_error", error_message="slow down please"))
    capture = Slow()
    lmgate.callbacks = [capture]
    lmgate.completion(
        model="openai/gpt-4o-mini", messages=MESSAGES, api_base=fake_provider.base_url + "/v1", api_key="sk-x",
        num_retries=1, retry_policy=RetryPolicy(sleep=lambda s: None),
    )
    release.set()
    flush()
    seen = [(e.hook, e.kwargs["additional_args"]["attempt"], e.kwargs["original_response"]) for e in capture.events]
    assert [(h, a) for h, a, _ in seen] == [
        ("log_pre_api_call", 0), ("log_post_api_call", 0), ("log_pre_api_call", 1), ("log_post_api_call", 1),
        ("log_success_event", 1),
    ]
    assert seen[0][2] is None and seen[2][2] is None
    assert "slow down please" in seen[1][2] and "Hello from fake" in seen[3][2]


def test_int_keyed_params_are_logged_and_sent(fake_provider: FakeProvider):
    """logit_bias={50256: -100} (int keys) is sent as JSON and logged, not dropped or mistaken for a connection error."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    lmgate.completion(
        model="openai/gpt-4o-mini", messages=MESSAGES, api_base=fake_provider.base_url + "/v1", api_key="sk-x",
        logit_bias={50256: -100},
    )
    flush()
    assert fake_provider.requests[-1].json["logit_bias"] == {"50256": -100}
    slo = capture.of("log_success_event")[0].kwargs["standard_logging_object"]
    assert slo["model_parameters"]["logit_bias"] == {"50256": -100}


def test_complete_streaming_response_is_private_to_each_callback():
    """A callback changing kwargs['complete_streaming_response'] changes neither another callback's nor the chunks."""
    seen: list[str] = []

    class Vandal(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            kwargs["complete_streaming_response"].choices[0].message.content = "vandalised"

    class Reader(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            seen.append(kwargs["complete_streaming_response"].choices[0].message.content)

    lmgate.callbacks = [Vandal(), Reader()]
    chunks = call("sync", True, mock_response="original")
    flush()
    assert seen == ["original"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "original"


def test_clear_and_popitem_on_kwargs():
    """clear() empties kwargs, lazy keys included; popitem() works."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    call("sync", False, mock_response="ok")
    flush()
    kwargs = capture.of("log_success_event")[0].kwargs
    kwargs.popitem()
    kwargs.clear()
    assert len(kwargs) == 0 and "messages" not in kwargs and dict(kwargs) == {}


def test_aflush_inside_an_async_hook_raises_at_once():
    """Awaiting aflush_callbacks inside a hook is an error straight away, not a wait for itself."""
    errors: list[str] = []

    class Flusher(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            try:
                await lmgate.aflush_callbacks(30)
            except RuntimeError as error:
                errors.append(str(error))

    lmgate.callbacks = [Flusher()]
    asyncio.run(lmgate.acompletion(model="gpt-4o-mini", messages=MESSAGES, mock_response="ok"))
    flush()
    assert errors and "inside a callback" in errors[0]


def test_stream_left_open_at_exit_still_ends_once(tmp_path):
    """A stream the program leaves open (break without with, kept referenced) ends as abandoned at exit."""
    out = tmp_path / "events.txt"
    script = textwrap.dedent(
        f"""
        import lmgate
        def on_success(kwargs, r, s, e):
            open({str(out)!r}, "a").write("success " + str(kwargs["stream_status"]) + "\\n")
        lmgate.success_callback = [on_success]
        response = lmgate.completion(model="gpt-4o-mini", messages=[{{"role": "user", "content": "x"}}],
                                     mock_response="a long answer here", stream=True)
        for chunk in response:
            break
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert out.read_text().splitlines() == ["success abandoned"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_fork_while_a_lock_is_held_does_not_hang_the_child(tmp_path):
    """A child forked while lmgate's secret lock was held can still make calls."""
    script = textwrap.dedent(
        """
        import os, sys, lmgate
        from lmgate import _secrets
        lmgate.success_callback = [lambda *a: None]
        lmgate.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], mock_response="y")
        with _secrets._known_lock:  # as if another thread held it at the moment of fork
            pid = os.fork()
        if pid == 0:
            _secrets.remember_secret("sk-child-secret-0123456789")
            lmgate.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], mock_response="y")
            os._exit(0 if lmgate.flush_callbacks(10) else 1)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
