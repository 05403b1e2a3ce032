"""Encode a log record even when parts of it cannot be encoded as given.

A record is built from what the caller sent (metadata, messages, parameters). Some of that has
no JSON form orjson accepts: integers beyond 64 bits, dict keys of odd types, data nested deeper
than orjson's recursion limit (254 containers, counted from the record's root), objects whose
``repr`` raises, cycles. One such value must not cost the whole record: ``encode_salvaged``
encodes the record part by part, replaces each part that fails, as deep as it can be narrowed
down, with the text ``"<unencodable: reason>"``, and says which parts in the record's
``metadata.lmgate_encoding_errors`` (``{"metadata.tags": "reason", ...}``; documented in
``docs/payload.md``). This is the slow path: ``orjson.dumps`` of the whole record is tried first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

ENCODING_ERRORS_KEY = "lmgate_encoding_errors"
# how far down a failing part is narrowed (payload → metadata → key → …); below, the whole part is replaced
MAX_SALVAGE_DEPTH = 6
MAX_REASON_CHARS = 200
DEPTH_REASON = "nested too deeply"
_OPTIONS = orjson.OPT_NON_STR_KEYS
# parts below the record's top level that the payload schema types as objects
_OBJECT_PARTS = frozenset({"metadata.requester_metadata"})


def json_default(value: Any) -> Any:
    """What a record may hold beyond JSON types: sets as lists, bytes as text, anything else as
    its ``repr`` (a record's reader sees what the value was, not just its text)."""
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


def dumps_any_keys(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """``orjson.dumps(value, default=default, option=OPT_NON_STR_KEYS)``, the same bytes, faster:
    that option makes orjson encode every dict ~40% slower, and almost every record's dicts have
    text keys only; so the value is encoded without it first (identical output for text keys)
    and again with it only when orjson refuses a key. Raises TypeError as ``orjson.dumps`` does."""
    try:
        return orjson.dumps(value, default=default)
    except TypeError:  # a key that is not text (an int, an enum, ...), or no JSON form at all
        return orjson.dumps(value, default=default, option=_OPTIONS)


def encode_record(record: Any) -> bytes:
    """A log record (the standard logging payload, or a batch logger's own record) as compact
    JSON, never holding a raw newline (the spool relies on that). Parts that cannot be encoded are
    replaced and flagged (``encode_salvaged``); a record that is not a JSON object and cannot be
    encoded raises ``UnencodableRecord``."""
    return encode_record_flagged(record)[0]


def encode_record_flagged(record: Any) -> tuple[bytes, bool]:
    """``encode_record``, and whether any part had to be replaced."""
    try:
        return dumps_any_keys(record, json_default), False
    except TypeError:  # orjson.JSONEncodeError: a value of the caller's has no JSON form
        return encode_salvaged(record, json_default)


class UnencodableRecord(ValueError):
    """Raised when a record cannot be encoded even part by part (it is not a JSON object)."""


def marker(reason: str) -> str:
    """The text that stands in for a part that could not be encoded."""
    return f"<unencodable: {reason}>"


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if "recursion limit" in text.lower():
        return DEPTH_REASON
    return text[:MAX_REASON_CHARS]


def encode_salvaged(record: Any, default: Callable[[Any], Any] | None = None) -> tuple[bytes, bool]:
    """``record`` (a dict) as compact JSON, parts that cannot be encoded replaced and flagged; and
    whether any part was (dict keys of odd types are made text without a flag).

    Raises ``UnencodableRecord`` when ``record`` is not a dict: then there is no place to say
    what was replaced, and the caller counts the record as dropped."""
    if not isinstance(record, dict):
        raise UnencodableRecord(f"a log record must be a JSON object, got {type(record).__name__}")
    errors: dict[str, str] = {}
    parts = {_key(k): _salvage(v, _key(k), 1, errors, default) for k, v in record.items()}
    if errors:
        original = record.get("metadata")
        metadata = parts.get("metadata")
        if not isinstance(metadata, dict):  # encoded whole (or absent): take it apart to add the flag
            metadata = parts["metadata"] = _metadata_parts(original, metadata, errors, default)
        previous = original.get(ENCODING_ERRORS_KEY) if isinstance(original, dict) else None
        if isinstance(previous, dict):  # flagged when it was built (e.g. request_tags)
            errors = {**{_key(k): str(v) for k, v in previous.items()}, **errors}
        metadata[ENCODING_ERRORS_KEY] = errors
    return orjson.dumps(parts, option=_OPTIONS), bool(errors)


def _metadata_parts(original: Any, encoded: Any, errors: dict[str, str], default: Any) -> dict[str, Any]:
    """The record's metadata as a dict of encoded parts, so the flag has a place to go."""
    if isinstance(original, dict):
        return {_key(k): _salvage(v, f"metadata.{_key(k)}", 2, errors, default) for k, v in original.items()}
    if original is None or "metadata" in errors:
        return {}
    errors["metadata"] = f"must be an object, got {type(original).__name__}"
    return {"value": encoded}


def _key(key: Any) -> str:
    return key if isinstance(key, str) else str(key)


def _salvage(value: Any, path: str, depth: int, errors: dict[str, str], default: Any) -> Any:
    """``value`` as an orjson.Fragment, or narrowed down to the parts that fail."""
    try:
        # wrapped in as many lists as it sits deep in the record, so the recursion limit is
        # checked where the value will be; the wrapping is cut off the bytes again
        wrapped = value
        for _ in range(depth):
            wrapped = [wrapped]
        raw = orjson.dumps(wrapped, default=default, option=_OPTIONS)
        return orjson.Fragment(raw[depth : len(raw) - depth])
    except Exception as error:  # noqa: BLE001 - any failure of a user's value is recorded, not raised
        reason = _reason(error)
    # narrowed down while that can spare some of its parts; a lone deep child is replaced whole,
    # except where the payload's schema wants an object (a part of it is replaced instead)
    if isinstance(value, (dict, list, tuple)) and depth < MAX_SALVAGE_DEPTH:
        keep_object = isinstance(value, dict) and (depth == 1 or path in _OBJECT_PARTS)
        if keep_object or not (reason == DEPTH_REASON and len(value) < 2):
            if isinstance(value, dict):
                return {
                    _key(k): _salvage(v, f"{path}.{_key(k)}", depth + 1, errors, default)
                    for k, v in value.items()
                }
            return [_salvage(v, f"{path}[{i}]", depth + 1, errors, default) for i, v in enumerate(value)]
    errors[path] = reason
    return marker(reason)
