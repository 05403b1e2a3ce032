"""Chat completion chunks → Anthropic's stream events.

The sequence is Anthropic's: ``message_start``, a ``ping``, then per content block
``content_block_start`` / ``content_block_delta``… / ``content_block_stop`` (thinking, text
and each tool call a block of its own, in the order they arrive), then ``message_delta``
(``stop_reason`` and the usage) and ``message_stop``. Chunks carry no usage before the end,
so ``message_start`` says 0 tokens and ``message_delta`` carries the whole usage (input tokens
included, as Anthropic's API now sends them there too).
"""

from __future__ import annotations

from typing import Any

from .translate import anthropic_usage, new_message_id, stop_reason


class EventTranslator:
    """One stream's state: which block is open and which tool call maps to which block."""

    def __init__(self, model: str, raw: bool = True) -> None:
        self.model = model
        self.raw = raw  # a pass-through's events go out as they came (unless a hook may change chunks)
        self.passed_through = False
        self.started = False
        self.block: int = -1  # index of the open block, -1 when none
        self.block_kind: str | None = None
        self.next_block = 0
        self.tool_blocks: dict[int, int] = {}  # the chunk's tool index → block index
        self.finish: Any = None
        self.usage: Any = None

    def _start(self, chunk: Any) -> list[dict[str, Any]]:
        self.started = True
        rid = str((chunk or {}).get("id") or "")
        message: dict[str, Any] = {
            "id": rid if rid.startswith("msg_") else new_message_id(),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _open(self, kind: str, block: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close()
        self.block = self.next_block
        self.next_block += 1
        self.block_kind = kind
        events.append({"type": "content_block_start", "index": self.block, "content_block": block})
        return events

    def _close(self) -> list[dict[str, Any]]:
        if self.block < 0:
            return []
        index, self.block, self.block_kind = self.block, -1, None
        return [{"type": "content_block_stop", "index": index}]

    def feed(self, chunk: Any) -> list[dict[str, Any]]:
        sent = getattr(chunk, "_anthropic_event", None) if self.raw else None
        if isinstance(sent, dict):
            self.passed_through = self.started = True
            return [sent]
        if self.passed_through:  # a chunk without its event: the pass-through's carrier chunks only
            return []
        events = [] if self.started else self._start(chunk)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content")
            if reasoning:
                if self.block_kind != "thinking":
                    events += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": self.block,
                        "delta": {"type": "thinking_delta", "thinking": reasoning},
                    }
                )
            text = delta.get("content")
            if text:
                if self.block_kind != "text":
                    events += self._open("text", {"type": "text", "text": ""})
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": self.block,
                        "delta": {"type": "text_delta", "text": text},
                    }
                )
            for call in delta.get("tool_calls") or []:
                events += self._tool_call(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return events

    def _tool_call(self, call: Any) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        index = call.get("index") or 0
        fn = call.get("function") or {}
        if index not in self.tool_blocks:
            block = {"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": {}}
            events += self._open("tool_use", block)
            self.tool_blocks[index] = self.block
        block_index = self.tool_blocks[index]
        if block_index != self.block:  # an earlier call's arguments after another block opened
            return events
        arguments = fn.get("arguments")
        if arguments:
            events.append(
                {
                    "type": "content_block_delta",
                    "index": block_index,
                    "delta": {"type": "input_json_delta", "partial_json": arguments},
                }
            )
        return events

    def finish_events(self) -> list[dict[str, Any]]:
        """The end of the message: close the open block, ``message_delta``, ``message_stop``."""
        if self.passed_through:  # the upstream sent its own message_delta and message_stop
            return []
        events = [] if self.started else self._start({})
        events += self._close()
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.finish or "stop"), "stop_sequence": None},
                "usage": anthropic_usage(self.usage),
            }
        )
        events.append({"type": "message_stop"})
        return events
