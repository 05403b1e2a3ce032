"""A standard logging payload (the JSON every batch logger ships) as a store row.

The store reads the payload, not the ``CallSummary``: records reach the exporter as payload JSON
through the batch processor, and records spooled by an earlier process come back the same way.
A payload over ``max_record_bytes`` loses its messages and response first, then everything but
the columns; the row says so (``truncated``) and keeps the original size.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

DEFAULT_MAX_RECORD_BYTES = 1_000_000
TRUNCATED_KEY = "lmgate_truncated"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def row_from_payload(record: bytes, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> dict[str, Any]:
    """The row for one payload record (compact JSON), or for a call's facts record (its payload
    built here first: ``_callbacks.payload_facts``). Raises ValueError when it is neither."""
    if record[:1] == b"[":
        from .._callbacks.payload_facts import payload_from_facts

        record = payload_from_facts(record)
    payload = orjson.loads(record)
    if not isinstance(payload, dict) or not payload.get("litellm_call_id"):
        raise ValueError("not a standard logging payload (no litellm_call_id)")
    row = columns_of(payload)
    text, truncated = _capped(record, payload, max_record_bytes)
    row["payload"] = text
    row["payload_bytes"] = len(record)
    row["truncated"] = truncated
    return row


# the columns of a row, in the table's order (``schema.COLUMNS``: a test holds them equal; not
# imported from there, so reading a record needs no SQLAlchemy); the last three are the payload's
ROW_COLUMNS = (
    "call_id",
    "start_time",
    "end_time",
    "trace_id",
    "call_type",
    "model",
    "response_model",
    "provider",
    "model_id",
    "model_group",
    "key_hash",
    "key_alias",
    "team_id",
    "team_alias",
    "user_id",
    "end_user",
    "status",
    "error_class",
    "error_code",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "latency_ms",
    "ttft_ms",
    "stream",
    "cache_hit",
    "tags",
    "payload",
    "payload_bytes",
    "truncated",
)


def values_from_columns(columns: tuple[Any, ...], record: bytes) -> tuple[Any, ...]:
    """The row for ``record`` as values in ``ROW_COLUMNS`` order, from its ``plain_columns``
    (taken when it was enqueued); the caller saw it fits ``max_record_bytes``. A store that
    says ``WRITES_VALUE_ROWS`` takes rows in this form (no dict per row)."""
    return (*columns, record.decode("utf-8", "replace"), len(record), False)


def row_from_columns(columns: tuple[Any, ...], record: bytes) -> dict[str, Any]:
    """``values_from_columns`` as a row dict, for the stores that take those."""
    return dict(zip(ROW_COLUMNS, values_from_columns(columns, record), strict=True))


class NotPlain(ValueError):
    """A value of the payload dict whose JSON form reads back as something else (a datetime, a
    tuple, NaN...): its columns are taken from the record decoded instead."""


_NONE = type(None)
_TEXT_TYPES = frozenset((str, _NONE))
_NUMBER_TYPES = frozenset((float, int, _NONE))
_INT_TYPES = frozenset((int, _NONE))
_FLAG_TYPES = frozenset((bool, _NONE))
_STR_TYPE = frozenset((str,))
_isfinite = math.isfinite


def plain_columns(payload: dict[str, Any]) -> tuple[Any, ...]:
    """The values of ``columns_of``, in ``ROW_COLUMNS`` order, for the payload dict a record was
    encoded from, without the parse: the store logger takes them on the caller's path, where
    the dict exists, so the delivery thread parses nothing. Equal to ``columns_of`` of the
    record decoded (tests/test_store_rows.py); a value whose JSON form would read back
    differently (anything but a str, a finite number, a bool or None where a column is read)
    raises ``NotPlain``. Checks by type sets, not a function call per column, and a tuple, not
    a dict: this runs on every call's path."""
    get = payload.get
    meta = get("metadata")
    error = get("error_information")
    if type(meta) is not dict or type(error) is not dict:
        raise NotPlain("metadata or error_information")
    mget = meta.get
    texts = (
        get("trace_id"),
        get("call_type"),
        get("model"),
        get("response_model"),
        get("custom_llm_provider"),
        get("model_id"),
        get("model_group"),
        mget("user_api_key_hash"),
        mget("user_api_key_alias"),
        mget("user_api_key_team_id") or mget("team_id"),
        mget("user_api_key_team_alias") or mget("team_alias"),
        mget("user_api_key_user_id"),
        get("end_user") or mget("user_api_key_end_user_id"),
        get("status") or "failure",
        error.get("error_class"),
        error.get("error_code"),
    )
    start, end, first, cost = (
        get("startTime"),
        get("endTime"),
        get("completionStartTime"),
        get("response_cost"),
    )
    tokens = (get("prompt_tokens"), get("completion_tokens"), get("total_tokens"))
    stream, cache_hit = get("stream"), get("cache_hit")
    tags = get("request_tags") or mget("tags") or []
    call_id = payload["litellm_call_id"]
    if (
        type(call_id) is not str
        or not call_id
        or not _TEXT_TYPES.issuperset(map(type, texts))
        or not _NUMBER_TYPES.issuperset(map(type, (start, end, first, cost)))
        # one sum instead of a call per number: NaN or an infinity makes it so (two huge finite
        # numbers too, which only sends the record to the parse: the same columns, slower)
        or not _isfinite((start or 0) + (end or 0) + (first or 0) + (cost or 0))
        or not _INT_TYPES.issuperset(map(type, tokens))
        or not _FLAG_TYPES.issuperset(map(type, (stream, cache_hit)))
        or type(tags) is not list
        or not _STR_TYPE.issuperset(map(type, tags))
    ):
        raise NotPlain("a column's value is not a plain JSON value")
    start = float(start) if start else 0.0
    end = None if end is None else float(end)
    first = None if first is None else float(first)
    stream = bool(stream)
    return (
        call_id,
        start,
        end,
        # an empty text is stored as NULL; the usual call has none, so no pass over them
        *(texts if "" not in texts else [v or None for v in texts]),
        *tokens,
        None if cost is None else float(cost),
        (end - start) * 1000.0 if end is not None and start else None,
        (first - start) * 1000.0 if stream and first is not None and start else None,
        stream,
        bool(cache_hit),
        orjson.dumps(tags).decode() if tags else "[]",
    )


def columns_of(payload: dict[str, Any]) -> dict[str, Any]:
    """Every column of a payload's row but the payload itself (``payload``, ``payload_bytes``,
    ``truncated``), from the payload as decoded from its record."""
    meta: dict[str, Any] = payload.get("metadata") or {}
    error: dict[str, Any] = payload.get("error_information") or {}
    if not isinstance(meta, dict):
        meta = {}
    if not isinstance(error, dict):
        error = {}
    start = _num(payload.get("startTime")) or 0.0
    end = _num(payload.get("endTime"))
    first = _num(payload.get("completionStartTime"))
    stream = bool(payload.get("stream"))
    tags = payload.get("request_tags") or meta.get("tags") or []
    return {
        "call_id": str(payload["litellm_call_id"]),
        "start_time": start,
        "end_time": end,
        "trace_id": _str(payload.get("trace_id")),
        "call_type": _str(payload.get("call_type")),
        "model": _str(payload.get("model")),
        "response_model": _str(payload.get("response_model")),
        "provider": _str(payload.get("custom_llm_provider")),
        "model_id": _str(payload.get("model_id")),
        "model_group": _str(payload.get("model_group")),
        "key_hash": _str(meta.get("user_api_key_hash")),
        "key_alias": _str(meta.get("user_api_key_alias")),
        "team_id": _str(meta.get("user_api_key_team_id") or meta.get("team_id")),
        "team_alias": _str(meta.get("user_api_key_team_alias") or meta.get("team_alias")),
        "user_id": _str(meta.get("user_api_key_user_id")),
        "end_user": _str(payload.get("end_user") or meta.get("user_api_key_end_user_id")),
        "status": _str(payload.get("status")) or "failure",
        "error_class": _str(error.get("error_class")),
        "error_code": _str(error.get("error_code")),
        "prompt_tokens": _int(payload.get("prompt_tokens")),
        "completion_tokens": _int(payload.get("completion_tokens")),
        "total_tokens": _int(payload.get("total_tokens")),
        "cost": _num(payload.get("response_cost")),
        "latency_ms": (end - start) * 1000.0 if end is not None and start else None,
        # time to first token: streams only (a non-stream's "completion start" is its end)
        "ttft_ms": (first - start) * 1000.0 if stream and first is not None and start else None,
        "stream": stream,
        "cache_hit": bool(payload.get("cache_hit")),
        "tags": orjson.dumps([str(t) for t in tags] if isinstance(tags, list) else []).decode(),
    }


_ID_NEEDLE = b'"litellm_call_id":"'


def looks_like_payload(record: bytes) -> bool:
    """A cheap check (no parsing) that a compact JSON record is a standard logging payload with a
    call id; a store that parses records itself drops the others before writing."""
    at = record.find(_ID_NEEDLE)
    return record[:1] == b"{" and at > 0 and record[at + len(_ID_NEEDLE) : at + len(_ID_NEEDLE) + 1] != b'"'


def capped_record(record: bytes, cap: int = DEFAULT_MAX_RECORD_BYTES) -> bytes:
    """``record`` itself when it fits in ``cap`` bytes (no parsing: the common case costs a
    ``len``), else the truncated form ``row_from_payload`` would store."""
    if len(record) <= cap:
        return record
    return _capped(record, orjson.loads(record), cap)[0].encode()


def _capped(record: bytes, payload: dict[str, Any], cap: int) -> tuple[str, bool]:
    if len(record) <= cap:
        return record.decode("utf-8", "replace"), False
    slim = dict(payload)
    slim["messages"] = slim["response"] = None
    slim[TRUNCATED_KEY] = {"original_bytes": len(record), "dropped": ["messages", "response"]}
    data = orjson.dumps(slim)
    if len(data) > cap:  # still too large (huge metadata): keep what the columns already hold
        data = orjson.dumps(
            {
                "litellm_call_id": payload["litellm_call_id"],
                TRUNCATED_KEY: {"original_bytes": len(record), "dropped": ["*"]},
            }
        )
    return data.decode(), True
