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

The record is a JSON array whose first item is ``FACTS_TAG``, so a record can be told from a
payload (a JSON object) by its first byte; the spool keeps it as it keeps payloads.
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

FACTS_TAG = "lmgate.facts/1"
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
# then: usage, cost_breakdown, optional_params, the additional headers, the messages' JSON and the
# response's JSON (as text: read back to the very bytes)
_LENGTH = 1 + len(_PLAIN) + 6


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


def _facts(s: Any, usage: Any, cost_breakdown: Any, optional_params: Any, hidden: Any) -> bytes | None:
    raw_messages = s.messages_snapshot[0]
    metadata = s.metadata
    if (
        raw_messages is None
        or not isinstance(metadata, dict)
        or (metadata.get("tags") is not None and request_tags(metadata)[1] is not None)
        or _masked_metadata(metadata) is not metadata
    ):
        return None
    response_json = s.response_json
    try:
        return orjson.dumps(
            [
                FACTS_TAG,
                *_plain_of(s),
                usage,
                cost_breakdown,
                optional_params,
                (hidden or {}).get("additional_headers") or {},
                raw_messages.decode(),
                response_json.decode() if response_json else None,
            ]
        )
    except (TypeError, UnicodeDecodeError):  # a value orjson takes only with help: built here
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
    ``payload()`` and ``payload_json()``); ValueError when ``record`` is not a facts record."""
    facts = orjson.loads(record)
    if not isinstance(facts, list) or len(facts) != _LENGTH or facts[0] != FACTS_TAG:
        raise ValueError(f"not a call's facts record ({FACTS_TAG})")
    values: dict[str, Any] = dict(zip(_PLAIN, facts[1 : 1 + len(_PLAIN)], strict=True))
    usage, cost_breakdown, optional_params, additional_headers, messages, response = facts[1 + len(_PLAIN) :]
    if not isinstance(messages, str) or not isinstance(values["metadata"], dict):
        raise ValueError(f"not a call's facts record ({FACTS_TAG})")
    values.update(
        usage=usage,
        cost_breakdown=cost_breakdown,
        optional_params=optional_params,
        request_headers={},
        hidden_params={"additional_headers": additional_headers},
        messages_snapshot=(messages.encode(), None),
        response_json=response.encode() if response else None,
        error=None,
        traceback=None,
        cache_hit=False,
        redact_all=False,
        litellm_params_source={},
    )
    return freeze(values, build_payload)


__all__ = [
    "FACTS_TAG",
    "built_from_facts",
    "facts_record",
    "facts_record_of",
    "is_facts_record",
    "payload_from_facts",
    "summary_from_facts",
]
