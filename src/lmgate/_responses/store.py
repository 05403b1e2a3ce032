"""Stored responses: what ``previous_response_id`` continues and ``GET /v1/responses/{id}`` reads.

A bounded, in-process store (least recently used out first, ``CAPACITY`` responses), shared by
the library and the proxy of one process. Each entry is the response as it was answered and
the conversation that led to it (the input items, earlier turns included), so a later request
can continue on any deployment. What it does not hold (a restart, another worker, evicted) is
read back from the log store when the ``store`` logger is on (``log_store.py``); without it,
a restart forgets them, and a client of several workers talks to one or sends its items.

A response an OpenAI deployment answered (passed through) is stored too (``upstream``): a
later request passed through to OpenAI keeps its ``previous_response_id`` (OpenAI has the
response, reasoning items and all), a request to any other deployment gets the conversation
from here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from .translate import ResponsesRequestError, input_items

CAPACITY = 10_000


@dataclass
class Stored:
    """One stored response, kept as JSON bytes: a copy nobody can change, made at a fraction
    of ``copy.deepcopy``'s cost, read back (rarely) as new objects each time."""

    response_json: bytes
    input_json: bytes  # the whole conversation before the response's output
    upstream: bool  # answered by a pass-through: the upstream has it too
    owner: str | None = None  # the proxy key's hash that made it: only that key (or an admin) reads it

    @property
    def response(self) -> dict[str, Any]:
        out: dict[str, Any] = orjson.loads(self.response_json)
        return out


class ResponseStore:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, Stored] = OrderedDict()
        # deleted ids, so the log store's record of one is not read back (bounded like the entries)
        self._deleted: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0  # counted, so a bound that is too small shows

    def put(
        self,
        response: dict[str, Any],
        conversation: list[dict[str, Any]],
        upstream: bool = False,
        owner: str | None = None,
    ) -> None:
        rid = response.get("id")
        if not isinstance(rid, str):
            return
        entry = Stored(orjson.dumps(response), orjson.dumps(conversation), upstream, owner)
        with self._lock:
            self._entries[rid] = entry
            self._entries.move_to_end(rid)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
                self.evicted += 1

    def get(self, response_id: str) -> Stored | None:
        with self._lock:
            entry = self._entries.get(response_id)
            if entry is not None:
                self._entries.move_to_end(response_id)
                return entry
            if response_id in self._deleted:
                return None
        from .log_store import from_log_store

        found = from_log_store(response_id)
        if found is None:
            return None
        response, conversation, owner = found
        self.put(response, conversation, False, owner)
        return self._entries.get(response_id)

    def delete(self, response_id: str) -> bool:
        """Forget a response (the log store keeps its call's record: a log, with its own retention)."""
        known = self.get(response_id) is not None
        with self._lock:
            self._entries.pop(response_id, None)
            self._deleted[response_id] = None
            while len(self._deleted) > self.capacity:
                self._deleted.popitem(last=False)
        return known

    def __len__(self) -> int:
        return len(self._entries)


_default: ResponseStore | None = None
_default_lock = threading.Lock()


def default_store() -> ResponseStore:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = ResponseStore()
    return _default


def not_found(response_id: str, param: str | None = None) -> ResponsesRequestError:
    """OpenAI's answer for an id it does not know."""
    what = "Previous response" if param else "Response"
    return ResponsesRequestError(
        f"{what} with id '{response_id}' not found.",
        param,
        "previous_response_not_found" if param else None,
        404 if not param else 400,
    )


def conversation(entry: Stored) -> list[dict[str, Any]]:
    """The items a continuation starts from: the stored input, then the response's output."""
    items: list[dict[str, Any]] = orjson.loads(entry.input_json)
    return items + (entry.response.get("output") or [])


ANYONE = object()  # ``owner`` of a library call: no key to check


def readable(entry: Stored | None, owner: Any) -> Stored | None:
    """The entry when ``owner`` (a proxy key's hash) may read it: its own, or the library's."""
    if entry is None or owner is ANYONE or entry.owner == owner:
        return entry
    return None


def expand(
    data: dict[str, Any], store: ResponseStore, passes_through: bool, owner: Any = ANYONE
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The request with ``previous_response_id`` resolved, and the conversation to store with
    its answer (every item so far). A request passed through keeps an id the upstream made.
    Another key's response is not found, as OpenAI answers for another project's."""
    previous = data.get("previous_response_id")
    items = input_items(data)
    if not previous:
        return data, items
    entry = readable(store.get(previous), owner)
    if entry is None:
        if passes_through:  # OpenAI's own id, from a response this process never saw
            return data, items
        raise not_found(previous, "previous_response_id")
    history = conversation(entry)
    if passes_through and entry.upstream:
        return data, history + items
    expanded = {k: v for k, v in data.items() if k != "previous_response_id"}
    expanded["input"] = history + items
    return expanded, history + items


def listed_items(entry: Stored, response_id: str) -> list[dict[str, Any]]:
    """The input items a response was made from, as ``GET /v1/responses/{id}/input_items``
    lists them: each with an ``id`` (one the client did not give is made from the response's id
    and the item's place, so it is the same on every read) and a message's text as parts."""
    items: list[dict[str, Any]] = orjson.loads(entry.input_json)
    out = []
    for i, item in enumerate(items):
        item = dict(item)
        kind = item.get("type") or ("message" if "role" in item else "item")
        item["type"] = kind
        if kind == "message":
            if isinstance(item.get("content"), str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": item["content"]}]
            item.setdefault("status", "completed")
        prefix = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}.get(kind, "item")
        item.setdefault("id", f"{prefix}_{response_id.removeprefix('resp_')}_{i}")
        out.append(item)
    return out
