"""Chat completion chunks → the Responses API's semantic stream events.

The sequence is OpenAI's: ``response.created``, ``response.in_progress``; per output item
``response.output_item.added``, then for a message ``response.content_part.added``,
``response.output_text.delta``… , ``response.output_text.done``, ``response.content_part.done``,
or for a function call ``response.function_call_arguments.delta``… ,
``response.function_call_arguments.done``; then ``response.output_item.done``; at the end
``response.completed`` (or ``response.incomplete``) carrying the whole response and its usage.
Every event has a ``sequence_number`` counting from 0. An item is closed when the next one
opens (a model streams its tool calls one after the other); a late argument fragment for a
closed call still reaches the final response, not a delta event.

A pass-through's events (``_passthrough_event`` on each chunk: OpenAI's own stream) go out as
they came.
"""

from __future__ import annotations

from typing import Any

import orjson

from .translate import finish, function_call_item, message_item, new_id, output_text, reasoning_item


def _copy(value: Any) -> Any:
    """A deep copy of JSON data (an event must not change when the response grows later)."""
    return orjson.loads(orjson.dumps(value))


class EventTranslator:
    """One stream's state: the response being built, the open item, the tool calls' items."""

    def __init__(self, response: dict[str, Any], raw: bool = True) -> None:
        self.response = response  # ``translate.skeleton``: in_progress, no output
        self.raw = raw
        self.passed_through = False
        self.final: dict[str, Any] | None = None  # the pass-through's own final response
        self.started = False
        self.sequence = 0
        self.open: dict[str, Any] | None = None  # the item being streamed
        self.text = ""
        self.reasoning = ""
        self.calls: dict[int, dict[str, Any]] = {}  # the chunk's tool index → its item
        self.finish_reason: Any = None
        self.usage: Any = None

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def _snapshot(self) -> dict[str, Any]:
        return _copy(self.response)

    def _start(self) -> list[dict[str, Any]]:
        self.started = True
        return [
            self._event("response.created", response=self._snapshot()),
            self._event("response.in_progress", response=self._snapshot()),
        ]

    def _add(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close()
        self.response["output"].append(item)
        self.open = item
        events.append(
            self._event("response.output_item.added", output_index=self._index(item), item=_copy(item))
        )
        return events

    def _index(self, item: dict[str, Any]) -> int:
        return next(i for i, it in enumerate(self.response["output"]) if it is item)

    def _close(self) -> list[dict[str, Any]]:
        item, self.open = self.open, None
        if item is None:
            return []
        index = self._index(item)
        events: list[dict[str, Any]] = []
        if item["type"] == "message":
            part = output_text(self.text)
            events.append(
                self._event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=self.text,
                    logprobs=[],
                )
            )
            events.append(
                self._event(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=part,
                )
            )
            item["content"] = [part]
        elif item["type"] == "function_call":
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        elif item["type"] == "reasoning":
            item["content"] = [{"type": "reasoning_text", "text": self.reasoning}]
        item["status"] = "completed"
        if item["type"] == "reasoning":
            item.pop("status")  # OpenAI's reasoning items carry no status
        events.append(self._event("response.output_item.done", output_index=index, item=_copy(item)))
        return events

    def feed(self, chunk: Any) -> list[dict[str, Any]]:
        sent = getattr(chunk, "_passthrough_event", None) if self.raw else None
        if isinstance(sent, dict):
            self.passed_through = self.started = True
            if isinstance(sent.get("response"), dict) and sent.get("type") in (
                "response.completed",
                "response.incomplete",
                "response.failed",
            ):
                self.final = sent["response"]
            return [sent]
        if self.passed_through:  # a chunk without its event: the pass-through's carrier chunks only
            return []
        events = [] if self.started else self._start()
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content")
            if reasoning:
                if self.open is None or self.open["type"] != "reasoning":
                    self.reasoning = ""
                    item = reasoning_item("")
                    item["content"] = []
                    events += self._add(item)
                self.reasoning += reasoning
            text = delta.get("content")
            if text:
                events += self._text(text)
            for call in delta.get("tool_calls") or []:
                events += self._tool_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def _text(self, text: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self.open is None or self.open["type"] != "message":
            self.text = ""
            item = message_item("", status="in_progress")
            events += self._add(item)
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=self._index(item),
                    content_index=0,
                    part=output_text(""),
                )
            )
        assert self.open is not None
        self.text += text
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=self.open["id"],
                output_index=self._index(self.open),
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _tool_call(self, call: Any) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        index = call.get("index") or 0
        fn = call.get("function") or {}
        item = self.calls.get(index)
        if item is None:
            item = function_call_item(
                call.get("id") or new_id("call"), fn.get("name") or "", "", "in_progress"
            )
            self.calls[index] = item
            events += self._add(item)
        arguments = fn.get("arguments")
        if arguments:
            item["arguments"] += arguments
            if item is self.open:
                events.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=self._index(item),
                        delta=arguments,
                    )
                )
        return events

    def finish_events(self) -> list[dict[str, Any]]:
        """The end: close the open item, then ``response.completed`` (or ``.incomplete``)."""
        if self.passed_through:  # the upstream sent its own response.completed
            return []
        events = [] if self.started else self._start()
        events += self._close()
        done = finish(self.response, self.finish_reason or "stop", self.usage)
        kind = "response.incomplete" if done["status"] == "incomplete" else "response.completed"
        events.append(self._event(kind, response=self._snapshot()))
        return events

    def result(self) -> dict[str, Any] | None:
        """The finished response (after ``finish_events``): what is stored for a later request."""
        if self.passed_through:
            return self.final
        return self.response if self.response.get("status") != "in_progress" else None

    def error_event(self, message: str, code: Any = None, param: Any = None) -> dict[str, Any]:
        """An ``error`` event (the stream broke); OpenAI sends it with the error's code."""
        return self._event("error", code=code, message=message, param=param)
