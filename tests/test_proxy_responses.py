"""``POST /v1/responses`` (+ ``GET``/``DELETE /v1/responses/{id}``) and ``POST /v1/completions``
of a real ``lmgate serve``, with the official ``openai`` SDK as the client, against a mock-,
an OpenAI- (passed through) and an Anthropic-backed (bridged over chat) deployment; the last
two are the fake provider on 127.0.0.1, which speaks OpenAI's Responses wire format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fakes import DEFAULT_TEXT, FakeProvider, LogReceiver, Reply
from proxy_kit import BACKENDS, MOCK_TEXT, BackendsProxy
from test_proxy_server import Served, generic_logger_extra

from lmgate.cost import compute_cost

MASTER = "sk-master-responses-0123456789"
UPSTREAM = "sk-upstream-responses-0123456789"
PROXY = BackendsProxy(MASTER, UPSTREAM, "RSP_MASTER_KEY", "RSP_UPSTREAM_KEY")
ENV = PROXY.env
write_config = PROXY.write_config
fake, served = PROXY.fixtures("responses")


@pytest.fixture
def client(served: Served, fake: FakeProvider) -> Iterator[openai.OpenAI]:
    fake.reset()
    with openai.OpenAI(base_url=f"{served.url}/v1", api_key=MASTER, max_retries=0) as c:
        yield c


def expected_text(backend: str) -> str:
    return MOCK_TEXT if backend == "mock" else DEFAULT_TEXT


WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


# ---- plain responses ----
@pytest.mark.parametrize("backend", BACKENDS)
def test_response_from_every_backend(client: openai.OpenAI, fake: FakeProvider, backend: str) -> None:
    response = client.responses.create(
        model=backend,
        instructions="Be brief.",
        input=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        ],
        max_output_tokens=64,
        temperature=0.5,
        metadata={"ticket": "T-1"},
        user="user-42",
    )
    assert response.object == "response" and response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.output_text == expected_text(backend)
    assert [item.type for item in response.output] == ["message"]
    assert response.metadata == {"ticket": "T-1"}
    assert response.instructions == "Be brief."
    if backend == "mock":
        assert fake.requests == []
        return
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 5)  # type: ignore[union-attr]
    (sent,) = fake.requests
    assert sent.headers.get("authorization", sent.headers.get("x-api-key", "")).endswith(UPSTREAM)
    body = sent.json
    if backend == "openai":  # passed through: the request as sent, the model the deployment's
        assert sent.path == "/v1/responses"
        assert response.id == "resp_fake" + response.id.removeprefix("resp_fake")  # OpenAI's own id
        assert body["model"] == "gpt-4o-mini" and body["instructions"] == "Be brief."
        assert body["input"][2] == {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]}
        assert body["metadata"] == {"ticket": "T-1"}  # the client's, never what the proxy stamps
        assert (body["max_output_tokens"], body["temperature"], body["user"]) == (64, 0.5, "user-42")
        assert "stream" not in body
    else:  # bridged over chat, sent to Claude's Messages API
        assert sent.path == "/v1/messages"
        assert body["system"] == "Be brief."
        assert body["messages"] == [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Weather?"},
        ]
        assert (body["max_tokens"], body["temperature"]) == (64, 0.5)
        assert body["metadata"] == {"user_id": "user-42"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_input_and_stream_helper(client: openai.OpenAI, backend: str) -> None:
    with client.responses.stream(model=backend, input="Tell me something") as stream:
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == expected_text(backend)


def test_stream_event_sequence(client: openai.OpenAI, fake: FakeProvider) -> None:
    """Bridged: OpenAI's event sequence, sequence numbers counting from 0, deltas adding up."""
    events = list(client.responses.create(model="claude", input="Hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert deltas == DEFAULT_TEXT
    completed = events[-1].response  # type: ignore[union-attr]
    assert completed.output_text == DEFAULT_TEXT and completed.usage.output_tokens == 5
    assert events[0].response.id == completed.id  # type: ignore[union-attr]


def test_stream_wire_framing(served: Served) -> None:
    """Named events (``event:`` lines), no ``[DONE]``."""
    with httpx.Client() as c:
        r = c.post(
            f"{served.url}/v1/responses",
            json={"model": "mock", "input": "Hi", "stream": True},
            headers={"Authorization": f"Bearer {MASTER}"},
        )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in r.text.split("\n\n") if b]
    assert all(b.startswith("event: response.") and "\ndata: {" in b for b in blocks)
    assert "[DONE]" not in r.text
    last = json.loads(blocks[-1].split("data: ", 1)[1])
    assert last["type"] == "response.completed" and last["response"]["status"] == "completed"


def test_openai_stream_events_pass_through_unchanged(client: openai.OpenAI, fake: FakeProvider) -> None:
    fake.enqueue(Reply(text="Exactly so."))
    events = list(client.responses.create(model="openai", input="Hi", stream=True))
    sent = fake.requests[-1]
    assert sent.path == "/v1/responses" and sent.json["stream"] is True
    assert events[-1].type == "response.completed"
    assert events[-1].response.id.startswith("resp_fake")  # type: ignore[union-attr]
    assert events[-1].response.output_text == "Exactly so."  # type: ignore[union-attr]


# ---- tools ----
@pytest.mark.parametrize("backend", ["openai", "claude"])
@pytest.mark.parametrize("stream", [False, True])
def test_tool_round_trip(client: openai.OpenAI, fake: FakeProvider, backend: str, stream: bool) -> None:
    fake.enqueue(Reply(tool_calls=[{"id": "call_w1", "name": "get_weather", "arguments": {"city": "Paris"}}]))
    ask: Any = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with client.responses.stream(
            model=backend,
            input=ask,
            tools=[WEATHER_TOOL],
            tool_choice="required",  # type: ignore[list-item]
        ) as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(
            model=backend,
            input=ask,
            tools=[WEATHER_TOOL],
            tool_choice="required",  # type: ignore[list-item]
        )
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})  # type: ignore[union-attr]
    assert call.call_id == "call_w1"  # type: ignore[union-attr]
    sent = fake.requests[-1].json
    if backend == "claude":
        assert sent["tools"][0]["name"] == "get_weather" and sent["tool_choice"] == {"type": "any"}
    else:
        assert sent["tools"] == [WEATHER_TOOL] and sent["tool_choice"] == "required"
    # the function's output goes back, continuing the stored conversation
    fake.enqueue(Reply(text="Sunny."))
    second = client.responses.create(
        model=backend,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_w1", "output": "18C, sunny"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert second.output_text == "Sunny." and second.previous_response_id == first.id
    sent = fake.requests[-1].json
    if backend == "claude":  # bridged: the whole conversation, from the proxy's store
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
        assert sent["messages"][1]["content"][0]["type"] == "tool_use"
        assert sent["messages"][2]["content"][0] == {
            "type": "tool_result",
            "tool_use_id": "call_w1",
            "content": "18C, sunny",
        }
    else:  # OpenAI made the first response: it continues from its own store
        assert sent["previous_response_id"] == first.id
        assert sent["input"] == [
            {"type": "function_call_output", "call_id": "call_w1", "output": "18C, sunny"}
        ]


# ---- previous_response_id, GET, DELETE ----
@pytest.mark.parametrize("backend", ["mock", "claude"])
def test_previous_response_id_continues_a_bridged_conversation(
    client: openai.OpenAI, fake: FakeProvider, backend: str
) -> None:
    first = client.responses.create(model=backend, input="My name is Ada.", instructions="Be brief.")
    fake.enqueue(Reply(text="You are Ada."))
    second = client.responses.create(model=backend, input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    if backend == "claude":
        sent = fake.requests[-1].json
        assert "system" not in sent  # instructions are not carried over, as OpenAI does
        assert sent["messages"] == [
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": DEFAULT_TEXT},
            {"role": "user", "content": "What is my name?"},
        ]
    # the stored response reads back as answered; deleted, it is gone
    got = client.responses.retrieve(second.id)
    assert got.model_dump() == second.model_dump()
    client.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(second.id)


def test_a_response_continues_on_another_deployment(client: openai.OpenAI, fake: FakeProvider) -> None:
    """Answered by OpenAI (passed through), continued on Claude: the proxy holds the conversation."""
    first = client.responses.create(model="openai", input="Remember 42.")
    client.responses.create(model="claude", input="What number?", previous_response_id=first.id)
    sent = fake.requests[-1].json
    assert sent["messages"] == [
        {"role": "user", "content": "Remember 42."},
        {"role": "assistant", "content": DEFAULT_TEXT},
        {"role": "user", "content": "What number?"},
    ]


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    response = client.responses.create(model="mock", input="Hi", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError) as unknown:
        client.responses.create(model="mock", input="Hi", previous_response_id=response.id)
    assert unknown.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_unknown_previous_response_id_passes_through_to_openai(
    client: openai.OpenAI, fake: FakeProvider
) -> None:
    """An id this proxy never saw may be OpenAI's own: an OpenAI deployment gets it as sent."""
    client.responses.create(model="openai", input="Hi", previous_response_id="resp_made_elsewhere")
    assert fake.requests[-1].json["previous_response_id"] == "resp_made_elsewhere"


# ---- text.format, reasoning ----
def test_json_schema_and_reasoning_are_translated(fake: FakeProvider) -> None:
    """Bridged to a chat deployment (Azure's chat API here, through the library):
    text.format → response_format, reasoning.effort → reasoning_effort, tools → chat tools."""
    import lmgate

    fake.reset()
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    response = lmgate.responses(
        input="Give a",
        model="azure/gpt-4o-mini",
        api_base=fake.base_url,
        api_key="k",
        text={"format": {"type": "json_schema", "name": "A", "schema": schema, "strict": True}},
        reasoning={"effort": "low"},
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
    )
    assert response["text"]["format"]["name"] == "A"
    sent = fake.requests[-1]
    assert sent.path.endswith("/chat/completions")
    assert sent.json["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "A", "schema": schema, "strict": True},
    }
    assert sent.json["reasoning_effort"] == "low"
    assert sent.json["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER_TOOL["parameters"],
                "description": "The weather in a city",
                "strict": True,
            },
        }
    ]
    assert sent.json["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent.json["parallel_tool_calls"] is False


# ---- errors ----
def _raw(served: Served, body: Any, path: str = "/v1/responses", key: str = MASTER) -> httpx.Response:
    with httpx.Client() as c:
        return c.post(f"{served.url}{path}", json=body, headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize(
    ("body", "status", "param", "words"),
    [
        ({"model": "claude"}, 400, "input", "Missing required parameter: 'input'"),
        ({"model": "claude", "input": 5}, 400, "input", "Invalid type for 'input'"),
        ({"model": "claude", "input": "x", "frobnicate": 1}, 400, "frobnicate", "Unknown parameter"),
        ({"model": "claude", "input": "x", "temperature": 3}, 400, "temperature", "temperature"),
        ({"model": "claude", "input": "x", "max_output_tokens": 4}, 400, "max_output_tokens", "16"),
        (
            {"model": "claude", "input": "x", "tools": [{"type": "web_search"}]},
            400,
            "tools[0].type",
            "only function tools",
        ),
        (
            {"model": "claude", "input": [{"type": "item_reference", "id": "x"}]},
            400,
            "input[0].type",
            "item_reference",
        ),
        ({"model": "claude", "input": "x", "background": True}, 400, "background", "not supported"),
        ({"model": "nope", "input": "x"}, 400, "model", "nope"),
    ],
)
def test_malformed_requests_get_openai_errors(
    served: Served, fake: FakeProvider, body: Any, status: int, param: str, words: str
) -> None:
    fake.reset()
    r = _raw(served, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert words in error["message"]
    assert fake.requests == []


def test_sdk_raises_its_own_errors(served: Served, client: openai.OpenAI, fake: FakeProvider) -> None:
    with openai.OpenAI(base_url=f"{served.url}/v1", api_key="sk-wrong-key-000000", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError):
            wrong.responses.create(model="mock", input="x")
    fake.enqueue(Reply(status=429))
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="claude", input="x")


def test_error_mid_stream_is_an_error_event(client: openai.OpenAI, fake: FakeProvider) -> None:
    fake.enqueue(Reply(cut_after_chunks=3))
    events = list(client.responses.create(model="claude", input="x", stream=True))
    assert events[-1].type == "error"
    assert events[-1].message  # type: ignore[union-attr]
    assert [e.sequence_number for e in events] == list(range(len(events)))


# ---- /v1/completions ----
@pytest.mark.parametrize("backend", BACKENDS)
def test_completions_from_every_backend(client: openai.OpenAI, fake: FakeProvider, backend: str) -> None:
    completion = client.completions.create(model=backend, prompt="Say hi", max_tokens=16, temperature=0.2)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == expected_text(backend)
    assert completion.choices[0].finish_reason in ("stop", "end_turn")
    if backend == "mock":
        return
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 5)  # type: ignore[union-attr]
    sent = fake.requests[-1]
    if backend == "openai":
        assert sent.path == "/v1/completions"
        assert sent.json == {"model": "gpt-4o-mini", "prompt": "Say hi", "max_tokens": 16, "temperature": 0.2}
        assert completion.id.startswith("cmpl-fake")
    else:
        assert sent.path == "/v1/messages"
        assert sent.json["messages"] == [{"role": "user", "content": "Say hi"}]


@pytest.mark.parametrize("backend", BACKENDS)
def test_completions_stream(client: openai.OpenAI, backend: str) -> None:
    chunks = list(client.completions.create(model=backend, prompt="Say hi", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected_text(backend)
    assert all(c.object == "text_completion" for c in chunks)


def test_completions_refuses_what_chat_cannot_do(served: Served, fake: FakeProvider) -> None:
    fake.reset()
    r = _raw(served, {"model": "claude", "prompt": "x", "suffix": "y"}, "/v1/completions")
    assert r.status_code == 400 and r.json()["error"]["param"] == "suffix"
    r = _raw(served, {"model": "claude", "prompt": ["a", "b"]}, "/v1/completions")
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = _raw(served, {"model": "claude"}, "/v1/completions")
    assert r.status_code == 400 and "prompt" in r.json()["error"]["message"]
    assert fake.requests == []
    # an OpenAI deployment takes them as they are; lmgate's own controls never go along
    r = _raw(
        served,
        {
            "model": "openai",
            "prompt": ["a", "b"],
            "suffix": "y",
            "api_base": "http://elsewhere",
            "mock_response": "m",
        },
        "/v1/completions",
    )
    assert r.status_code == 200 and fake.requests[-1].json["suffix"] == "y"
    assert "api_base" not in fake.requests[-1].json and "mock_response" not in fake.requests[-1].json


def test_passed_through_body_never_carries_lmgate_controls(served: Served, fake: FakeProvider) -> None:
    fake.reset()
    body = {
        "model": "openai",
        "input": "x",
        "api_key": "sk-client",
        "api_base": "http://elsewhere",
        "mock_response": "m",
    }
    r = _raw(served, body)
    assert r.status_code == 200, r.text
    sent = fake.requests[-1]
    assert sent.path == "/v1/responses" and sent.headers["authorization"] == f"Bearer {UPSTREAM}"
    assert {"api_key", "api_base", "mock_response", "metadata"}.isdisjoint(sent.json)


# ---- one logged call per request ----
def test_one_record_per_request_with_call_type_and_cost(
    tmp_path: Path, fake: FakeProvider, log_receiver: LogReceiver
) -> None:
    fake.reset()
    config = write_config(tmp_path, fake, generic_logger_extra(log_receiver, tmp_path, 60))
    served = Served(
        config,
        tmp_path,
        {**ENV, "SERVE_RECEIVER_URL": log_receiver.url, "SERVE_WEBHOOK_TOKEN": "tok-0123456789"},
    )
    try:
        served.wait_ready()
        with openai.OpenAI(base_url=f"{served.url}/v1", api_key=MASTER, max_retries=0) as c:
            c.responses.create(model="openai", input="Hi", metadata={"k": "v"})  # passed through
            list(c.responses.create(model="openai", input="Hi", stream=True))
            c.responses.create(model="claude", input="Hi")  # bridged
            list(c.responses.create(model="claude", input="Hi", stream=True))
            c.responses.create(model="mock", input="Hi")
            fake.enqueue(Reply(status=400))  # the upstream refuses: one failure record
            with pytest.raises(openai.BadRequestError):
                c.responses.create(model="claude", input="Hi")
            c.completions.create(model="openai", prompt="Hi")
            list(c.completions.create(model="claude", prompt="Hi", stream=True))
    finally:
        code = served.stop()
    assert code == 0, served.stderr
    assert log_receiver.wait_for_records(8, timeout=10)
    records = log_receiver.records
    assert len(records) == 8, [r.get("call_type") for r in records]
    kinds = sorted(r["call_type"] for r in records)
    assert kinds == ["aresponses"] * 6 + ["atext_completion"] * 2
    success = [r for r in records if r["status"] == "success"]
    assert len(success) == 7
    usage = {"prompt_tokens": 7, "completion_tokens": 5}
    gpt = compute_cost(["gpt-4o-mini"], usage, None).cost
    claude = compute_cost(["claude-sonnet-4-20250514"], usage, None).cost
    for r in success:
        if r["model_group"] == "openai":
            assert r["response_cost"] == gpt and (r["prompt_tokens"], r["completion_tokens"]) == (7, 5)
        elif r["model_group"] == "claude":
            assert r["response_cost"] == claude and (r["prompt_tokens"], r["completion_tokens"]) == (7, 5)
    assert all(r["metadata"]["user_api_key_hash"] for r in records)
    assert any(r["metadata"].get("requester_metadata") == {"k": "v"} for r in records)


# ---- stored responses survive a restart through the log store ----
def test_log_store_backs_stored_responses_across_a_restart(tmp_path: Path, fake: FakeProvider) -> None:
    """With the store logger on, a response answered before a restart is read back (GET) and
    continued (previous_response_id) from the log store; without it, it would be gone."""
    fake.reset()
    store_config = f"""
    litellm_settings:
      callbacks: ["store"]
    callback_settings:
      store: {{path: "{tmp_path / "logs.sqlite3"}", flush_interval: 60}}
    """
    config = write_config(tmp_path, fake, store_config)
    served = Served(config, tmp_path, ENV)
    try:
        served.wait_ready()
        with openai.OpenAI(base_url=f"{served.url}/v1", api_key=MASTER, max_retries=0) as c:
            first = c.responses.create(model="claude", input="My name is Ada.")
            unstored = c.responses.create(model="mock", input="Hi", store=False)
    finally:
        assert served.stop() == 0, served.stderr  # the shutdown flush writes the records
    served = Served(config, tmp_path, ENV)
    try:
        served.wait_ready()
        with openai.OpenAI(base_url=f"{served.url}/v1", api_key=MASTER, max_retries=0) as c:
            got = c.responses.retrieve(first.id)
            assert got.output_text == DEFAULT_TEXT and got.id == first.id and got.model == "claude"
            assert (got.usage.input_tokens, got.usage.output_tokens) == (7, 5)  # type: ignore[union-attr]
            fake.enqueue(Reply(text="Ada."))
            second = c.responses.create(model="claude", input="My name?", previous_response_id=first.id)
            assert second.output_text == "Ada."
            assert fake.requests[-1].json["messages"] == [
                {"role": "user", "content": "My name is Ada."},
                {"role": "assistant", "content": DEFAULT_TEXT},
                {"role": "user", "content": "My name?"},
            ]
            c.responses.delete(first.id)
            with pytest.raises(openai.NotFoundError):
                c.responses.retrieve(first.id)
            with pytest.raises(openai.NotFoundError):
                c.responses.retrieve(unstored.id)  # store: false is not read back from the log either
    finally:
        served.stop()


# ---- a stored response belongs to the key that made it ----
def test_a_key_reads_only_its_own_stored_responses(tmp_path: Path, fake: FakeProvider) -> None:
    """Virtual keys: key B cannot read, delete nor continue key A's response (not found, as for
    an id that never existed); a key's model list applies on /v1/responses; the master key reads all."""
    config = write_config(tmp_path, fake)
    config.write_text(
        config.read_text().replace("general_settings:\n", "general_settings:\n  virtual_keys: true\n")
    )
    served = Served(config, tmp_path, ENV, args=["--data-dir", str(tmp_path / "data")])
    try:
        served.wait_ready()

        def generate(**body: Any) -> str:
            r = httpx.post(
                f"{served.url}/key/generate", json=body, headers={"Authorization": f"Bearer {MASTER}"}
            )
            assert r.status_code == 200, r.text
            return str(r.json()["key"])

        key_a, key_b, mock_only = generate(), generate(), generate(models=["mock"])
        with (
            openai.OpenAI(base_url=f"{served.url}/v1", api_key=key_a, max_retries=0) as a,
            openai.OpenAI(base_url=f"{served.url}/v1", api_key=key_b, max_retries=0) as b,
            openai.OpenAI(base_url=f"{served.url}/v1", api_key=MASTER, max_retries=0) as master,
            openai.OpenAI(base_url=f"{served.url}/v1", api_key=mock_only, max_retries=0) as limited,
        ):
            mine = a.responses.create(model="mock", input="secret plans")
            assert a.responses.retrieve(mine.id).id == mine.id
            with pytest.raises(openai.NotFoundError):
                b.responses.retrieve(mine.id)
            with pytest.raises(openai.NotFoundError):
                b.responses.delete(mine.id)
            with pytest.raises(openai.BadRequestError) as continued:
                b.responses.create(model="mock", input="and?", previous_response_id=mine.id)
            assert continued.value.body["param"] == "previous_response_id"  # type: ignore[index]
            assert master.responses.retrieve(mine.id).id == mine.id
            a.responses.create(model="mock", input="more", previous_response_id=mine.id)
            with pytest.raises(openai.APIStatusError) as denied:
                limited.responses.create(model="claude", input="x")
            assert denied.value.status_code in (401, 403)
            assert limited.responses.create(model="mock", input="x").status == "completed"
    finally:
        served.stop()


def test_input_items_are_listed_by_the_sdk(client: openai.OpenAI) -> None:
    first = client.responses.create(model="mock", input="one")
    second = client.responses.create(
        model="mock",
        previous_response_id=first.id,
        input=[
            {"role": "user", "content": "two"},
            {"type": "function_call_output", "call_id": "c1", "output": "r"},
        ],
    )
    # the SDK follows the cursor page by page (limit=1): every item of the conversation, newest first
    items = list(client.responses.input_items.list(second.id, limit=1))
    assert [i.type for i in items] == ["function_call_output", "message", "message", "message"]
    assert [getattr(i, "role", None) for i in items] == [None, "user", "assistant", "user"]
    assert items[1].content[0].text == "two" and items[3].content[0].text == "one"  # type: ignore[union-attr]
    assert len({i.id for i in items}) == 4
    ascending = client.responses.input_items.list(second.id, order="asc")
    assert [i.id for i in ascending.data] == [i.id for i in reversed(items)]
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list("resp_" + "0" * 32)
    with pytest.raises(openai.BadRequestError):
        client.responses.input_items.list(second.id, limit=0)
