"""The fakes themselves, exercised over real HTTP with plain httpx (no lmgate code involved)."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import struct
import threading
from typing import Any

import httpx
import pytest
import redis
from fakes import FakeProvider, LogReceiver, RedisServer, Reply, check_loopback

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC = {
    "model": "claude-3-5-haiku-latest",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant", "anthropic-version": "2023-06-01"}


def sse_events(raw: str) -> list[tuple[str | None, str]]:
    """(event name, data) for each SSE block of a complete stream body."""
    events = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        events.append((name, "\n".join(data)))
    return events


# -- provider: OpenAI ------------------------------------------------------------------------------


def test_openai_chat_json(fake_provider: FakeProvider) -> None:
    """A non-streamed chat completion has the OpenAI body, usage, rate-limit headers and is recorded."""
    fake_provider.expect_key = "sk-test"
    fake_provider.enqueue(Reply(text="Bonjour", usage=(11, 3)))
    r = httpx.post(
        f"{fake_provider.base_url}/v1/chat/completions",
        json={**CHAT, "n": 2},
        headers={"Authorization": "Bearer sk-test"},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-fake")
    assert body["model"] == "gpt-4o-mini" and body["system_fingerprint"] == "fp_fake"
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Bonjour", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 11 and body["usage"]["total_tokens"] == 14
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert r.headers["x-ratelimit-reset-tokens"] == "6m0s" and "x-request-id" in r.headers
    assert int(r.headers["content-length"]) == len(r.content)
    req = fake_provider.requests[0]
    assert (req.method, req.path, req.json["n"]) == ("POST", "/v1/chat/completions", 2)
    assert req.headers["authorization"] == "Bearer sk-test"


def test_openai_wrong_key_is_401_in_openai_shape(fake_provider: FakeProvider) -> None:
    """With expect_key set, a wrong bearer key gets 401 with OpenAI's error body and the reply stays queued."""
    fake_provider.expect_key = "sk-test"
    fake_provider.enqueue(Reply(text="kept"))
    r = httpx.post(
        f"{fake_provider.base_url}/chat/completions", json=CHAT, headers={"Authorization": "Bearer nope"}
    )
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key" and r.json()["error"]["param"] is None
    assert fake_provider.pending_replies == 1


def test_openai_stream_with_usage_and_done(fake_provider: FakeProvider) -> None:
    """A streamed completion is chunked SSE: role delta, text deltas, finish chunk, usage chunk, [DONE]."""
    fake_provider.enqueue(Reply(text="Hello world", chunk_size=4, usage=(9, 2)))
    payload = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.Client() as client:
        r = client.post(f"{fake_provider.base_url}/v1/chat/completions", json=payload)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["transfer-encoding"] == "chunked"
    events = [data for _, data in sse_events(r.text)]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello world"
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:4]] == ["Hell", "o wo", "rld"]
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 11
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)


def test_openai_stream_tool_call_deltas(fake_provider: FakeProvider) -> None:
    """Tool calls stream as an opening delta with id/name, then argument fragments that join to the JSON."""
    fake_provider.enqueue(
        Reply(tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}])
    )
    r = httpx.post(f"{fake_provider.base_url}/v1/chat/completions", json={**CHAT, "stream": True})
    chunks = [json.loads(d) for _, d in sse_events(r.text) if d != "[DONE]"]
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert json.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert not any(c["choices"][0]["delta"].get("content") for c in chunks)


def test_openai_in_stream_error(fake_provider: FakeProvider) -> None:
    """stream_error ends the stream with a data: {"error": ...} event and no [DONE]."""
    fake_provider.enqueue(Reply(text="abc", stream_error={"message": "boom"}))
    r = httpx.post(f"{fake_provider.base_url}/v1/chat/completions", json={**CHAT, "stream": True})
    last = sse_events(r.text)[-1][1]
    assert json.loads(last)["error"]["message"] == "boom" and "[DONE]" not in r.text


def test_embeddings_deterministic_with_dimensions_and_base64(fake_provider: FakeProvider) -> None:
    """Embeddings are deterministic per text, honour dimensions, and base64 decodes to the same floats."""
    url = f"{fake_provider.base_url}/v1/embeddings"
    a = httpx.post(
        url, json={"model": "text-embedding-3-small", "input": ["x", "y", "x"], "dimensions": 8}
    ).json()
    assert a["object"] == "list" and a["model"] == "text-embedding-3-small"
    vecs = [d["embedding"] for d in a["data"]]
    assert [len(v) for v in vecs] == [8, 8, 8] and vecs[0] == vecs[2] != vecs[1]
    b = httpx.post(
        url, json={"model": "m", "input": "x", "dimensions": 8, "encoding_format": "base64"}
    ).json()
    floats = struct.unpack("<8f", base64.b64decode(b["data"][0]["embedding"]))
    assert floats == pytest.approx(vecs[0], abs=1e-6)
    assert a["usage"] == {"prompt_tokens": 7, "total_tokens": 7}


def test_429_with_retry_after(fake_provider: FakeProvider) -> None:
    """A scripted 429 carries the retry-after header and OpenAI's rate-limit error; the next call is 200."""
    fake_provider.enqueue(Reply(status=429, headers={"retry-after": "0"}))
    url = f"{fake_provider.base_url}/v1/chat/completions"
    with httpx.Client() as client:
        r = client.post(url, json=CHAT)
        assert r.status_code == 429 and r.headers["retry-after"] == "0"
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert client.post(url, json=CHAT).status_code == 200
    assert fake_provider.connections_accepted == 1  # keep-alive: both requests on one connection


def test_error_code_override(fake_provider: FakeProvider) -> None:
    """error_type/error_message/error_code land in the OpenAI error object as given."""
    fake_provider.enqueue(Reply(status=400, error_code="context_length_exceeded", error_message="too long"))
    r = httpx.post(f"{fake_provider.base_url}/v1/chat/completions", json=CHAT)
    assert r.json() == {
        "error": {
            "message": "too long",
            "type": "invalid_request_error",
            "param": None,
            "code": "context_length_exceeded",
        }
    }


def test_unknown_path_is_404(fake_provider: FakeProvider) -> None:
    """An unknown path answers 404 with an OpenAI error body naming the URL."""
    r = httpx.post(f"{fake_provider.base_url}/v1/nope", json={})
    assert r.status_code == 404 and "/v1/nope" in r.json()["error"]["message"]


def test_cut_after_chunks_drops_connection(fake_provider: FakeProvider) -> None:
    """cut_after_chunks sends that many events then closes without the final chunk: httpx raises."""
    fake_provider.enqueue(Reply(text="abcdefghijkl", cut_after_chunks=2))
    received: list[bytes] = []
    with httpx.Client() as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            with client.stream(
                "POST", f"{fake_provider.base_url}/v1/chat/completions", json={**CHAT, "stream": True}
            ) as r:
                for chunk in r.iter_bytes():
                    received.append(chunk)
        assert b"".join(received).count(b"data: ") == 2
        assert client.post(f"{fake_provider.base_url}/v1/chat/completions", json=CHAT).status_code == 200


def test_delay_event_holds_the_request(fake_provider: FakeProvider) -> None:
    """A reply with delay_event is not answered until the test sets the event."""
    gate = threading.Event()
    done = threading.Event()
    fake_provider.enqueue(Reply(delay_event=gate))
    result: dict[str, Any] = {}

    def call() -> None:
        result["status"] = httpx.post(f"{fake_provider.base_url}/v1/chat/completions", json=CHAT).status_code
        done.set()

    worker = threading.Thread(target=call)
    worker.start()
    assert fake_provider.wait_for_requests(1, timeout=5)
    assert not done.wait(0.2)  # arrived, still held
    gate.set()
    assert done.wait(5) and result["status"] == 200
    worker.join(5)


def test_hold_after_chunks_pauses_mid_stream(fake_provider: FakeProvider) -> None:
    """With hold_after_chunks, the first events reach the client and the rest wait for delay_event."""
    gate = threading.Event()
    fake_provider.enqueue(Reply(text="abcdef", chunk_size=2, delay_event=gate, hold_after_chunks=2))
    seen: list[str] = []
    # The read timeout (3 s) is below the server's hold bound (10 s): events buffered behind the hold fail here.
    with httpx.Client(timeout=3.0) as client:
        with client.stream(
            "POST", f"{fake_provider.base_url}/v1/chat/completions", json={**CHAT, "stream": True}
        ) as r:
            lines = r.iter_lines()
            while len(seen) < 2:
                line = next(lines)
                if line.startswith("data: "):
                    seen.append(line)
            gate.set()  # only now may the rest of the stream be sent
            seen.extend(line for line in lines if line.startswith("data: "))
    assert seen[-1] == "data: [DONE]" and len(seen) == 1 + 3 + 1 + 1


# -- provider: Anthropic and Azure -----------------------------------------------------------------


def test_anthropic_json_tool_use(fake_provider: FakeProvider) -> None:
    """A non-streamed Messages reply with a tool call has a tool_use block and stop_reason tool_use."""
    fake_provider.enqueue(
        Reply(tool_calls=[{"id": "toolu_1", "name": "f", "arguments": {"a": 1}}], usage=(4, 2))
    )
    r = httpx.post(f"{fake_provider.base_url}/v1/messages", json=ANTHROPIC, headers=ANTHROPIC_HEADERS)
    body = r.json()
    assert (
        body["type"] == "message"
        and body["id"].startswith("msg_fake")
        and body["model"] == ANTHROPIC["model"]
    )
    assert body["content"] == [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]
    assert body["stop_reason"] == "tool_use" and body["stop_sequence"] is None
    assert body["usage"] == {
        "input_tokens": 4,
        "output_tokens": 2,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert "request-id" in r.headers and "anthropic-ratelimit-requests-remaining" in r.headers


def test_anthropic_stream_event_order(fake_provider: FakeProvider) -> None:
    """Anthropic streams message_start, block start, ping, deltas, block stop, message_delta, message_stop."""
    fake_provider.enqueue(Reply(text="Hi there", chunk_size=4, finish_reason="length", usage=(6, 3)))
    r = httpx.post(
        f"{fake_provider.base_url}/v1/messages", json={**ANTHROPIC, "stream": True}, headers=ANTHROPIC_HEADERS
    )
    events = sse_events(r.text)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    datas = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for n, d in zip(names, datas, strict=True))
    assert datas[0]["message"]["content"] == [] and datas[0]["message"]["usage"]["output_tokens"] == 1
    assert "".join(d["delta"]["text"] for d in datas if d["type"] == "content_block_delta") == "Hi there"
    assert datas[-2]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert datas[-2]["usage"] == {"output_tokens": 3}


def test_anthropic_529_and_missing_version(fake_provider: FakeProvider) -> None:
    """529 uses Anthropic's overloaded_error shape; a request without anthropic-version gets a 400."""
    fake_provider.enqueue(Reply(status=529))
    url = f"{fake_provider.base_url}/v1/messages"
    r = httpx.post(url, json=ANTHROPIC, headers=ANTHROPIC_HEADERS)
    assert r.status_code == 529
    assert r.json() == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    r = httpx.post(url, json=ANTHROPIC, headers={"x-api-key": "k"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_azure_deployment_path_and_api_key(fake_provider: FakeProvider) -> None:
    """Azure paths take api-key auth and report the underlying model, not the deployment name."""
    fake_provider.expect_key = "az-key"
    url = f"{fake_provider.base_url}/openai/deployments/my-dep/chat/completions"
    params = {"api-version": "2024-06-01"}
    assert (
        httpx.post(url, params=params, json=CHAT, headers={"Authorization": "Bearer az-key"}).status_code
        == 401
    )
    r = httpx.post(url, params=params, json={"messages": CHAT["messages"]}, headers={"api-key": "az-key"})
    assert r.status_code == 200 and r.json()["model"] == "gpt-4o-mini-2024-07-18"
    assert fake_provider.requests[-1].query == {"api-version": "2024-06-01"}
    emb = httpx.post(
        f"{fake_provider.base_url}/openai/deployments/emb/embeddings",
        params=params,
        json={"input": "x"},
        headers={"api-key": "az-key"},
    )
    assert emb.status_code == 200 and len(emb.json()["data"][0]["embedding"]) == 4


# -- log receiver ----------------------------------------------------------------------------------


def test_receiver_parses_json_array_object_ndjson_and_gzip(log_receiver: LogReceiver) -> None:
    """Records are split out of JSON arrays, single objects, NDJSON, and gzipped bodies."""
    with httpx.Client() as client:
        client.post(log_receiver.url, json=[{"i": 1}, {"i": 2}])
        client.post(log_receiver.url, json={"i": 3})
        client.post(
            log_receiver.url,
            content=b'{"i": 4}\n{"i": 5}\n',
            headers={"content-type": "application/x-ndjson"},
        )
        client.post(
            log_receiver.url,
            content=gzip.compress(json.dumps([{"i": 6}]).encode()),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        bad = client.post(
            log_receiver.url, content=b"{not json", headers={"content-type": "application/json"}
        )
    assert bad.status_code == 400
    assert [r["i"] for r in log_receiver.records] == [1, 2, 3, 4, 5, 6]
    assert log_receiver.requests[3].decoded_body == b'[{"i": 6}]'
    assert log_receiver.requests[3].headers["content-encoding"] == "gzip"
    assert len(log_receiver.all_requests) == 5 and len(log_receiver.requests) == 4


def test_receiver_fail_next_then_recovers(log_receiver: LogReceiver) -> None:
    """fail_next answers the next n requests with the status and headers, then accepts again."""
    log_receiver.fail_next(2, status=503, headers={"retry-after": "1"})
    with httpx.Client() as client:
        statuses = [client.post(log_receiver.url, json=[{"n": n}]) for n in range(3)]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].headers["retry-after"] == "1"
    assert log_receiver.records == [{"n": 2}]
    assert [r.status for r in log_receiver.all_requests] == [503, 503, 200]


def test_receiver_hold_release_and_dedupe(log_receiver: LogReceiver) -> None:
    """A held request is seen but not answered until release; a repeated Idempotency-Key is not re-recorded."""
    log_receiver.dedupe_by_idempotency_key = True
    log_receiver.hold()
    answered = threading.Event()
    worker = threading.Thread(
        target=lambda: (
            httpx.post(log_receiver.url, json=[1], headers={"idempotency-key": "k1"}),
            answered.set(),
        )
    )
    worker.start()
    assert log_receiver.wait_for_requests(1, timeout=5)
    assert log_receiver.records == [] and not answered.is_set()
    log_receiver.release()
    assert log_receiver.wait_for_records(1, timeout=5) and answered.wait(5)
    worker.join(5)
    again = httpx.post(log_receiver.url, json=[1], headers={"idempotency-key": "k1"})
    assert again.status_code == 200 and log_receiver.records == [1]
    assert log_receiver.requests[-1].duplicate


def test_receiver_stop_refuses_then_start_on_same_port(log_receiver: LogReceiver) -> None:
    """stop() refuses connections (even on a pooled keep-alive client); start() comes back on the same port."""
    port = log_receiver.port
    with httpx.Client() as client:
        assert client.post(log_receiver.url, json=[1]).status_code == 200
        log_receiver.stop()
        with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError)):
            client.post(log_receiver.url, json=[2])
        with pytest.raises(httpx.ConnectError):
            httpx.post(log_receiver.url, json=[2])
        log_receiver.start()
        assert log_receiver.port == port
        assert client.post(log_receiver.url, json=[3]).status_code == 200
    assert log_receiver.records == [1, 3]


# -- redis and the guard ---------------------------------------------------------------------------


def test_redis_with_password(redis_server_with_password: RedisServer) -> None:
    """The password-protected server answers PING with the URL's password and rejects a client without it."""
    with redis.Redis.from_url(redis_server_with_password.url) as client:
        assert client.ping() is True
    host, port = redis_server_with_password.host, redis_server_with_password.port
    with redis.Redis(host=host, port=port, retry=None) as anonymous:
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()


def test_redis_restart_keeps_port_and_drops_data() -> None:
    """restart() brings redis back on the same port with an empty store (no persistence)."""
    with RedisServer() as server:
        server.command("SET", "k", "v")
        port = server.port
        server.restart()
        assert server.port == port and server.command("GET", "k") is None
        assert server.command("PING") == "PONG"


def test_loopback_guard() -> None:
    """The session guard is installed and refuses anything but loopback and unix sockets."""
    assert getattr(socket.socket.connect, "loopback_guard", False)
    for ok in [("127.0.0.1", 1), ("127.9.9.9", 1), ("::1", 1, 0, 0), ("localhost", 1), "/tmp/x.sock"]:
        check_loopback(ok)
    for bad in [("192.0.2.1", 80), ("10.0.0.1", 80), ("example.com", 443), ("0.0.0.0", 80)]:
        with pytest.raises(RuntimeError, match="beyond loopback"):
            check_loopback(bad)
    with pytest.raises(RuntimeError, match="beyond loopback"):
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)
