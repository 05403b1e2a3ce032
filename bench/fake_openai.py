"""A tiny, fast OpenAI-compatible server for the benchmarks (stdlib only, 127.0.0.1 only).

POST /v1/chat/completions (and /chat/completions) answers a fixed chat completion, as JSON or, when the
request says "stream": true, as server-sent events.  HTTP/1.1 keep-alive; Content-Length framing
for JSON, chunked encoding (one chunk per event) for streams, as OpenAI sends them; bodies are built once
per model, so the server itself costs as little as possible and the same for every client.

POST /v1beta/models/<model>:generateContent (and :streamGenerateContent, always as ?alt=sse events)
answers the same text in Gemini's wire format, so a Gemini call's added latency compares with OpenAI's.

POST /model/<id>/converse (and /converse-stream, as AWS event-stream frames) answers the same text in
Bedrock's Converse format; the signature is not checked (tests/fakes/bedrock.py does that).

POST /v1/messages answers the same text as an Anthropic Messages API message, and POST /v1/responses
as an OpenAI Responses API response (JSON only), so the proxy's other formats compare with chat.

Prints "READY <port>" on stdout once listening.  Stops by itself after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import functools
import json
import struct
import time

CONTENT = "hello world from the fake server"


def answer_text(words: int) -> str:
    """``words`` words of plain prose (a typical answer is a few hundred: ~6 bytes a word)."""
    vocabulary = "the gateway forwards each request to its deployment and records what it cost".split()
    return " ".join(vocabulary[i % len(vocabulary)] for i in range(words))


@functools.lru_cache(maxsize=64)  # the same few models every time: the upstream must not be the bottleneck
def completion_body(model: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": CONTENT},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
        }
    ).encode()


@functools.lru_cache(maxsize=64)
def sse_body(model: str) -> bytes:
    created = int(time.time())

    def chunk(delta: dict, finish: str | None, usage: dict | None = None) -> bytes:
        obj: dict = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            obj["usage"] = usage
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    words = CONTENT.split(" ")
    parts = [chunk({"role": "assistant", "content": ""}, None)]
    parts += [chunk({"content": (" " if i else "") + w}, None) for i, w in enumerate(words)]
    parts.append(chunk({}, "stop", {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def gemini_body(model: str) -> bytes:
    return json.dumps(
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": CONTENT}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 6, "totalTokenCount": 11},
            "modelVersion": model,
        }
    ).encode()


def gemini_sse_body(model: str) -> bytes:
    words = CONTENT.split(" ")
    parts = []
    for i, w in enumerate(words):
        cand: dict = {"content": {"role": "model", "parts": [{"text": (" " if i else "") + w}]}, "index": 0}
        obj: dict = {"candidates": [cand], "modelVersion": model}
        if i == len(words) - 1:
            cand["finishReason"] = "STOP"
            obj["usageMetadata"] = {"promptTokenCount": 5, "candidatesTokenCount": 6, "totalTokenCount": 11}
        parts.append(b"data: " + json.dumps(obj).encode() + b"\r\n\r\n")
    return b"".join(parts)


def bedrock_body() -> bytes:
    return json.dumps(
        {
            "output": {"message": {"role": "assistant", "content": [{"text": CONTENT}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 5, "outputTokens": 6, "totalTokens": 11},
            "metrics": {"latencyMs": 1},
        }
    ).encode()


def _frame(event_type: str, obj: dict) -> bytes:
    """One AWS event-stream message: prelude (lengths, CRC32), string headers, JSON payload, CRC32."""
    head = b""
    for name, value in (
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ):
        head += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack("!H", len(value)) + value.encode()
    payload = json.dumps(obj).encode()
    prelude = struct.pack("!II", 12 + len(head) + len(payload) + 4, len(head))
    message = prelude + struct.pack("!I", binascii.crc32(prelude)) + head + payload
    return message + struct.pack("!I", binascii.crc32(message))


def bedrock_stream_body() -> bytes:
    words = CONTENT.split(" ")
    parts = [_frame("messageStart", {"role": "assistant"})]
    parts += [
        _frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": (" " if i else "") + w}})
        for i, w in enumerate(words)
    ]
    parts.append(_frame("contentBlockStop", {"contentBlockIndex": 0}))
    parts.append(_frame("messageStop", {"stopReason": "end_turn"}))
    usage = {"inputTokens": 5, "outputTokens": 6, "totalTokens": 11}
    parts.append(_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}))
    return b"".join(parts)


@functools.lru_cache(maxsize=64)
def sse_response(model: str) -> bytes:
    """The stream as OpenAI sends it: chunked transfer encoding, one chunk per event."""
    events = [e + b"\n\n" for e in sse_body(model).split(b"\n\n") if e]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    return head + chunks


@functools.lru_cache(maxsize=64)
def anthropic_body(model: str) -> bytes:
    return json.dumps(
        {
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": CONTENT}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 6},
        }
    ).encode()


@functools.lru_cache(maxsize=64)
def responses_body(model: str) -> bytes:
    return json.dumps(
        {
            "id": "resp_bench",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": model,
            "output": [
                {
                    "id": "msg_bench",
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": CONTENT, "annotations": []}],
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {"input_tokens": 5, "output_tokens": 6, "total_tokens": 11},
        }
    ).encode()


def _model(body: bytes) -> str:
    try:
        return str(json.loads(body or b"{}").get("model", "gpt-4o-mini"))
    except ValueError:
        return "gpt-4o-mini"


def response(status: str, ctype: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line[:15].lower() == "content-length:":
                    length = int(line[15:].strip())
            body = await reader.readexactly(length) if length else b""
            path = path.split("?", 1)[0]
            if method == "POST" and path.endswith("/chat/completions"):
                try:
                    req = json.loads(body or b"{}")
                except ValueError:
                    req = {}
                model = str(req.get("model", "gpt-4o-mini"))
                if req.get("stream"):
                    writer.write(sse_response(model))
                else:
                    writer.write(response("200 OK", "application/json", completion_body(model)))
            elif method == "POST" and path.endswith("/v1/messages"):
                writer.write(response("200 OK", "application/json", anthropic_body(_model(body))))
            elif method == "POST" and path.endswith("/responses"):
                writer.write(response("200 OK", "application/json", responses_body(_model(body))))
            elif method == "POST" and path.endswith((":generateContent", ":streamGenerateContent")):
                model = path.rsplit("/", 1)[-1].split(":", 1)[0]
                if path.endswith(":streamGenerateContent"):
                    writer.write(response("200 OK", "text/event-stream", gemini_sse_body(model)))
                else:
                    writer.write(response("200 OK", "application/json", gemini_body(model)))
            elif method == "POST" and path.startswith("/model/") and path.endswith("/converse"):
                writer.write(response("200 OK", "application/json", bedrock_body()))
            elif method == "POST" and path.startswith("/model/") and path.endswith("/converse-stream"):
                writer.write(response("200 OK", "application/vnd.amazon.eventstream", bedrock_stream_body()))
            elif method == "POST" and path == "/token":  # OAuth tokens (vertex: google-auth's exchange)
                token = b'{"access_token":"bench-token","expires_in":3600,"token_type":"Bearer"}'
                writer.write(response("200 OK", "application/json", token))
            elif method == "GET" and path in ("/health", "/v1/models"):
                writer.write(response("200 OK", "application/json", b'{"ok":true}'))
            else:
                writer.write(response("404 Not Found", "application/json", b'{"error":"not found"}'))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument(
        "--answer-words", type=int, default=0, help="answer with this many words (default: a six-word answer)"
    )
    args = ap.parse_args()
    if args.answer_words > 0:
        global CONTENT
        CONTENT = answer_text(args.answer_words)
    server = await asyncio.start_server(handle, "127.0.0.1", args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    async with server:
        # bounded: a forgotten server goes away by itself
        await asyncio.sleep(args.max_seconds)


if __name__ == "__main__":
    try:  # uvloop when installed (lmgate's proxy extra): ~2x the requests/s of asyncio's own loop
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
