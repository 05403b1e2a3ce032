"""Legacy text completions (``/v1/completions``): ``text_completion`` / ``atext_completion``.

An OpenAI deployment (``passthrough_apis``: OpenAI and servers spoken to through the
``openai/`` prefix, e.g. vLLM) gets the request as it was sent, through the same
``openai_passthrough`` seam as the Responses API. Every other one gets it bridged: the
prompt (one string, or a list holding one string) becomes a single user message, and the
chat answer comes back as a ``text_completion``; ``suffix``, ``echo``, ``logprobs``,
``best_of`` and several prompts are refused there (a chat model has no way to honour them).
The call type is the reference's: ``text_completion`` / ``atext_completion``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

CALL_TYPE = "text_completion"
ACALL_TYPE = "atext_completion"

# request keys that go to a chat model as they are
_CHAT_KEYS = (
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "user",
    "logit_bias",
)
# keys a chat model cannot honour (refused when the request is bridged, unless empty/default)
_UNBRIDGEABLE = ("suffix", "echo", "logprobs", "best_of")


class CompletionsRequestError(ValueError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status_code = 400
        self.param = param


def check_request(data: dict[str, Any], strict: bool) -> None:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise CompletionsRequestError("you must provide a model parameter", "model")
    prompt = data.get("prompt")
    if prompt is None:
        raise CompletionsRequestError("Missing required parameter: 'prompt'.", "prompt")
    ok = isinstance(prompt, str) or (
        isinstance(prompt, list)
        and (all(isinstance(p, str) for p in prompt) or all(isinstance(p, int) for p in prompt))
    )
    if not ok:
        raise CompletionsRequestError(
            "Invalid type for 'prompt': expected a string, an array of strings or of token ids.", "prompt"
        )
    if data.get("stream") is not None and not isinstance(data["stream"], bool):
        raise CompletionsRequestError("Invalid type for 'stream': expected a boolean.", "stream")
    if not strict:
        return
    if isinstance(prompt, list) and (len(prompt) != 1 or not isinstance(prompt[0], str)):
        raise CompletionsRequestError(
            "this model takes one prompt string (several prompts or token ids need an OpenAI deployment)",
            "prompt",
        )
    for key in _UNBRIDGEABLE:
        if data.get(key) not in (None, False, 0, "") and not (key == "best_of" and data[key] == 1):
            raise CompletionsRequestError(
                f"{key!r} is not supported for this model (an OpenAI deployment takes it)", key
            )


def to_chat(data: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    prompt = data["prompt"]
    text = prompt if isinstance(prompt, str) else prompt[0] if prompt and isinstance(prompt[0], str) else ""
    params = {k: data[k] for k in _CHAT_KEYS if data.get(k) is not None}
    return [{"role": "user", "content": text}], params


def to_text_completion(result: Any, model: str, raw: bool = True) -> Any:
    """A chat completion → a ``text_completion``; a pass-through's answer as it came."""
    from .types import TextCompletionResponse

    sent = getattr(result, "_passthrough_body", None) if raw else None
    if isinstance(sent, dict):
        return sent
    choices = [
        {
            "text": (c.get("message") or {}).get("content") or "",
            "index": c.get("index", i),
            "logprobs": None,
            "finish_reason": c.get("finish_reason") or "stop",
        }
        for i, c in enumerate(result.get("choices") or [])
    ]
    rid = str(result.get("id") or "")
    out = {
        "id": rid if rid.startswith("cmpl-") else "cmpl-" + rid.removeprefix("chatcmpl-"),
        "object": "text_completion",
        "created": result.get("created"),
        "model": model,
        "choices": choices,
        "usage": result.get("usage"),
    }
    response = TextCompletionResponse(out)
    object.__setattr__(response, "_hidden_params", getattr(result, "_hidden_params", {}))
    return response


def chunk_to_text(chunk: Any, model: str, raw: bool = True) -> Any:
    """A chat chunk → a ``text_completion`` chunk; a pass-through's chunk as it came."""
    sent = getattr(chunk, "_passthrough_event", None) if raw else None
    if isinstance(sent, dict):
        return sent
    out: dict[str, Any] = {
        "id": "cmpl-" + str(chunk.get("id") or "").removeprefix("chatcmpl-"),
        "object": "text_completion",
        "created": chunk.get("created"),
        "model": model,
        "choices": [
            {
                "text": (c.get("delta") or {}).get("content") or "",
                "index": c.get("index", 0),
                "logprobs": None,
                "finish_reason": c.get("finish_reason"),
            }
            for c in chunk.get("choices") or []
        ],
    }
    if chunk.get("usage"):
        out["usage"] = chunk["usage"]
    return out


def speaks_completions(call_params: Any) -> bool:
    from ._responses.api import speaks_api

    return speaks_api(call_params, "completions")


def _prepare(
    prompt: Any, model: str, stream: bool, fields: dict[str, Any], controls: dict[str, Any], is_async: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from .exceptions import BadRequestError

    data: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        **{k: v for k, v in fields.items() if v is not None},
    }
    passes = speaks_completions({**controls, "model": model})
    try:
        check_request(data, strict=not passes)
    except CompletionsRequestError as error:
        raise BadRequestError(str(error), "text_completion", model) from None
    if passes:  # the record's view of the call; the model gets the request as it is
        data = dict(data, prompt=prompt if isinstance(prompt, str) else str(prompt[0]) if prompt else "")
    messages, params = to_chat(data)
    params["_call_type"] = ACALL_TYPE if is_async else CALL_TYPE
    body = {k: v for k, v in data.items() if k != "stream"}
    body["prompt"] = prompt
    params["openai_passthrough"] = {"api": "completions", "body": body}
    return messages, params


def text_completion(prompt: Any, model: str, *, stream: bool = False, **kwargs: Any) -> Any:
    """One legacy completion; OpenAI's request fields (``max_tokens``, ``suffix``, …) and
    lmgate's call controls (``api_key``, ``mock_response``, …) as keywords."""
    from ._call import CONTROL_PARAMS, completion

    fields = {k: v for k, v in kwargs.items() if k not in CONTROL_PARAMS}
    controls = {k: v for k, v in kwargs.items() if k in CONTROL_PARAMS}
    messages, params = _prepare(prompt, model, stream, fields, controls, False)
    result = completion(model=model, messages=messages, stream=stream, **params, **controls)
    if stream:
        return _chunks(result, model)
    return to_text_completion(result, model)


async def atext_completion(prompt: Any, model: str, *, stream: bool = False, **kwargs: Any) -> Any:
    from ._call import CONTROL_PARAMS, acompletion

    fields = {k: v for k, v in kwargs.items() if k not in CONTROL_PARAMS}
    controls = {k: v for k, v in kwargs.items() if k in CONTROL_PARAMS}
    messages, params = _prepare(prompt, model, stream, fields, controls, True)
    result = await acompletion(model=model, messages=messages, stream=stream, **params, **controls)
    if stream:
        return _achunks(result, model)
    return to_text_completion(result, model)


def _chunks(stream: Any, model: str) -> Iterator[Any]:
    try:
        for chunk in stream:
            yield chunk_to_text(chunk, model)
    finally:
        stream.close()


async def _achunks(stream: Any, model: str) -> AsyncIterator[Any]:
    try:
        async for chunk in stream:
            yield chunk_to_text(chunk, model)
    finally:
        await stream.aclose()
