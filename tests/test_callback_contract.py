"""The callback contract (docs/callbacks.md): every point has its own test here."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from fakes import Reply
from helpers import MESSAGES, MODE_IDS, MODES, flush
from helpers import call as _call

import lmgate
from lmgate.integrations.custom_logger import CustomLogger
from lmgate.testing import CapturingLogger

# The contract tests that take ``backend`` run twice: answered by mock_response, and by a real HTTP
# provider (tests/fakes/provider.py) — both go through the one attempt loop, so both must keep it.
_MAGIC_STATUS = {"lmgate.InternalServerError": 500, "lmgate.RateLimitError": 429}
_http_provider: list = []  # the fake provider while an "http" test runs


@pytest.fixture(params=["mock", "http"])
def backend(request):
    if request.param == "http":
        fp = request.getfixturevalue("fake_provider_session")
        fp.reset()
        _http_provider.append(fp)
        yield request.param
        _http_provider.clear()
    else:
        yield request.param


def _cost(backend):
    # gpt-4o-mini at $0.15/$0.60 per 1M tokens: the mock reports 10+20 tokens, the fake provider 7+5
    return 1.35e-05 if backend == "mock" else 7 * 0.15e-6 + 5 * 0.6e-6


def call(mode, stream, **kwargs):
    """helpers.call, with mock_response turned into the same answer from the fake HTTP provider
    when the test runs on the "http" backend."""
    if _http_provider and "mock_response" in kwargs:
        fp = _http_provider[0]
        answer = kwargs.pop("mock_response")
        if isinstance(answer, lmgate.LmgateError):
            reply = Reply(status=answer.status_code, error_message=answer.message)
        elif answer in _MAGIC_STATUS:
            reply = Reply(status=_MAGIC_STATUS[answer])
        else:
            reply = Reply(text=answer)
        fp.enqueue(reply)
        kwargs.update(model="openai/gpt-4o-mini", api_base=fp.base_url + "/v1", api_key="sk-fake")
    return _call(mode, stream, **kwargs)


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_every_hook_in_order_for_each_entry_point(mode, stream, backend):
    """A logger sees pre → post → each chunk → one terminal event, whatever the entry point."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    result = call(mode, stream, mock_response="hello world")
    flush()
    prefix = "async_" if mode == "async" else ""
    if stream and backend == "mock":
        assert len(result) == 5  # "hello world" in 3-char chunks + final
    chunks = [f"{prefix}log_stream_event"] * len(result) if stream else []
    expected = [f"{prefix}log_pre_api_call", "log_post_api_call", *chunks, f"{prefix}log_success_event"]
    assert capture.hooks() == expected


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_failure_gets_exactly_one_failure_event(mode, stream, backend):
    """A failing call produces one failure event and no success event."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    with pytest.raises(lmgate.RateLimitError):
        call(mode, stream, mock_response=lmgate.RateLimitError("slow down"))
    flush()
    terminal = [h for h in capture.hooks() if "success" in h or "failure" in h]
    assert terminal == ["async_log_failure_event" if mode == "async" else "log_failure_event"]
    kwargs = capture.events[-1].kwargs
    assert kwargs["log_event_type"] == "failed_api_call"
    assert isinstance(kwargs["exception"], lmgate.RateLimitError)
    assert "RateLimitError" in kwargs["traceback_exception"]
    assert kwargs["standard_logging_object"]["status"] == "failure"
    assert kwargs["standard_logging_object"]["error_information"]["error_code"] == "429"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sync_only_logger_hears_async_calls_and_async_only_hears_sync(mode, backend):
    """A logger with only sync hooks hears async calls, and one with only async hooks hears sync calls."""
    seen: list[str] = []

    class SyncOnly(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            seen.append("sync:" + kwargs["call_type"])

        def log_failure_event(self, kwargs, response_obj, start_time, end_time):
            seen.append("sync-fail:" + kwargs["call_type"])

    class AsyncOnly(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            seen.append("async:" + kwargs["call_type"])

        async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
            seen.append("async-fail:" + kwargs["call_type"])

    lmgate.callbacks = [SyncOnly(), AsyncOnly()]
    call(mode, False, mock_response="ok")
    with pytest.raises(lmgate.InternalServerError):
        call(mode, False, mock_response="lmgate.InternalServerError")
    flush()
    ct = "acompletion" if mode == "async" else "completion"
    assert sorted(seen) == sorted([f"sync:{ct}", f"async:{ct}", f"sync-fail:{ct}", f"async-fail:{ct}"])


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_functions_sync_and_async_in_every_list(mode, stream, backend):
    """Sync and async functions in success/failure/input lists each run once per call."""
    seen: list[str] = []

    def on_input(kwargs):
        seen.append("input")

    def on_success(kwargs, response, start, end):
        seen.append("success")

    async def on_success_async(kwargs, response, start, end):
        seen.append("success-async")

    async def on_failure_async(kwargs, response, start, end):
        seen.append("failure-async")

    lmgate.input_callback = [on_input]
    lmgate.success_callback = [on_success, on_success_async]
    lmgate.failure_callback = [on_failure_async]
    call(mode, stream, mock_response="ok")
    with pytest.raises(lmgate.InternalServerError):
        call(mode, stream, mock_response="lmgate.InternalServerError")
    flush()
    assert sorted(seen) == sorted(["input", "success", "success-async", "input", "failure-async"])


@pytest.mark.parametrize("stream", [False, True])
def test_slow_hook_adds_nothing_to_the_call(stream):
    """A hook that blocks until released does not hold up the call: the call returns while the hook still waits."""
    release = threading.Event()
    entered = threading.Event()

    class Slow(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            entered.set()
            release.wait(10)

    lmgate.callbacks = [Slow()]
    call("sync", stream, mock_response="hi")
    assert entered.wait(5)  # the hook is running…
    assert lmgate.callback_stats()["pending"] >= 1  # …and the call has already returned
    release.set()
    flush()


def test_failure_hook_does_not_delay_the_exception():
    """The exception reaches the caller while the failure hook is still blocked."""
    release = threading.Event()
    entered = threading.Event()

    class SlowFailure(CustomLogger):
        async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
            entered.set()
            await asyncio.to_thread(release.wait, 10)

    lmgate.callbacks = [SlowFailure()]
    with pytest.raises(lmgate.RateLimitError):
        call("async", False, mock_response="lmgate.RateLimitError")
    assert entered.wait(5)
    assert lmgate.callback_stats()["pending"] >= 1
    release.set()
    flush()


def test_raising_callback_is_logged_once_counted_and_others_still_run(caplog):
    """A callback that raises is logged once with its name, counted, and does not stop other callbacks."""
    capture = CapturingLogger()

    class Broken(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            raise ValueError("boom")

    lmgate.callbacks = [Broken(), capture]
    before = lmgate.callback_stats()["errors"].get("Broken.log_success_event", 0)
    for _ in range(3):
        call("sync", False, mock_response="ok")
    flush()
    assert lmgate.callback_stats()["errors"]["Broken.log_success_event"] == before + 3
    assert len(capture.of("log_success_event")) == 3
    logged = [r for r in caplog.records if "Broken.log_success_event" in r.getMessage()]
    assert len(logged) <= 1  # once per process and hook (0 if an earlier test already logged it)


def test_strict_callbacks_reraises_on_flush():
    """With strict_callbacks on, flush_callbacks raises CallbackError carrying the callback's error."""

    class Broken(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            raise ValueError("strict boom")

    lmgate.strict_callbacks = True
    lmgate.callbacks = [Broken()]
    call("sync", False, mock_response="ok")
    with pytest.raises(lmgate.CallbackError) as info:
        lmgate.flush_callbacks(10)
    assert isinstance(info.value.__cause__, ValueError)


def test_each_callback_gets_its_own_kwargs(backend):
    """What one callback changes in kwargs, no other callback sees."""
    seen: list[dict] = []

    class Mutator(CustomLogger):
        def log_pre_api_call(self, model, messages, kwargs):
            messages[0]["content"] = "changed"
            kwargs["litellm_params"]["metadata"]["k"] = "changed"

        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            kwargs["standard_logging_object"]["metadata"]["k"] = "changed"
            kwargs["messages"].clear()

    def observer(kwargs, response, start, end):
        seen.append(kwargs)

    lmgate.callbacks = [Mutator()]
    lmgate.success_callback = [observer]
    messages = [{"role": "user", "content": "original"}]
    call("sync", False, messages=messages, mock_response="ok", metadata={"k": "v"})
    flush()
    assert messages == [{"role": "user", "content": "original"}]  # the caller's list is untouched too
    kwargs = seen[0]
    assert kwargs["messages"] == [{"role": "user", "content": "original"}]
    assert kwargs["litellm_params"]["metadata"] == {"k": "v"}
    assert kwargs["standard_logging_object"]["metadata"]["k"] == "v"


def test_same_object_twice_runs_once_two_instances_both_run(backend):
    """Registering one object in two lists runs it once; two instances of one class both run."""
    a, b = CapturingLogger(), CapturingLogger()
    lmgate.callbacks = [a, b, a]
    lmgate.success_callback = [a]
    call("sync", False, mock_response="ok")
    flush()
    assert a.hooks().count("log_success_event") == 1
    assert b.hooks().count("log_success_event") == 1


def test_per_call_callbacks_apply_to_that_call_only(backend):
    """callbacks= on one call does not leak into the next call."""
    capture = CapturingLogger()
    call("sync", False, mock_response="ok", callbacks=[capture])
    call("sync", False, mock_response="ok")
    flush()
    assert capture.hooks().count("log_success_event") == 1


def test_no_callbacks_means_no_record():
    """With nothing registered the pipeline builds no call record (no payload work)."""
    from lmgate._call import Call

    c = Call("chat", "gpt-4o-mini", MESSAGES, {"mock_response": "x"}, stream=False, is_async=False)
    assert c.record is None
    lmgate.success_callback = [lambda *a: None]
    c = Call("chat", "gpt-4o-mini", MESSAGES, {"mock_response": "x"}, stream=False, is_async=False)
    assert c.record is not None


def test_abandoned_stream_ends_in_one_success_event_flagged_abandoned():
    """Breaking out of a stream early still gives exactly one terminal event, with the partial response."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    with lmgate.completion(
        model="gpt-4o-mini", messages=MESSAGES, mock_response="abcdefghijkl", stream=True
    ) as s:
        first = next(iter(s))
    assert first.choices[0].delta.content == "abc"
    flush()
    terminal = capture.of("log_success_event", "log_failure_event")
    assert len(terminal) == 1
    kwargs = terminal[0].kwargs
    assert kwargs["stream_status"] == "abandoned"
    assert kwargs["standard_logging_object"]["stream_status"] == "abandoned"
    assert kwargs["complete_streaming_response"].choices[0].message.content == "abc"


def test_abandoned_async_stream_ends_in_one_event():
    """An async stream closed early gives one terminal event flagged abandoned."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]

    async def run():
        stream = await lmgate.acompletion(
            model="gpt-4o-mini", messages=MESSAGES, mock_response="abcdefghi", stream=True
        )
        async for _ in stream:
            break
        await stream.aclose()

    asyncio.run(run())
    flush()
    terminal = capture.of("async_log_success_event", "async_log_failure_event")
    assert [e.kwargs["stream_status"] for e in terminal] == ["abandoned"]


def test_garbage_collected_stream_still_ends():
    """A stream dropped without being consumed or closed ends as abandoned when collected."""
    import gc

    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    stream = lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="abcdef", stream=True)
    del stream
    gc.collect()
    flush()
    assert [e.kwargs["stream_status"] for e in capture.of("log_success_event")] == ["abandoned"]


def test_kwargs_keys_the_spec_names(tmp_path, backend):
    """kwargs carries every key the spec documents, in the phases it documents them."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    call("sync", False, mock_response="ok", metadata={"hello": "world", "n": 1}, temperature=0.2, user="u1")
    flush()
    pre = capture.of("log_pre_api_call")[0].kwargs
    for key in (
        "model",
        "messages",
        "optional_params",
        "litellm_params",
        "start_time",
        "input",
        "api_key",
        "additional_args",
        "litellm_call_id",
        "litellm_trace_id",
        "call_type",
        "stream",
        "user",
    ):
        assert key in pre, key
    assert pre["log_event_type"] == "pre_api_call"
    assert pre["additional_args"]["complete_input_dict"]["temperature"] == 0.2
    assert pre["optional_params"] == {"temperature": 0.2, "user": "u1"}
    post = capture.of("log_post_api_call")[0].kwargs
    assert post["log_event_type"] == "post_api_call"
    assert "original_response" in post
    ok = capture.of("log_success_event")[0].kwargs
    assert ok["log_event_type"] == "successful_api_call"
    assert ok["litellm_params"]["metadata"] == {"hello": "world", "n": 1}
    assert ok["response_cost"] == pytest.approx(_cost(backend))
    assert ok["cache_hit"] is False
    assert ok["end_time"] >= ok["start_time"]
    assert ok["completion_start_time"] == ok["end_time"]
    slo = ok["standard_logging_object"]
    assert slo["metadata"]["hello"] == "world" and slo["metadata"]["n"] == 1
    assert slo["model_parameters"] == {"temperature": 0.2, "user": "u1"}
    json.dumps(slo)  # the payload is plain JSON


def test_streamed_success_has_complete_streaming_response_both_names(backend):
    """Sync and async streams both expose complete_streaming_response and async_complete_streaming_response."""
    for mode in ("sync", "async"):
        capture = CapturingLogger()
        lmgate.callbacks = [capture]
        call(mode, True, mock_response="streamed text")
        flush()
        ok = capture.of("log_success_event", "async_log_success_event")[0].kwargs
        assert ok["complete_streaming_response"].choices[0].message.content == "streamed text"
        assert ok["async_complete_streaming_response"] is not None
        assert ok["response_cost"] == pytest.approx(_cost(backend))
        assert ok["completion_start_time"] <= ok["end_time"]


def test_async_hooks_survive_asyncio_run_ending():
    """Deliveries still pending when asyncio.run() returns are not cancelled: they complete on lmgate's loop."""
    release = threading.Event()
    done: list[str] = []

    class Slow(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            await asyncio.to_thread(release.wait, 10)
            done.append(kwargs["litellm_call_id"])

    lmgate.callbacks = [Slow()]

    async def main():
        for _ in range(5):
            await lmgate.acompletion(model="gpt-4o-mini", messages=MESSAGES, mock_response="x")

    asyncio.run(main())  # returns with deliveries still pending
    release.set()
    flush()
    assert len(done) == 5


def test_flush_waits_for_every_delivery():
    """flush_callbacks returns only once every submitted hook has finished."""
    gate = threading.Event()
    done: list[int] = []

    def slow(kwargs, response, start, end):
        gate.wait(10)
        done.append(1)

    lmgate.success_callback = [slow]
    for _ in range(3):
        call("sync", False, mock_response="x")
    assert lmgate.flush_callbacks(0.05) is False  # still blocked
    gate.set()
    assert lmgate.flush_callbacks(10) is True
    assert len(done) == 3


def test_hooks_defined_positionally_work():
    """Hooks written with *args (no spec parameter names) are called and receive the arguments."""
    got: list[tuple] = []

    class Positional(CustomLogger):
        def log_success_event(self, *args):
            got.append(args)

        def log_pre_api_call(self, *args):
            got.append(args)

    lmgate.callbacks = [Positional()]
    call("sync", False, mock_response="ok")
    flush()
    assert len(got) == 2
    assert got[0][0] == "gpt-4o-mini" and isinstance(got[0][2], dict)  # (model, messages, kwargs)
    assert got[1][1].choices[0].message.content == "ok"  # (kwargs, response_obj, start, end)


def test_time_from_return_to_success_hook_is_short():
    """The success hook starts soon after the call returns (ordering check, not a timing assertion)."""
    stamps: dict[str, float] = {}

    class Stamp(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            stamps["hook"] = time.monotonic()

    lmgate.callbacks = [Stamp()]
    call("sync", False, mock_response="x")
    stamps["returned"] = time.monotonic()
    flush()
    assert "hook" in stamps


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_embeddings_reach_callbacks(mode):
    """embedding and aembedding go through the same callbacks, with their input as messages."""
    capture = CapturingLogger()
    seen: list[str] = []
    lmgate.callbacks = [capture]
    lmgate.success_callback = [lambda kwargs, r, s, e: seen.append(kwargs["call_type"])]
    if mode == "sync":
        r = lmgate.embedding(model="text-embedding-3-small", input="hello", mock_response=True)
    else:
        r = asyncio.run(
            lmgate.aembedding(model="text-embedding-3-small", input=["a", "b"], mock_response=True)
        )
    flush()
    assert r.data[0].embedding
    prefix = "async_" if mode == "async" else ""
    assert capture.hooks() == [f"{prefix}log_pre_api_call", "log_post_api_call", f"{prefix}log_success_event"]
    assert seen == ["aembedding" if mode == "async" else "embedding"]


def test_unknown_model_fails_through_callbacks():
    """A call rejected before sending (unknown model) still gets its failure event."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    with pytest.raises(lmgate.UnknownModelError, match="Supported"):
        lmgate.completion(model="no-such-model", messages=MESSAGES)
    flush()
    assert capture.hooks() == ["log_failure_event"]


def test_bad_messages_are_a_clear_error():
    """messages that are not a list of dicts raise BadRequestError saying what is expected."""
    with pytest.raises(lmgate.BadRequestError, match="list of dicts"):
        lmgate.completion(model="gpt-4o-mini", messages="hello", mock_response="x")


def test_unknown_callback_name_is_a_clear_error():
    """A name in lmgate.callbacks that no logger answers to raises ValueError listing what works."""
    lmgate.callbacks = ["no_such_logger"]
    with pytest.raises(ValueError, match="no_such_logger"):
        lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="x")
