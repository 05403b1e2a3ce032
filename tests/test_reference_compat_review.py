"""Issue 13, the second review: what a migrating user's tests still hit, checked against LiteLLM 1.109.1
run on this machine (bench/.venv-ref) — mock error texts, dict and embedding mocks, exception names."""

from __future__ import annotations

import pytest

import lmgate
import lmgate as litellm

MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("mock", "error", "text"),
    [
        ("litellm.RateLimitError", litellm.RateLimitError, "this is a mock rate limit error"),
        (
            "litellm.ContextWindowExceededError",
            litellm.ContextWindowExceededError,
            "this is a mock context window exceeded error",
        ),
        ("litellm.InternalServerError", litellm.InternalServerError, "this is a mock internal server error"),
    ],
)
def test_mock_errors_carry_the_references_messages(mock, error, text):
    """A user's ``pytest.raises(litellm.RateLimitError, match="this is a mock rate limit error")``."""
    with pytest.raises(error, match=text):
        litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=mock)


def test_a_dict_mock_response_finishes_with_stop_like_the_references():
    """The reference builds ``ModelResponse(**mock)``, whose choices default to ``finish_reason="stop"``."""
    mock = {"choices": [{"message": {"role": "assistant", "content": "from dict"}}]}
    response = litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=mock)
    assert response.choices[0].message.content == "from dict"
    assert response.choices[0].finish_reason == "stop"
    assert "finish_reason" not in mock["choices"][0]  # the caller's dict is left as it was
    explicit = {"choices": [{"message": {"content": "x"}, "finish_reason": "length"}]}
    assert (
        litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=explicit)
        .choices[0]
        .finish_reason
        == "length"
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_embedding_mock_response_vector_answers_every_input(mode):
    """``embedding(..., mock_response=[0.1, 0.2])``: the reference returns that vector, not its own."""
    kwargs = {"model": "text-embedding-3-small", "input": ["a", "b"], "mock_response": [0.5, 0.25]}
    if mode == "sync":
        response = litellm.embedding(**kwargs)
    else:
        import asyncio

        response = asyncio.run(litellm.aembedding(**kwargs))
    assert [d["embedding"] for d in response["data"]] == [[0.5, 0.25], [0.5, 0.25]]
    assert [d["index"] for d in response["data"]] == [0, 1]
    # no vector given: the deterministic mock vectors as before
    assert (
        len(
            litellm.embedding(model="text-embedding-3-small", input=["a"], mock_response="x")
            .data[0]
            .embedding
        )
        == 8
    )


def test_the_references_other_exception_names_exist_in_the_tree():
    """``except litellm.X`` / ``isinstance(e, litellm.X)`` in a user's callback must not raise AttributeError."""
    expected = {
        "InvalidRequestError": (litellm.BadRequestError, 400),
        "PaymentRequiredError": (litellm.BadRequestError, 402),
        "UnsupportedEndpointError": (litellm.BadRequestError, 400),
        "BadGatewayError": (litellm.APIError, 502),
        "APIResponseValidationError": (litellm.APIError, 500),
        "JSONSchemaValidationError": (litellm.APIError, 500),
        "OpenAIError": (litellm.APIError, 500),
    }
    for name, (base, status) in expected.items():
        cls = getattr(litellm, name)
        assert issubclass(cls, base) and cls.status_code == status, name
        assert name in lmgate.__all__
    assert issubclass(litellm.JSONSchemaValidationError, litellm.APIResponseValidationError)
    # the reference's unknown-provider error is lmgate's unknown-model error: one except catches both
    with pytest.raises(litellm.LiteLLMUnknownProvider):
        litellm.completion(model="no_such_provider/some-model", messages=MESSAGES, api_key="k")
    # and each can be named in mock_response like the others
    with pytest.raises(litellm.BadGatewayError) as info:
        litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="litellm.BadGatewayError")
    assert info.value.status_code == 502


@pytest.mark.parametrize("stream", [False, True])
def test_a_redacted_response_obj_reads_like_the_references(stream):
    """With message logging off the reference hands callbacks a ModelResponse whose text is
    "redacted-by-litellm": ``response_obj.choices[0].message.content`` works, it does not raise."""
    from lmgate.integrations.custom_logger import CustomLogger

    seen = []

    class Reader(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            choice = response_obj.choices[0]
            call = choice.message.tool_calls[0]
            seen.append(
                (choice.message.content, call.function.name, call.function.arguments, choice.finish_reason)
            )
            complete = kwargs.get("complete_streaming_response")
            if complete is not None:
                seen.append(complete.choices[0].message.content)

    tool_calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]
    litellm.callbacks = [Reader()]
    litellm.turn_off_message_logging = True
    response = litellm.completion(
        model="gpt-4o-mini",
        messages=MESSAGES,
        mock_response="secret",
        mock_tool_calls=tool_calls,
        stream=stream,
    )
    if stream:
        for _ in response:
            pass
    else:
        assert response.choices[0].message.content == "secret"  # the caller's answer is untouched
    assert lmgate.flush_callbacks(10)
    assert seen[0] == ("redacted-by-litellm", "f", "redacted-by-litellm", "tool_calls")
    if stream:
        assert seen[1] == "redacted-by-litellm"
