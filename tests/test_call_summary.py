"""The frozen call summary, its adapters (payload, kwargs) and the public SummarySink seam."""

from __future__ import annotations

import dataclasses
import json
import threading

import orjson
import pytest
from helpers import flush
from payload_schema import assert_valid_payload

import lmgate
from lmgate.integrations import CallSummary, SummarySink, takes_summaries
from lmgate.integrations.custom_logger import CustomLogger

MESSAGES = [{"role": "user", "content": "Hi"}]


class Dumping(CustomLogger):
    """Encodes kwargs before anything reads them, as a logger that ships kwargs would. Unless
    made with ``full_kwargs=False`` it hands orjson the kwargs as given (by default every key is in
    the dict's storage); with it, ``dict(kwargs)``."""

    def __init__(self, full_kwargs: bool | None) -> None:
        super().__init__() if full_kwargs is None else super().__init__(full_kwargs=full_kwargs)
        self.seen: list[tuple[str, bytes, str, list[str]]] = []

    def _keep(self, event: str, kwargs: dict) -> None:
        # orjson first: json reads through items(), which makes every key (for orjson too)
        by_orjson = orjson.dumps(kwargs if self.full_kwargs is not False else dict(kwargs), default=str)
        by_json = json.dumps(kwargs, default=str)
        self.seen.append((event, by_orjson, by_json, list(kwargs)))

    def log_pre_api_call(self, model, messages, kwargs):
        self._keep("pre", kwargs)

    def log_stream_event(self, kwargs, response_obj, start_time, end_time):
        self._keep("stream", kwargs)

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._keep("success", kwargs)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._keep("failure", kwargs)


class Sink(CustomLogger):
    """A third-party logger on the fast inline path, through the public interface only."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: list[tuple[CallSummary, str, int]] = []
        self.hooks = 0

    def take(self, summary: CallSummary, event: str) -> None:
        self.taken.append((summary, event, threading.get_ident()))

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.hooks += 1  # replaced by take() for terminal events


@pytest.mark.parametrize("full", [None, True, False])
@pytest.mark.parametrize("stream", [False, True])
def test_orjson_and_json_dumps_of_kwargs_give_every_key(stream, full):
    logger = Dumping(full)
    lmgate.callbacks = [logger]
    response = lmgate.completion(
        model="gpt-4o-mini", messages=MESSAGES, mock_response="hello", stream=stream, metadata={"m": 1}
    )
    if stream:
        list(response)
    with pytest.raises(lmgate.exceptions.RateLimitError):
        lmgate.completion(
            model="gpt-4o-mini",
            messages=MESSAGES,
            mock_response=lmgate.exceptions.RateLimitError("slow down", "openai", "gpt-4o-mini"),
        )
    flush()
    events = {event for event, *_ in logger.seen}
    assert {"pre", "success", "failure"} <= events and (not stream or "stream" in events)
    for event, by_orjson, by_json, keys in logger.seen:
        from_orjson, from_json = orjson.loads(by_orjson), json.loads(by_json)
        assert list(from_orjson) == keys, event  # every key, in order, none lost in the dict's storage
        assert list(from_json) == keys, event
        assert from_orjson["messages"] == MESSAGES == from_json["messages"]
        assert from_orjson["litellm_params"]["metadata"] == from_json["litellm_params"]["metadata"]
        if event in ("success", "failure"):
            slo = from_orjson["standard_logging_object"]
            assert slo == from_json["standard_logging_object"]
            assert slo["status"] == event
            assert_valid_payload(slo)


def ship(kwargs: dict) -> bytes:  # a helper in the user's module, as a logger's code would have
    return orjson.dumps(kwargs, default=str)


def test_orjson_in_a_helper_or_a_success_function_gets_every_key_by_default():
    """orjson reads a dict's storage, not its methods: by default every hook gets kwargs with every
    key in the storage, wherever its code calls orjson; the reference's code runs unchanged."""
    shipped: list[tuple[str, dict, list[str]]] = []

    class ViaMethod(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            self._send(kwargs)

        def _send(self, kwargs):
            shipped.append(("method", orjson.loads(ship(kwargs)), list(kwargs)))

    def on_success(kwargs, response_obj, start_time, end_time):
        shipped.append(("function", orjson.loads(orjson.dumps(kwargs, default=str)), list(kwargs)))

    lmgate.callbacks = [ViaMethod()]
    lmgate.success_callback = [on_success]
    try:
        lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hello")
        flush()
    finally:
        lmgate.success_callback = []
    assert sorted(how for how, _, _ in shipped) == ["function", "method"]
    for how, dumped, keys in shipped:
        assert list(dumped) == keys, how
        assert dumped["messages"] == MESSAGES
        assert_valid_payload(dumped["standard_logging_object"])


def test_kwargs_read_from_python_are_private_copies():
    seen = []

    class Reader(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            kwargs["standard_logging_object"]["metadata"]["changed"] = True
            kwargs["messages"].append("x")
            seen.append(orjson.loads(orjson.dumps(kwargs, default=str)))

    lmgate.callbacks = [Reader(), Reader()]
    lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hello")
    flush()
    assert len(seen) == 2
    for kwargs in seen:  # what one callback changed, orjson sees in its kwargs and no other callback does
        assert kwargs["standard_logging_object"]["metadata"]["changed"] is True
        assert kwargs["messages"] == [*MESSAGES, "x"]


def test_a_third_party_summary_sink_takes_summaries_inline():
    sink = Sink()
    lmgate.callbacks = [sink]
    lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hello")
    # on the caller's path: taken before completion() returned, on this thread, with no flush
    assert [(event, ident) for _, event, ident in sink.taken] == [("success", threading.get_ident())]
    with pytest.raises(lmgate.exceptions.APIConnectionError):
        lmgate.completion(
            model="gpt-4o-mini",
            messages=MESSAGES,
            mock_response=lmgate.exceptions.APIConnectionError("down", "openai", "gpt-4o-mini"),
        )
    assert [event for _, event, _ in sink.taken] == ["success", "failure"]
    flush()
    assert sink.hooks == 0  # take() replaced the terminal hooks
    assert isinstance(sink, SummarySink)
    ok, failed = sink.taken[0][0], sink.taken[1][0]
    assert ok.status == "success" and ok.model == "gpt-4o-mini" and ok.error is None
    assert ok.usage is not None and ok.usage["total_tokens"] > 0
    assert failed.status == "failure" and isinstance(failed.error, lmgate.exceptions.APIConnectionError)
    for summary in (ok, failed):
        payload = orjson.loads(summary.payload_json())
        assert_valid_payload(payload)
        assert payload["litellm_call_id"] == summary.call_id
        assert summary.payload_json() is summary.payload_json()  # encoded once, shared


def test_a_sink_that_raises_is_counted_and_the_call_goes_on():
    class Broken(CustomLogger):
        def take(self, summary, event):
            raise RuntimeError("sink down")

    lmgate.callbacks = [Broken()]
    before = lmgate.callback_stats()["errors"].get("Broken.take", 0)
    assert lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hello")
    assert lmgate.callback_stats()["errors"]["Broken.take"] == before + 1


def test_the_summary_is_immutable():
    sink = Sink()
    lmgate.callbacks = [sink]
    lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hello", metadata={"tag": "a"})
    summary = sink.taken[0][0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.status = "failure"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.cost = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        summary.usage["total_tokens"] = 0  # type: ignore[index]
    with pytest.raises(TypeError):
        summary.optional_params["temperature"] = 2  # type: ignore[index]
    messages = summary.messages
    messages.append({"role": "user", "content": "changed"})
    assert summary.messages == MESSAGES  # snapshots read back as fresh copies


def test_lazy_kwargs_build_no_payload_for_a_callback_that_never_reads_it():
    class Quiet(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            assert kwargs["model"] == "gpt-4o-mini"

    for full, built in ((False, False), (True, True)):
        sink, quiet = Sink(), Quiet(full_kwargs=full)
        lmgate.callbacks = [quiet]
        lmgate.success_callback = [sink]  # a sink on success only: it does not encode the payload
        lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hello")
        flush()
        assert (sink.taken[0][0].payload_json_if_built() is not None) is built, full
    lmgate.success_callback = []


def test_a_sink_gets_a_redacted_payload_when_it_asks():
    sink = Sink()
    lmgate.callbacks = [sink]
    lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="the secret answer")
    summary = sink.taken[0][0]
    plain, redacted = orjson.loads(summary.payload_json()), orjson.loads(summary.payload_json(redact=True))
    assert "the secret answer" in str(plain["response"]) and plain["messages"] == MESSAGES
    assert "the secret answer" not in str(redacted["response"]) and redacted["messages"] != MESSAGES
    assert_valid_payload(redacted)


def test_a_logger_with_a_take_attribute_keeps_its_hooks():
    """Only a class's callable ``take`` makes a sink: ``self.take = 0.1`` (a sampling rate, say) does not."""

    class Sampled(CustomLogger):
        def __init__(self) -> None:
            super().__init__()
            self.take = 0.1
            self.seen: list[str] = []

        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            self.seen.append("success")

    sampled = Sampled()
    lmgate.callbacks = [sampled]
    lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hello")
    flush()
    assert sampled.seen == ["success"]


def test_a_sink_subclass_that_overrides_a_hook_gets_its_hooks_called():
    """The dispatcher's one rule: a hook defined below the class that defines ``take`` wins."""

    class Counting(Sink):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            self.hooks += 1

    counting = Counting()
    assert takes_summaries(Sink()) and not takes_summaries(counting)
    lmgate.callbacks = [counting]
    lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hello")
    flush()
    assert counting.hooks == 1 and counting.taken == []
