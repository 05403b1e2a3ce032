"""Request parameters that are malformed or multiply work get a 400 in the OpenAI error shape (in process, mock models)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

import lmgate
from lmgate.providers import mock as mock_provider
from lmgate.proxy.app import create_app
from lmgate.proxy.config import load_config
from lmgate.proxy.validation import MAX_EMBEDDING_INPUT_CHARS, MAX_EMBEDDING_INPUTS

HI = [{"role": "user", "content": "Hi"}]
CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"


@pytest.fixture
def app(tmp_path: Path) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent("""
        model_list:
          - model_name: chat
            litellm_params: {model: gpt-4o-mini, mock_response: hello}
          - model_name: embed
            litellm_params: {model: text-embedding-3-small, mock_response: x}
    """)
    )
    return create_app(load_config(path))


async def post(app: Any, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as c:
        return await c.post(path, json=body)


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["type"] == "invalid_request_error"
    return body["error"]  # type: ignore[no-any-return]


BAD_CHAT = [
    ("n", "x"),
    ("n", 1.5),
    ("n", 0),
    ("n", 129),
    ("n", 10**12),
    ("n", True),
    ("max_tokens", "x"),
    ("max_tokens", -1),
    ("max_tokens", 0),
    ("max_completion_tokens", -5),
    ("max_completion_tokens", 2.5),
    ("timeout", "x"),
    ("timeout", 0),
    ("timeout", -1),
    ("timeout", 10**9),
    ("temperature", "hot"),
    ("temperature", 3),
    ("top_p", 2),
    ("stream", "yes"),
    ("stop", 5),
    ("tools", "x"),
    ("user", 5),
    ("metadata", [1]),
    ("seed", "x"),
]


@pytest.mark.parametrize(("param", "value"), BAD_CHAT, ids=[f"{p}={v!r}" for p, v in BAD_CHAT])
async def test_bad_chat_parameter_is_a_400_naming_it(app: Any, param: str, value: Any) -> None:
    """A chat parameter of the wrong type or out of range is a 400 whose `param` names it."""
    error = error_of(await post(app, CHAT, {"model": "chat", "messages": HI, param: value}))
    assert error["param"] == param
    assert f"'{param}'" in error["message"]


async def test_bounds_are_inclusive(app: Any) -> None:
    """`n` = 128 and a whole-number timeout are fine: the bounds are limits, not forbidden values."""
    r = await post(app, CHAT, {"model": "chat", "messages": HI, "n": 128, "timeout": 30, "max_tokens": 1})
    assert r.status_code == 200, r.text
    assert len(r.json()["choices"]) == 128


@pytest.mark.parametrize(
    "messages", [[{"role": 5}], [{"content": "x"}], [{"role": "user", "content": 5}], ["hi"]]
)
async def test_bad_messages_are_a_400(app: Any, messages: Any) -> None:
    """Each message needs a string role and string/list/null content."""
    assert error_of(await post(app, CHAT, {"model": "chat", "messages": messages}))["param"] == "messages"


BAD_EMBED: list[tuple[str, Any]] = [
    ("input", ["a"] * (MAX_EMBEDDING_INPUTS + 1)),
    ("input", "a" * (MAX_EMBEDDING_INPUT_CHARS + 1)),
    ("input", ["ok", "a" * (MAX_EMBEDDING_INPUT_CHARS + 1)]),
    ("input", list(range(8193))),
    ("input", [[1, 2], list(range(8193))]),
    ("input", [-1, 5]),
    ("input", [None]),
    ("input", [[]]),
    ("input", {"text": "x"}),
    ("input", []),
    ("dimensions", "x"),
    ("dimensions", 0),
    ("dimensions", 10**6),
    ("encoding_format", "hex"),
    ("encoding_format", 5),
    ("timeout", "soon"),
]


@pytest.mark.parametrize(
    ("param", "value"), BAD_EMBED, ids=[f"{p}-{i}" for i, (p, _) in enumerate(BAD_EMBED)]
)
async def test_bad_embedding_parameter_is_a_400(app: Any, param: str, value: Any) -> None:
    """Too many inputs, too long an input, a bad token array or a bad dimensions/format is a 400."""
    body = {"model": "embed", "input": "hello", param: value}
    assert error_of(await post(app, EMBED, body))["param"] == param


async def test_largest_allowed_embedding_request_is_answered(app: Any) -> None:
    """2048 inputs and token arrays at the limit are served by the mock."""
    r = await post(
        app, EMBED, {"model": "embed", "input": [f"text {i}" for i in range(MAX_EMBEDDING_INPUTS)]}
    )
    assert r.status_code == 200 and len(r.json()["data"]) == MAX_EMBEDDING_INPUTS
    r = await post(app, EMBED, {"model": "embed", "input": [list(range(8192))], "dimensions": 3072})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 3072


def test_mock_bounds_n_and_embedding_size_in_the_library() -> None:
    """The library's mock refuses a huge `n` or inputs × dimensions with a 400, before building anything."""
    with pytest.raises(lmgate.BadRequestError, match="n must be"):
        lmgate.completion(model="gpt-4o-mini", messages=HI, mock_response="x", n=10**9)
    with pytest.raises(lmgate.BadRequestError, match="over the mock's limit"):
        lmgate.embedding(
            model="text-embedding-3-small", input=["a"] * 2048, dimensions=8192, mock_response="x"
        )


def test_mock_embedding_is_a_unit_vector_of_the_asked_size() -> None:
    """The repeated-digest vectors keep their length and unit norm for sizes that are not multiples of 32."""
    for size in (1, 8, 33, 1536):
        vector = mock_provider.mock_embedding("m", ["text"], size)["data"][0]["embedding"]
        assert len(vector) == size
        assert abs(sum(v * v for v in vector) - 1.0) < 1e-9
