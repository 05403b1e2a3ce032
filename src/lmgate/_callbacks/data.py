"""Private copies of a call's data: JSON snapshots taken once, deep copies where JSON cannot go.

What the caller passed (messages, parameters, metadata) is snapshotted when the call starts and
read back as fresh copies by every callback: an ``orjson.loads`` of the snapshot is far cheaper
than a deep copy and just as private. Both the running call's record and its frozen summary keep
their data this way; the ``kwargs`` and payload adapters read it through these helpers.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..types import _plain
from .encoding import dumps_any_keys, json_default
from .litellm_params import with_defaults
from .redact import REDACTED_TEXT, redact_messages

# how deep ``copy_data`` recurses; deeper data (a client's metadata may nest 1000 levels) is
# copied by a loop instead, so no depth of data exhausts Python's recursion limit
_RECURSIVE_COPY_DEPTH = 64
_CONTAINERS = (dict, list, tuple)
CYCLE_MARKER = "<unencodable: circular reference>"
# exact types that are never containers: ``copy_data`` keeps them as they are without a call
_LEAVES = frozenset({str, int, float, bool, type(None), bytes})


def copy_data(value: Any, _depth: int = 0) -> Any:
    """A deep copy of JSON-like data: dicts (keeping their class), lists, tuples; other objects shared.

    Any depth is copied (beyond ``_RECURSIVE_COPY_DEPTH`` by ``_copy_deep``'s loop); a container
    that contains itself is replaced, where it recurs, by ``CYCLE_MARKER``."""
    if not isinstance(value, _CONTAINERS):
        return value
    if _depth >= _RECURSIVE_COPY_DEPTH:
        return _copy_deep(value)
    depth = _depth + 1
    # leaves (most values: metadata is mostly strings and None) are kept without a call each
    if type(value) is dict:
        # copied in C, then only the containers replaced (a comprehension costs ~40% more)
        new = value.copy()
        for k, v in value.items():
            if type(v) not in _LEAVES:
                new[k] = copy_data(v, depth)
        return new
    if isinstance(value, dict):
        return _rebuild(value, {k: copy_data(v, depth) for k, v in value.items()})
    if isinstance(value, list):
        return [v if type(v) in _LEAVES else copy_data(v, depth) for v in value]
    return tuple(v if type(v) in _LEAVES else copy_data(v, depth) for v in value)


def _rebuild(value: dict[Any, Any], items: dict[Any, Any]) -> Any:
    """``items`` (the copied entries of ``value``) as an object of ``value``'s class."""
    cls = type(value)
    if cls is dict:
        return items
    try:
        new = cls._build(items)  # type: ignore[attr-defined]  # our response types: skip re-validation
    except AttributeError:
        new = cls(items)
    hidden = getattr(value, "__dict__", None)
    if hidden:
        for k, v in hidden.items():
            object.__setattr__(new, k, copy_data(v))
    return new


def _copy_deep(root: Any) -> Any:
    """``copy_data`` without recursion: a stack of the containers being copied, innermost last."""

    def frame(source: Any) -> list[Any]:
        # [source, its (key, child) iterator, the copied entries, the key the copy goes under in its parent]
        entries = iter(source.items()) if isinstance(source, dict) else enumerate(source)
        return [source, entries, {} if isinstance(source, dict) else [], None]

    def put(entries: Any, key: Any, child: Any) -> None:
        if isinstance(entries, dict):
            entries[key] = child
        else:
            entries.append(child)

    stack = [frame(root)]
    on_stack = {id(root)}
    while True:
        top = stack[-1]
        for key, child in top[1]:
            if not isinstance(child, _CONTAINERS):
                put(top[2], key, child)
            elif id(child) in on_stack:
                put(top[2], key, CYCLE_MARKER)
            else:
                top[3] = key
                stack.append(frame(child))
                on_stack.add(id(child))
                break
        else:  # every entry copied: build this container and hand it to its parent
            source, _, entries, _ = stack.pop()
            on_stack.discard(id(source))
            if isinstance(source, dict):
                done = _rebuild(source, entries)
            else:
                done = entries if isinstance(source, list) else tuple(entries)
            if not stack:
                return done
            parent = stack[-1]
            put(parent[2], parent[3], done)


def plain(value: Any) -> Any:
    """JSON-ready plain data (dict subclasses become dicts)."""
    return _plain(value)


def snapshot(value: Any) -> tuple[bytes | None, Any]:
    """(JSON snapshot, None), or (None, a deep copy) for data orjson cannot encode."""
    try:
        return dumps_any_keys(value), None
    except TypeError:
        return None, copy_data(value)


def thaw(raw_json: bytes | None, fallback: Any) -> Any:
    """A fresh copy of a snapshot taken by ``snapshot``."""
    return orjson.loads(raw_json) if raw_json is not None else fallback


def _dumps_or_value(value: Any) -> Any:
    if not value and type(value) is dict:
        return b"{}"
    try:
        return dumps_any_keys(value)
    except TypeError:  # something orjson cannot encode: readers get deep copies
        return value


def raw_request(api_base: str | None, headers: dict[str, Any], body: Any) -> str:
    """The request as a curl command (``headers`` are already masked)."""
    text = body.decode() if isinstance(body, bytes) else orjson.dumps(body, default=json_default).decode()
    lines = [f"curl -X POST \\\n{api_base or ''} \\"]
    lines.extend(f"-H '{name}: {value}' \\" for name, value in headers.items())
    lines.append(f"-d '{text}'")
    return "\n".join(lines)


def embedding_messages(inputs: Any) -> Any:
    """An embedding call's input as the ``messages`` callbacks see, as the reference shows them:
    each text a ``{"role": "user", "content": text}`` message (token lists stay as they are)."""
    if isinstance(inputs, str):
        return [{"role": "user", "content": inputs}]
    if isinstance(inputs, list) and inputs and all(isinstance(i, str) for i in inputs):
        return [{"role": "user", "content": i} for i in inputs]
    return inputs


def encode_parts(
    messages: tuple[bytes | None, Any],
    body: tuple[bytes | None, Any],
    headers: dict[str, Any],
    optional_params: dict[str, Any],
    litellm_params: dict[str, Any],
    redact: bool,
    api_base: str | None = None,
    raw: bool = False,
) -> dict[str, Any]:
    """Each request part kwargs hands out, encoded once: name -> JSON bytes (or, for data orjson
    cannot encode, the value itself, deep-copied for each reader). The snapshots are reused as
    they are unless they must be redacted."""
    out: dict[str, Any] = {}
    if redact:
        out["messages"] = _dumps_or_value(redact_messages(thaw(*messages)))
        request = thaw(*body)
        if isinstance(request, dict):
            request = dict(request)
            for name in ("messages", "input", "prompt", "system"):
                if name in request:
                    request[name] = redact_messages(request[name]) if name == "messages" else REDACTED_TEXT
        out["body"] = _dumps_or_value(request)
    else:
        out["messages"] = messages[0] if messages[0] is not None else messages[1]
        out["body"] = body[0] if body[0] is not None or body[1] is not None else b"null"
    out["optional_params"] = _dumps_or_value(optional_params)
    if raw and out["body"] != b"null" and isinstance(litellm_params.get("metadata"), dict):
        # log_raw_request_response: metadata["raw_request"] is the request as sent, as the reference
        # logs it (a curl command), from the masked headers and the (maybe redacted) body
        metadata = dict(litellm_params["metadata"])
        metadata["raw_request"] = raw_request(api_base, headers, out["body"])
        litellm_params = {**litellm_params, "metadata": metadata}
    # with the reference's constant keys, encoded once at import (see litellm_params.py)
    out["litellm_params"] = with_defaults(_dumps_or_value(litellm_params))
    out["headers"] = _dumps_or_value(headers)
    # "input": what was sent as the prompt (the body's messages or input), else the messages
    sent = out["body"]
    if sent == b"null" or sent is None:
        out["input"] = out["messages"]
        return out
    sent = orjson.loads(sent) if isinstance(sent, bytes) else sent
    if isinstance(sent, dict) and ("messages" in sent or "input" in sent):
        out["input"] = _dumps_or_value(sent.get("messages", sent.get("input")))
    else:
        out["input"] = out["messages"]
    return out
