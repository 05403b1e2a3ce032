"""``Call.parse`` decodes an answer's bytes at once when no listener reads its text (issue 18):
the same response as decoding the text first, and the text's way still taken for a body that is
not valid UTF-8 (its replacement characters) or not JSON (the same error)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from lmgate import exceptions as exc
from lmgate._call import Call
from lmgate.types.decoded import chat_completion


def _call() -> Call:
    # a key of its own: a remembered secret is masked in every later test's text (never a prefix of theirs)
    params: dict[str, Any] = {"api_key": "zq-call-parse-key-2f9c41", "api_base": "http://127.0.0.1:9/v1"}
    call = Call(
        "chat", "openai/gpt-4o-mini", [{"role": "user", "content": "hi"}], params, stream=False, is_async=True
    )
    call.prepare()
    assert call.record is None  # nobody listens: the shortcut's case
    return call


def _body(content: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }


@pytest.mark.parametrize(
    "raw",
    [
        orjson.dumps(_body("hello")),
        orjson.dumps(_body('line\u2028sep \u00e9 \U0001f600 \\ " \n')),
        b"  " + orjson.dumps(_body("spaced")) + b"\n",
        b'{"id":"x","created":1,"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"\\ud83d\\ude00"}}]}',
    ],
)
def test_the_bytes_decoded_at_once_give_the_texts_response(raw: bytes) -> None:
    headers = {"x-request-id": "r1"}
    call = _call()
    parsed = call.parse(200, headers, raw)
    assert parsed == chat_completion(orjson.loads(raw.decode(errors="replace")))
    assert list(parsed) == list(orjson.loads(raw))
    assert call.response_headers is headers


def test_a_body_that_is_not_utf8_takes_the_texts_way() -> None:
    raw = orjson.dumps(_body("caf-")).replace(b"caf-", b"caf\xff")
    parsed = _call().parse(200, {}, raw)
    assert parsed["choices"][0]["message"]["content"] == "caf\ufffd"


def test_a_body_that_is_not_json_is_the_same_error() -> None:
    call = _call()
    with pytest.raises(
        exc.APIConnectionError, match=r"answered 200 with a body that is not JSON: 'oops \\xff'|not JSON"
    ):
        call.parse(200, {"a": "b"}, b"oops \xff")
    assert call.response_headers == {"a": "b"}
