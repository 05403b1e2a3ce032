"""Stream wrappers: chunks to the caller, events to the callbacks, one response at the end.

``CustomStreamWrapper`` is both a sync and an async iterator (the call decides which), and a
context manager of either kind. Whatever way the stream ends, the call gets exactly one
terminal event, with the response assembled from the chunks seen so far:

* consumed to the end → success, ``stream_status="complete"``;
* closed, left by ``break`` in a ``with`` block, or garbage-collected early → success with the
  partial response, ``stream_status="abandoned"``;
* an error mid-stream → failure with the partial response, ``stream_status="broken"``.

A stream that ends early (abandoned or broken) before the provider reported its usage, or
that reports none (its client sent ``stream_options: {"include_usage": false}``), was still
billed — the prompt, and what was generated: its usage is then *estimated*
(``estimate_usage``: 4 bytes a token, as ``count_tokens``' estimate) so that its cost, in its
log record and in a virtual key's spend, is not 0; ``cost_breakdown.estimated_cost`` says so.

Chunks that carry only usage (OpenAI's ``include_usage`` chunk has ``choices == []``) get an
empty choice, so ``chunk.choices[0].delta.content`` always works and the last chunk carries
the usage.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import orjson

from ._callbacks.dispatch import before_exit_flush
from .types import (
    ChatCompletionMessageToolCall,
    Choices,
    Delta,
    Function,
    Message,
    ModelResponse,
    ModelResponseStream,
    StreamingChoices,
    Usage,
)


class ChunkAccumulator:
    """Builds the complete response from stream chunks."""

    def __init__(self) -> None:
        self.first: Any = None
        self.usage: Any = None
        self.choices: dict[int, dict[str, Any]] = {}

    def add(self, chunk: Any) -> None:
        # runs on every chunk of every stream: each mapping's get looked up once, an empty delta skipped
        if self.first is None:
            self.first = chunk
        get = chunk.get
        usage = get("usage")
        if usage:
            self.usage = usage
        choices = get("choices")
        if not choices:
            return
        for choice in choices:
            choice_get = choice.get
            index = choice_get("index", 0)
            state = self.choices.get(index)
            if state is None:
                state = self.choices[index] = {
                    "role": "assistant",
                    "parts": [],
                    "reasoning": [],
                    "tools": {},
                    "finish": None,
                }
            delta = choice_get("delta")
            if delta:
                delta_get = delta.get
                role = delta_get("role")
                if role:
                    state["role"] = role
                content = delta_get("content")
                if content:
                    state["parts"].append(content)
                reasoning = delta_get("reasoning_content")  # DeepSeek, xAI, Gemini thoughts, …
                if reasoning:
                    state["reasoning"].append(reasoning)
                tool_calls = delta_get("tool_calls")
                if tool_calls:
                    self._add_tool_calls(state["tools"], tool_calls)
            finish = choice_get("finish_reason")
            if finish:
                state["finish"] = finish

    @staticmethod
    def _add_tool_calls(tools: dict[int, dict[str, Any]], calls: Any) -> None:
        for call in calls:
            slot = tools.get(call.get("index", 0))
            if slot is None:
                slot = tools[call.get("index", 0)] = {"id": None, "name": None, "arguments": []}
            if call.get("id"):
                slot["id"] = call["id"]
            fn = call.get("function") or {}
            if fn.get("name"):
                slot["name"] = fn["name"]
            if fn.get("arguments"):
                slot["arguments"].append(fn["arguments"])

    def build(self) -> ModelResponse:
        first = self.first or {}
        choices = []
        for index in sorted(self.choices):
            state = self.choices[index]
            message: dict[str, Any] = {"role": state["role"], "content": "".join(state["parts"]) or None}
            if state["reasoning"]:
                message["reasoning_content"] = "".join(state["reasoning"])
            if state["tools"]:
                message["tool_calls"] = [
                    ChatCompletionMessageToolCall._build(
                        {
                            "id": slot["id"],
                            "type": "function",
                            "function": Function._build(
                                {"name": slot["name"], "arguments": "".join(slot["arguments"])}
                            ),
                        }
                    )
                    for _, slot in sorted(state["tools"].items())
                ]
            choices.append(
                Choices._build(
                    {
                        "index": index,
                        "message": Message._build(message),
                        "finish_reason": state["finish"],
                        "logprobs": None,
                    }
                )
            )
        data: dict[str, Any] = {
            "id": first.get("id"),
            "object": "chat.completion",
            "created": first.get("created"),
            "model": first.get("model"),
            "choices": choices,
            "system_fingerprint": first.get("system_fingerprint"),
        }
        if self.usage is not None:
            data["usage"] = self.usage if isinstance(self.usage, Usage) else Usage(self.usage)
        return ModelResponse._build(data)


def estimate_usage(
    messages: Any, params: dict[str, Any], acc: ChunkAccumulator, model_most: int | None = None
) -> dict[str, int]:
    """The usage of a stream that ended before its provider reported one: the prompt (the
    messages' and tools' UTF-8 bytes, 4 to a token, plus 3 per message: ``count_tokens``' rule)
    and what was streamed (text, reasoning, tool calls: 4 bytes to a token), at most the
    request's ``max_tokens`` (or, when it names none, the model's ``model_most``) × ``n`` —
    never more than the proxy's budget reservation counted."""
    try:
        tools = params.get("tools")
        sent = len(orjson.dumps(messages)) + (len(orjson.dumps(tools)) if tools else 0)
    except TypeError:  # something orjson cannot encode: its text
        sent = len(str(messages).encode())
    prompt = math.ceil(sent / 4) + 3 * (len(messages) if isinstance(messages, list) else 1)
    streamed = 0
    for state in acc.choices.values():
        streamed += _size(state["parts"]) + _size(state["reasoning"])
        for slot in state["tools"].values():
            streamed += _size([slot["name"] or "", *slot["arguments"]])
    completion = math.ceil(streamed / 4)
    most = params.get("max_completion_tokens") or params.get("max_tokens") or model_most
    if isinstance(most, int) and not isinstance(most, bool) and most > 0:
        n = params.get("n")
        completion = min(
            completion, most * (n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1)
        )
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _model_max_output(call: Any) -> int | None:
    """The most output tokens the call's model generates in one answer, as a budget reserved it
    (``proxy/budgets.group_prices``): its deployment's ``model_info``, else the price table.
    Tokens can be longer than 4 bytes: without this bound, a long broken stream's estimate
    could pass what the model can generate, and what a budget reserved."""
    from .cost import find_price

    control = call.control
    most = (control.get("model_info") or {}).get("max_output_tokens")
    if most is None:
        model = str(call.model)
        for name in (control.get("base_model"), model, model.split("/", 1)[-1]):
            found = find_price(name) if name else None
            if found is not None:
                most = found[1].get("max_output_tokens")
                break
    return most if isinstance(most, int) and not isinstance(most, bool) and most > 0 else None


def _size(pieces: list[Any]) -> int:
    return sum(len(p.encode() if isinstance(p, str) else str(p).encode()) for p in pieces)


def _with_choice(chunk: Any) -> Any:
    if chunk.get("choices"):
        return chunk
    data = dict(chunk)
    data["choices"] = [
        StreamingChoices._build(
            {"index": 0, "delta": Delta._build({}), "finish_reason": None, "logprobs": None}
        )
    ]
    return ModelResponseStream._build(data)


_open_streams: weakref.WeakSet[CustomStreamWrapper] = weakref.WeakSet()


def end_open_streams() -> int:
    """End every stream still open as abandoned (at exit, before the final flush); how many there were."""
    ended = 0
    for stream in list(_open_streams):
        if not stream._ended:
            try:
                stream._end("abandoned")
                ended += 1
            except Exception:  # exit goes on whatever one stream does
                pass
    return ended


before_exit_flush(end_open_streams)


class CustomStreamWrapper:
    """A streamed response; see the module docstring."""

    def __init__(self, call: Any, chunks: Any, close: Any = None, *, is_async: bool) -> None:
        self._call = call
        self._chunks = chunks
        self._release = close
        self._is_async = is_async
        self._acc = ChunkAccumulator()
        self._ended = False
        self.model = call.model_name
        self.custom_llm_provider = call.provider_name
        # as on a response (and the reference's stream): the call's id, which its log record
        # carries, so the proxy's spend ledger row of a stream names the same call
        self._hidden_params: dict[str, Any] = {
            "litellm_call_id": call.record.call_id if call.record is not None else None
        }
        if call.record is not None:  # only streams someone listens to need ending at exit
            _open_streams.add(self)

    # ---- shared ----
    def _deliver(self, chunk: Any) -> Any:
        if not chunk.get("choices"):  # runs on every chunk: the usual one has its choices already
            chunk = _with_choice(chunk)
        acc = self._acc
        call = self._call
        if acc.first is None:
            call.first_token()
        acc.add(chunk)
        if call.record is not None:  # ``call.chunk``: only a call someone listens to emits chunks
            call.chunk(chunk)
        return chunk

    def _end(self, status: str, error: BaseException | None = None) -> BaseException | None:
        if self._ended:
            return error
        self._ended = True
        _open_streams.discard(self)
        acc = self._acc
        call = self._call
        # no usage reported (the stream ended early, or its client turned include_usage off): it
        # was billed all the same
        if acc.usage is None and call.mock is None and not call.cache_hit:
            acc.usage = estimate_usage(call.payload, call.params, acc, _model_max_output(call))  # billed
            call.control["usage_estimated"] = True  # the record's cost_breakdown says so
        return call.end_stream(acc.build(), status, error)

    def _finish(self, error: BaseException | None) -> Any:
        """The end of the stream, once its source is closed; the policy both iterators share.

        A complete stream (``error`` None) ends the call and returns the response to cache
        (None for a replayed cache hit, stored already, or without a cache); a broken one ends the call as
        broken and raises what the caller gets (the error mapped into lmgate's tree).
        """
        if error is None:
            self._end("complete")
            call = self._call
            # the response to store is built only where a cache will store it
            return None if call.cache_hit or call.settings.cache is None else self._acc.build()
        mapped = self._end("broken", error)
        if mapped is None or mapped is error:
            raise error
        raise mapped from error

    @property
    def response(self) -> ModelResponse:
        """The response assembled from the chunks seen so far."""
        return self._acc.build()

    # ---- sync ----
    def __iter__(self) -> CustomStreamWrapper:
        if self._is_async:
            raise TypeError("this stream came from acompletion(); iterate it with 'async for'")
        return self

    def __next__(self) -> Any:
        if self._ended:
            raise StopIteration
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._close_source()
            self._call.cache_store(self._finish(None))
            raise
        except BaseException as error:
            self._close_source()
            self._finish(error)
        return self._deliver(chunk)

    def _close_source(self) -> None:
        release, self._release = self._release, None
        if release is not None and not self._is_async:
            try:
                release()
            except Exception:  # the connection is going away either way
                pass

    def close(self) -> None:
        """Stop early: release the connection and end the call as abandoned."""
        if not self._ended:
            self._end("abandoned")
        if self._is_async:
            source_close = getattr(self._chunks, "aclose", None)
            self._release = None
            if source_close is not None:
                _close_async_soon(source_close)
        else:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
            self._close_source()

    def __enter__(self) -> CustomStreamWrapper:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_ended", True):
            try:
                self._end("abandoned")
            except Exception:
                pass

    # ---- async ----
    def __aiter__(self) -> CustomStreamWrapper:
        if not self._is_async:
            raise TypeError("this stream came from completion(); iterate it with 'for'")
        return self

    async def __anext__(self) -> Any:
        if self._ended:
            raise StopAsyncIteration
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            await self._aclose_source()
            await self._call.acache_store(self._finish(None))
            raise
        except BaseException as error:
            await self._aclose_source()
            self._finish(error)
        return self._deliver(chunk)

    async def _aclose_source(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            try:
                await release()
            except Exception:
                pass

    async def aclose(self) -> None:
        """Stop early (async): release the connection and end the call as abandoned."""
        if not self._ended:
            self._end("abandoned")
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:
                pass
        await self._aclose_source()

    async def __aenter__(self) -> CustomStreamWrapper:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()


def _close_async_soon(close: Any) -> None:
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.create_task(close())
