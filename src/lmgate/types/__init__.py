"""OpenAI-shaped response objects.

Every type is a ``dict`` subclass with attribute access, so ``r.choices[0].message.content``
and ``r["choices"][0]["message"]["content"]`` are the same value, ``json.dumps(r)`` and
``orjson.dumps(r)`` just work, and building one costs a dict, not a validation pass. The
names are the ones users of the reference implementation already import.

Declared fields read as ``None`` (or their default) when absent, both as attributes and as
keys, as the reference's do: ``chunk["choices"][0]["delta"]["content"]`` is ``None`` on a chunk
without content, not a ``KeyError``. Unknown attributes raise ``AttributeError`` and unknown
keys ``KeyError`` (so ``hasattr(response, "_hidden_params")`` style checks behave).
``lmgate.types.utils`` holds the typed dicts of the logging payload, for annotations. Attributes that start with
``_`` (``_hidden_params``) live beside the data and are never serialised.
"""

from __future__ import annotations

import random
import time
from typing import Any, ClassVar

import orjson

__all__ = [
    "OpenAIObject",
    "Function",
    "ChatCompletionMessageToolCall",
    "ChatCompletionDeltaToolCall",
    "Message",
    "Delta",
    "Choices",
    "StreamingChoices",
    "Usage",
    "ModelResponse",
    "ModelResponseStream",
    "Embedding",
    "EmbeddingResponse",
    "TextChoices",
    "TextCompletionResponse",
    "ImageObject",
    "ImageResponse",
    "TranscriptionResponse",
]


def _plain(value: Any) -> Any:
    """A deep copy made of plain dicts and lists (what ``model_dump`` returns)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class OpenAIObject(dict):
    """A dict with attribute access; the base of every response type."""

    #: field name -> default for fields that read as a value when absent
    _fields: ClassVar[dict[str, Any]] = {}
    #: field name -> type used to coerce nested plain dicts (lists are coerced item by item)
    _nested: ClassVar[dict[str, type]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        dict.__init__(self, *args, **kwargs)
        for name, typ in self._nested.items():
            value = dict.get(self, name)
            if value is None:
                continue
            if isinstance(value, list):
                dict.__setitem__(
                    self,
                    name,
                    [v if isinstance(v, typ) or not isinstance(v, dict) else typ(v) for v in value],
                )
            elif isinstance(value, dict) and not isinstance(value, typ):
                dict.__setitem__(self, name, typ(value))

    @classmethod
    def _build(cls, data: dict[str, Any]) -> Any:
        """Wrap data that is already made of the right types (the fast internal path)."""
        obj = dict.__new__(cls)
        dict.update(obj, data)
        return obj

    def __missing__(self, key: Any) -> Any:
        # dict.__getitem__ calls this only for an absent key, so present keys cost nothing extra
        fields = type(self)._fields
        if key in fields:
            return fields[key]
        raise KeyError(key)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __delattr__(self, name: str) -> None:
        if name.startswith("_"):
            object.__delattr__(self, name)
            return
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.items())
        return f"{type(self).__name__}({inner})"

    # -- the serialisation methods users of pydantic-based clients call --
    def model_dump(self, **_: Any) -> dict[str, Any]:
        return _plain(self)  # type: ignore[no-any-return]

    dict_ = model_dump
    to_dict = model_dump

    def model_dump_json(self, **_: Any) -> str:
        return orjson.dumps(self).decode()

    def json(self, **_: Any) -> str:  # noqa: D102 - the reference's name for model_dump_json
        return self.model_dump_json()

    def __copy__(self) -> Any:
        new = type(self)._build(self)
        if "_hidden_params" in self.__dict__:
            new._hidden_params = dict(self.__dict__["_hidden_params"])
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        import copy

        new = type(self)._build({k: copy.deepcopy(v, memo) for k, v in self.items()})
        for k, v in self.__dict__.items():
            object.__setattr__(new, k, copy.deepcopy(v, memo))
        return new


class Function(OpenAIObject):
    """A function call: name and JSON-encoded arguments."""

    _fields = {"name": None, "arguments": ""}


class ChatCompletionMessageToolCall(OpenAIObject):
    """A tool call inside an assistant message."""

    _fields = {"id": None, "type": "function"}
    _nested = {"function": Function}


class ChatCompletionDeltaToolCall(OpenAIObject):
    """A fragment of a tool call inside a streamed delta."""

    _fields = {"id": None, "type": None, "index": 0}
    _nested = {"function": Function}


class Message(OpenAIObject):
    """An assistant (or other role) message."""

    _fields = {
        "role": "assistant",
        "content": None,
        "tool_calls": None,
        "function_call": None,
        "audio": None,
        "reasoning_content": None,
        "thinking_blocks": None,
        "annotations": None,
        "provider_specific_fields": None,
    }
    _nested = {"tool_calls": ChatCompletionMessageToolCall}


class Delta(OpenAIObject):
    """The change a stream chunk carries."""

    _fields = {
        "role": None,
        "content": None,
        "tool_calls": None,
        "function_call": None,
        "audio": None,
        "reasoning_content": None,
        "thinking_blocks": None,
        "provider_specific_fields": None,
    }
    _nested = {"tool_calls": ChatCompletionDeltaToolCall}


class Choices(OpenAIObject):
    """One choice of a complete response."""

    _fields = {"index": 0, "finish_reason": None, "logprobs": None, "message": None}
    _nested = {"message": Message}


class StreamingChoices(OpenAIObject):
    """One choice of a stream chunk."""

    _fields = {"index": 0, "finish_reason": None, "logprobs": None, "delta": None}
    _nested = {"delta": Delta}


class Usage(OpenAIObject):
    """Token counts. ``prompt_tokens_details.cached_tokens`` holds cache reads."""

    _fields = {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setdefault("prompt_tokens", 0)
        self.setdefault("completion_tokens", 0)
        if dict.get(self, "total_tokens") is None:
            self["total_tokens"] = (self["prompt_tokens"] or 0) + (self["completion_tokens"] or 0)

    @property
    def cached_tokens(self) -> int:
        details = dict.get(self, "prompt_tokens_details") or {}
        return int(details.get("cached_tokens") or 0)


def new_completion_id() -> str:
    # ids need uniqueness, not unpredictability: skip the os.urandom system call
    return f"chatcmpl-{random.getrandbits(116):029x}"


class _WithHiddenParams(OpenAIObject):
    """Responses carry ``_hidden_params`` (provider, api_base, cost, response headers)."""

    def __getattr__(self, name: str) -> Any:
        if name == "_hidden_params":  # objects made by _build start without one
            value: dict[str, Any] = {}
            object.__setattr__(self, name, value)
            return value
        return super().__getattr__(name)


class ModelResponse(_WithHiddenParams):
    """A complete chat completion, as OpenAI returns it."""

    _fields = {
        "id": None,
        "object": "chat.completion",
        "created": None,
        "model": None,
        "choices": None,
        "usage": None,
        "system_fingerprint": None,
    }
    _nested = {"choices": Choices, "usage": Usage}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # an upstream's answer has them all: no id drawn nor clock read only to be thrown away
        if "id" not in self:
            self["id"] = new_completion_id()
        if "object" not in self:
            self["object"] = "chat.completion"
        if "created" not in self:
            self["created"] = int(time.time())
        if "choices" not in self:
            self["choices"] = []
        object.__setattr__(self, "_hidden_params", {})


class ModelResponseStream(OpenAIObject):
    """One chunk of a streamed chat completion."""

    _fields = {
        "id": None,
        "object": "chat.completion.chunk",
        "created": None,
        "model": None,
        "choices": None,
        "usage": None,
        "system_fingerprint": None,
        "provider_specific_fields": None,
    }
    _nested = {"choices": StreamingChoices, "usage": Usage}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "object" not in self:
            self["object"] = "chat.completion.chunk"
        if "choices" not in self:
            self["choices"] = []


class Embedding(OpenAIObject):
    """One embedding vector."""

    _fields = {"object": "embedding", "index": 0, "embedding": None}


class EmbeddingResponse(_WithHiddenParams):
    """The answer of an embeddings call."""

    _fields = {"object": "list", "data": None, "model": None, "usage": None}
    _nested = {"data": Embedding, "usage": Usage}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setdefault("object", "list")
        self.setdefault("data", [])
        object.__setattr__(self, "_hidden_params", {})


class TextChoices(OpenAIObject):
    """One choice of a text completion."""

    _fields = {"index": 0, "text": None, "logprobs": None, "finish_reason": None}


class TextCompletionResponse(_WithHiddenParams):
    """The answer of a text (``/completions``) call; declared so callbacks' ``isinstance`` checks work."""

    _fields = {
        "id": None,
        "object": "text_completion",
        "created": None,
        "model": None,
        "choices": None,
        "usage": None,
        "system_fingerprint": None,
    }
    _nested = {"choices": TextChoices, "usage": Usage}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setdefault("id", new_completion_id())
        self.setdefault("object", "text_completion")
        self.setdefault("created", int(time.time()))
        self.setdefault("choices", [])
        object.__setattr__(self, "_hidden_params", {})


class ImageObject(OpenAIObject):
    """One generated image."""

    _fields = {"b64_json": None, "url": None, "revised_prompt": None, "provider_specific_fields": None}


class ImageResponse(_WithHiddenParams):
    """The answer of an image generation call; declared so callbacks' ``isinstance`` checks work."""

    _fields = {"created": None, "data": None, "usage": None}
    _nested = {"data": ImageObject, "usage": Usage}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setdefault("created", int(time.time()))
        self.setdefault("data", [])
        object.__setattr__(self, "_hidden_params", {})


class TranscriptionResponse(_WithHiddenParams):
    """The answer of an audio transcription call; declared so callbacks' ``isinstance`` checks work."""

    _fields = {"text": None, "usage": None}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "_hidden_params", {})
