"""A finished call's facts as a compact record, from which its standard logging payload is built
later, in another process: the store's writer process (``loggers/store_process.py``).

Building the payload (~45k instructions) and encoding it (~35k) is most of what the store logger
costs the serving process; the facts the payload is made of encode in a fraction of that (the
messages and the response are already JSON). ``facts_record(summary)`` gives that record, or None
for a call whose payload needs anything only this process has or knows: then the payload is
built here as before. ``payload_from_facts(record)`` builds the payload's JSON from it, byte for
byte what ``summary.payload_json()`` gives here (tests/test_store_process.py holds them
equal): the same ``build_payload`` runs on a summary frozen from the same values.

Deferred only when nothing about the payload depends on this process:

* a successful call (a failure's text is scrubbed with secrets this process remembered), not a
  cache hit (its id carries the time it is built), not redacted;
* metadata that needs no masking (``payload._masked_metadata`` leaves it as it is, checked with
  every secret this process knows; the builder's check in the other process knows fewer, so it
  leaves it as it is too), tags that are a list of strings (nothing to flag);
* every value JSON as it is (``orjson.dumps`` without a default: text keys, no sets, no objects):
  what the payload's encoder would write for it is then what the builder reads back.

The record is one line of JSON, an array whose first item is ``FACTS_TAG``, so a record can be
told from a payload (a JSON object) by its first byte; the spool keeps it as it keeps payloads.
The messages' and the response's JSON are its last two items, written as they are (orjson's
output holds no newline, checked): not decoded to text and escaped again as strings (measured:
~10,700 instructions less for a 2.4 kB conversation and a 1.2 kB answer, about even for a
one-line question), and read back to the very bytes by slicing, with the two lengths that follow
the tag; the line is still JSON as a whole. A record of the first format (``FACTS_TAG_V1``: both carried as strings), which
a spool written by the previous version holds, is still read.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any

import orjson

from . import record as _record  # noqa: F401 - sets the summary's defaults (summary.take_defaults)
from .payload import _masked_metadata, build_payload, request_tags
from .summary import freeze

if TYPE_CHECKING:
    from .record import CallRecord
    from .summary import CallSummary

FACTS_TAG = "lmgate.facts/2"
# the first format: the messages' and the response's JSON as strings (read, never written now)
FACTS_TAG_V1 = "lmgate.facts/1"
# a record starts with these bytes, then the two lengths: b'["lmgate.facts/2",12,345,'
_PREFIX = orjson.dumps([FACTS_TAG])[:-1] + b","
# the summary's attributes carried as they are, in the record's order
_PLAIN = (
    "call_id",
    "trace_id",
    "call_type",
    "stream",
    "stream_status",
    "status",
    "start",
    "end",
    "completion_start",
    "overhead_ms",
    "model",
    "provider",
    "response_model",
    "model_id",
    "model_group",
    "api_base",
    "cost",
    "cost_reason",
    "price_key",
    "cache_key",
    "saved_cache_cost",
    "user",
    "response_id",
    "metadata",
)
_plain_of = attrgetter(*_PLAIN)  # a tuple of them, read in C
# then: usage, cost_breakdown, optional_params, the additional headers; then (format 2) the
# messages' JSON and the response's JSON (null for none) as they are, their lengths before the
# summary's attributes; (format 1) the two as strings, after the headers
_LENGTH = 1 + len(_PLAIN) + 6
_HEAD_LENGTH = 1 + 2 + len(_PLAIN) + 4


def facts_record(s: CallSummary) -> bytes | None:
    """The call's facts as one compact JSON line, or None when its payload must be built here."""
    if s.error is not None or s.cache_hit or s.redact_all:
        return None
    usage, cost_breakdown, optional_params, _, hidden = s.encodable()
    return _facts(s, usage, cost_breakdown, optional_params, hidden)


def facts_record_of(record: CallRecord) -> bytes | None:
    """``facts_record`` of the summary ``record`` would freeze into, read from the record itself
    (the same bytes: tests/test_store_process.py), at its terminal event; None also for a record
    whose summary would differ from it (not a finished success): freezing one costs more than
    these facts' encoding, and a sink that only wants the facts need not pay for it."""
    if (
        record.status != "success"
        or record.end is None
        or record.error is not None
        or record.cache_hit
        or record.redact_all
        or record._summary is not None  # frozen already: the summary's payload may be built
    ):
        return None
    return _facts(record, record.usage, record.cost_breakdown, record.optional_params, record.hidden_params)


def success_facts(
    call_id: str,
    trace_id: str,
    call_type: str,
    start: float,
    end: float,
    model: str,
    provider: str,
    response_model: Any,
    model_id: Any,
    model_group: Any,
    api_base: str | None,
    cost: float | None,
    cost_reason: str | None,
    price_key: str | None,
    user: Any,
    response_id: Any,
    metadata: Any,
    usage: Any,
    cost_breakdown: Any,
    optional_params: Any,
    additional_headers: Any,
    raw_messages: bytes | None,
    response_json: bytes | None,
) -> bytes | None:
    """The facts line of a plain successful call — not streamed, not from a cache, not redacted,
    no time to first token of its own — from its values as the call holds them when it succeeds,
    with no ``CallRecord`` (``_call.Call``, a call heard only by the store): the bytes
    ``facts_record_of`` gives for the record such a call would have finished with
    (tests/test_store_facts_path.py holds them equal), or None when its payload must be built
    here. The facts such a call leaves at their defaults are written as those defaults."""
    # the record's items as ``_line`` takes them, in one list (no tuple of _PLAIN's values to
    # unpack into it): the tag and the two lengths (set there); in _PLAIN's order, stream,
    # stream_status and status, completion_start (its end) and overhead_ms, cache_key and
    # saved_cache_cost as a plain success leaves them; the mappings; the two JSON (set there)
    return _line(
        raw_messages,
        response_json,
        metadata,
        [
            FACTS_TAG,
            0,
            0,
            call_id,
            trace_id,
            call_type,
            False,
            None,
            "success",
            start,
            end,
            end,
            None,
            model,
            provider,
            response_model,
            model_id,
            model_group,
            api_base,
            cost,
            cost_reason,
            price_key,
            None,
            0.0,
            user,
            response_id,
            metadata,
            usage,
            cost_breakdown,
            optional_params,
            additional_headers,
            None,
            None,
        ],
    )


def _facts(s: Any, usage: Any, cost_breakdown: Any, optional_params: Any, hidden: Any) -> bytes | None:
    return _line(
        s.messages_snapshot[0],
        s.response_json,
        s.metadata,
        [
            FACTS_TAG,
            0,
            0,
            *_plain_of(s),
            usage,
            cost_breakdown,
            optional_params,
            (hidden or {}).get("additional_headers") or {},
            None,
            None,
        ],
    )


def _line(
    raw_messages: bytes | None, response_json: bytes | None, metadata: Any, items: list[Any]
) -> bytes | None:
    """The line of these facts, or None. ``items``: the record's items, the two lengths (second
    and third) and the two JSON (last two) left as placeholders, set here once the line is
    known to be made."""
    if (
        raw_messages is None
        or not isinstance(metadata, dict)
        or (metadata.get("tags") is not None and request_tags(metadata)[1] is not None)
        or _masked_metadata(metadata) is not metadata
    ):
        return None
    response_json = response_json or b"null"  # a response is an object: never "null" itself
    # a newline would cut the spool's line: orjson writes none, but a line is a line (10, not
    # b"\n": a bytes needle is first tried as an int, which raises and clears a TypeError)
    if 10 in raw_messages or 10 in response_json:
        return None
    items[1] = len(raw_messages)
    items[2] = len(response_json)
    # the two JSON written as they are by the one encoding (orjson copies a Fragment's bytes): the
    # bytes of encoding the rest and joining them on, without the slice and the join (measured:
    # ~600 instructions less a line)
    items[-2] = orjson.Fragment(raw_messages)
    items[-1] = orjson.Fragment(response_json)
    try:
        return orjson.dumps(items)
    except TypeError:  # a value orjson takes only with help: built here
        return None


def is_facts_record(record: bytes) -> bool:
    return record[:1] == b"["


def payload_from_facts(record: bytes) -> bytes:
    """The standard logging payload's JSON for a ``facts_record``; ValueError when it is not one."""
    return built_from_facts(record)[1]


def built_from_facts(record: bytes) -> tuple[CallSummary, bytes]:
    """The summary of a ``facts_record`` and its payload's JSON, built; ValueError for anything
    that is not a facts record this version can build (a damaged spool line is dropped with
    that reason, never retried for ever)."""
    summary = summary_from_facts(record)
    try:
        return summary, summary.payload_json()
    except Exception as error:  # a value of the wrong type where the builder reads it
        raise ValueError(
            f"not a call's facts record ({FACTS_TAG}): {type(error).__name__}: {error}"
        ) from error


def summary_from_facts(record: bytes) -> CallSummary:
    """The summary a ``facts_record`` was taken from, as far as its payload goes (its
    ``payload()`` and ``payload_json()``); ValueError when ``record`` is not a facts record (of
    this format or the first)."""
    if record.startswith(_PREFIX):
        facts, messages_json, response_json = _split(record)
    else:  # the first format (a spool left by the previous version), or not a record at all
        facts = orjson.loads(record)
        if not isinstance(facts, list) or len(facts) != _LENGTH or facts[0] != FACTS_TAG_V1:
            raise ValueError(f"not a call's facts record ({FACTS_TAG})")
        *facts, messages, response = facts
        if not isinstance(messages, str) or not (response is None or isinstance(response, str)):
            raise ValueError(f"not a call's facts record ({FACTS_TAG_V1})")
        messages_json, response_json = messages.encode(), (response.encode() if response else None)
        facts[1:1] = (None, None)  # where format 2 has the lengths
    values: dict[str, Any] = dict(zip(_PLAIN, facts[3 : 3 + len(_PLAIN)], strict=True))
    usage, cost_breakdown, optional_params, additional_headers = facts[3 + len(_PLAIN) :]
    if not isinstance(values["metadata"], dict):
        raise ValueError(f"not a call's facts record ({FACTS_TAG})")
    values.update(
        usage=usage,
        cost_breakdown=cost_breakdown,
        optional_params=optional_params,
        request_headers={},
        hidden_params={"additional_headers": additional_headers},
        messages_snapshot=(messages_json, None),
        response_json=response_json,
        error=None,
        traceback=None,
        cache_hit=False,
        redact_all=False,
        litellm_params_source={},
    )
    return freeze(values, build_payload)


def _split(record: bytes) -> tuple[list[Any], bytes, bytes | None]:
    """A format 2 record's other facts, its messages' JSON and its response's (None for none):
    the two are the record's tail, their lengths its second and third items. ValueError for a
    line that does not add up (a damaged spool line)."""
    bad = ValueError(f"not a call's facts record ({FACTS_TAG})")
    start = len(_PREFIX)
    try:
        comma = record.index(b",", start)
        after = record.index(b",", comma + 1)
        messages_length, response_length = int(record[start:comma]), int(record[comma + 1 : after])
    except ValueError:
        raise bad from None
    end = len(record) - 1  # the closing bracket
    response_at = end - response_length
    messages_at = response_at - 1 - messages_length
    if (
        messages_length <= 0
        or response_length <= 0
        or messages_at - 1 <= after
        or record[end:] != b"]"
        or record[response_at - 1 : response_at] != b","
        or record[messages_at - 1 : messages_at] != b","
    ):
        raise bad
    facts = orjson.loads(record[: messages_at - 1] + b"]")
    if not isinstance(facts, list) or len(facts) != _HEAD_LENGTH:
        raise bad
    response = record[response_at:end]
    return facts, record[messages_at : response_at - 1], (None if response == b"null" else response)


__all__ = [
    "FACTS_TAG",
    "FACTS_TAG_V1",
    "built_from_facts",
    "facts_record",
    "facts_record_of",
    "is_facts_record",
    "payload_from_facts",
    "success_facts",
    "summary_from_facts",
]
