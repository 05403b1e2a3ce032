"""The running call's fact sheet: what the pipeline learns about a call while it runs.

A ``CallRecord`` is opened when a call that someone listens to starts, and filled as the call
goes (request sent, raw answer, final response, cost, error). It is mutable and private to the
pipeline. At the terminal event it is frozen into a ``CallSummary`` (``summary()``), which is
what every reader of the finished call gets; after that the record is never changed.

Before the end (pre, post and stream events) callbacks' ``kwargs`` are built from the record
itself (``kwargs.build_kwargs`` reads both through ``protocols.CallFacts``): a summary of a call
still running would be neither final nor cheap.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

import orjson

from .._secrets import mask_headers, mask_key, scrub
from .data import copy_data, encode_parts, plain, snapshot, thaw
from .encoding import dumps_any_keys, json_default
from .payload import build_payload
from .summary import CallSummary, freeze, take_defaults

__all__ = ["CallRecord", "copy_data", "encode_unheard_answer", "encoded_answer"]


# the last response a record encoded as plain ``orjson.dumps`` does (no default, text keys) and
# that JSON, for a call heard only by the store (its record borrows the metadata: no hook, no
# logger that could change the answer holds it): the proxy writes those bytes as the answer's body
# when it answers with that very object (``encoded_answer``) instead of encoding it a second time.
# The object is held, so its id cannot be reused by another while it is here; one tuple, swapped
# whole (any thread may write it).
_last_plain: tuple[Any, bytes | None] = (None, None)


def encoded_answer(response: Any) -> bytes | None:
    """``orjson.dumps(response)`` when the call that returned ``response`` encoded it already
    (its record's snapshot, the same bytes), else None. Only for an answer nobody changed since
    the call returned it (the proxy: no post-call hook, not translated to another API)."""
    obj, data = _last_plain
    return data if obj is response else None


def encode_unheard_answer(response: dict[str, Any]) -> bytes | None:
    """``orjson.dumps(response)`` (no default, text keys), kept for ``encoded_answer`` as a
    record heard only by the store keeps it; None when orjson needs help with it. For a call
    heard only by the store that keeps no record at all (``_call.Call``, its facts line)."""
    global _last_plain
    try:
        data = orjson.dumps(response)
    except TypeError:
        return None
    _last_plain = (response, data)
    return data


# one lock for every record's freeze (quick, and rarely contended): a lock per call costs more
_freeze_lock = threading.Lock()
# keeps the first litellm_params stored when two threads build a record's at the same time
_litellm_params_lock = threading.Lock()


class CallRecord:
    """Everything known about one running call; see the module docstring."""

    # facts filled as the call goes; until then the class's defaults (``_FACT_DEFAULTS``)
    body_snapshot: tuple[bytes | None, Any] = (None, None)
    attempt = 0
    original_response: str | None = None
    response: Any = None  # the final (or, for a cut stream, partial) response object
    response_json: bytes | None = None
    response_id: str | None = None
    usage: dict[str, Any] | None = None
    cost: float | None = None
    cost_breakdown: dict[str, float] | None = None
    cost_reason: str | None = None
    price_key: str | None = None
    completion_start: float | None = None
    end: float | None = None
    error: BaseException | None = None
    traceback: str | None = None
    cache_hit = False
    cache_key: str | None = None
    saved_cache_cost = 0.0
    stream_status: str | None = None  # complete | abandoned | broken
    response_model: str | None = None
    status: str | None = None
    overhead_ms: float | None = None
    _summary: CallSummary | None = None
    user: Any = None
    api_base: str | None = None
    api_key_masked: str | None = None
    redact_all = False
    raw_request = False
    model_id: str | None = None
    model_group: str | None = None
    # made on first use: encoded request parts per (attempt, redact), and per callback the tail
    # of its async delivery chain (touched only on the callback loop). Fewer than 30 instance
    # attributes keep CPython's compact shared-key layout for the record's attribute accesses.
    _parts_cache: dict[tuple[Any, ...], dict[str, Any]] | None = None
    tails: dict[int, Any] | None = None
    # the caller's metadata dict itself, not a copy, until the record is frozen or kept past
    # the call (``borrow_metadata``)
    _metadata_borrowed = False

    def __init__(
        self,
        *,
        call_type: str,
        model: str,
        provider: str,
        messages: Any,
        optional_params: dict[str, Any],
        litellm_params: dict[str, Any] | Callable[[], dict[str, Any]],
        metadata: dict[str, Any],
        stream: bool,
        user: Any,
        call_id: str,
        trace_id: str,
        start: float,
        is_async: bool,
        api_base: str | None = None,
        api_key: str | None = None,
        redact_all: bool = False,
        raw_request: bool = False,
        borrow_metadata: bool = False,
    ) -> None:
        """``borrow_metadata``: keep the caller's metadata dict, not a copy, until the summary is
        frozen (``own_metadata``). Only for a call whose terminal event comes before it returns
        to its caller and that nobody reads before then (``dispatch.Plan.takes_records``): the
        store's facts are then read from the dict as it is at the end, unchanged since the start,
        and a deep copy of the proxy's ~21 metadata fields (~17,000 instructions) is saved."""
        self.call_type = call_type
        self.model = model
        self.provider = provider
        # snapshotted as JSON: the caller may change its list later (the setter's work, without
        # the property's call)
        self.messages_snapshot = snapshot(messages)
        # a call without parameters (most proxy requests) need not go through the copy (~2,500
        # instructions for an empty dict)
        self.optional_params = (
            {} if type(optional_params) is dict and not optional_params else copy_data(optional_params)
        )
        self.litellm_params_source = litellm_params
        if borrow_metadata:
            self.metadata = metadata
            self._metadata_borrowed = True
        else:
            self.metadata = copy_data(metadata)
        self.stream = stream
        self.call_id = call_id
        self.trace_id = trace_id
        self.start = start
        self.is_async = is_async
        # what is usually the default stays the class's (see the class body)
        if user is not None:
            self.user = user
        if api_base:
            self.api_base = api_base
        if api_key:
            self.api_key_masked = mask_key(api_key)
        if redact_all:
            self.redact_all = True
        if raw_request:
            self.raw_request = True  # metadata["raw_request"] in litellm_params (log_raw_request_response)
        # filled as the call goes (the rest start as the class's defaults above: setting ~25
        # attributes on every call costs more than one dict merge at the freeze)
        self.request_headers: dict[str, Any] = {}
        self.hidden_params: dict[str, Any] = {}

    # ---- snapshots ----
    @property
    def messages(self) -> Any:
        return thaw(*self.messages_snapshot)

    @messages.setter
    def messages(self, value: Any) -> None:
        self.messages_snapshot = snapshot(value)

    @property
    def litellm_params(self) -> dict[str, Any]:
        """Built on first use, off the caller's path (a factory is passed in). Two callback
        threads may read it first at once: each may build it (building under the lock made
        them wait on each other, measured dearer), but only the first dict stored is kept and
        every reader gets that one. (Reading the attribute twice let one thread call the dict
        the other had just stored: a hook failed, its log line lost.)"""
        source = self.litellm_params_source
        if not callable(source):
            return source
        built = source()
        with _litellm_params_lock:  # only the compare-and-store: never held while building
            current = self.litellm_params_source
            if callable(current):
                self.litellm_params_source = current = built
        return current  # type: ignore[no-any-return]

    @property
    def request_body(self) -> Any:
        return thaw(*self.body_snapshot)

    @property
    def response_snapshot(self) -> dict[str, Any] | None:
        return orjson.loads(self.response_json) if self.response_json else None  # type: ignore[no-any-return]

    # ---- filled by the pipeline ----
    def set_request(
        self,
        body: dict[str, Any] | None,
        headers: dict[str, Any],
        api_base: str | None,
        encoded: bytes | None = None,
    ) -> None:
        """``encoded``: the body's JSON when the request has it already (then it is the snapshot)."""
        if encoded is not None:
            self.body_snapshot = (encoded, None)
        else:
            self.body_snapshot = snapshot(body) if body is not None else (None, None)
        self.request_headers = mask_headers(headers)
        if api_base:
            self.api_base = api_base

    def finish_success(self, response: Any, end: float) -> None:
        self.status = "success"
        self.response = response
        self._snapshot_response(response)
        self.end = end
        if self.completion_start is None:
            self.completion_start = end
        self._resolve_litellm_params()

    def _resolve_litellm_params(self) -> None:
        """Let ``litellm_params`` stop needing the call, at the end. Its factory reads the call,
        and the call holds this record: a record (and the summary frozen from it) that kept such
        a factory would close a reference cycle, which only the garbage collector frees. With a
        logger on, that cycle per call made the collector run every few calls on the proxy's
        event loop (~30,000 instructions a call, docs/store.md "Cost"). A factory with
        ``detach()`` (the call's) keeps what it reads and lets go of the call, so the dict is
        still built only if someone reads it (most calls: nobody; the payload does not); any
        other factory is built now. The values are the ones a later read would see: the call
        is over."""
        source = self.litellm_params_source
        if callable(source):
            detach = getattr(source, "detach", None)
            if detach is not None:
                detach()
            else:
                self.litellm_params_source = source()

    def finish_failure(self, error: BaseException, end: float, partial: Any = None) -> None:
        self._resolve_litellm_params()
        self.status = "failure"
        self.error = error
        self.traceback = scrub("".join(traceback.format_exception(type(error), error, error.__traceback__)))
        self.end = end
        if partial is not None:
            self.response = partial
            self._snapshot_response(partial)

    def _snapshot_response(self, response: Any) -> None:
        """Encode the response now: the caller may change the object after the call returns."""
        if not isinstance(response, dict):
            return
        global _last_plain
        self.response_id = response.get("id")
        try:  # plain first: the bytes the proxy's answer would be (``encoded_answer``)
            self.response_json = data = orjson.dumps(response)
        except TypeError:
            try:
                self.response_json = dumps_any_keys(response, json_default)
            except TypeError:
                self.response_json = orjson.dumps(plain(response), default=json_default)
        else:
            if self._metadata_borrowed:  # heard only by the store (no hook holds the answer)
                _last_plain = (response, data)

    # ---- what kwargs of the events before the end read ----
    def encoded_parts(self, redact: bool) -> dict[str, Any]:
        """The request parts kwargs hands out, encoded once per (attempt, redact)."""
        key = (self.attempt, redact, self.body_snapshot != (None, None))
        cache = self._parts_cache
        if cache is None:
            cache = self._parts_cache = {}
        parts = cache.get(key)
        if parts is None:
            parts = cache[key] = encode_parts(
                self.messages_snapshot,
                self.body_snapshot,
                self.request_headers,
                self.optional_params,
                self.litellm_params,
                redact,
                self.api_base if self.raw_request else None,
                self.raw_request,
            )
        return parts

    # ---- the end ----
    def summary(self) -> CallSummary:
        """The call's frozen summary, built once, after the terminal event (see ``summary.py``)."""
        built = self._summary
        if built is None:
            with _freeze_lock:
                built = self._summary
                if built is None:
                    built = self._summary = self._freeze()
        return built

    def own_metadata(self) -> None:
        """Replace a borrowed metadata dict by the record's own copy (before the record outlives
        its call, or is frozen)."""
        if self._metadata_borrowed:
            self.metadata = copy_data(self.metadata)
            self._metadata_borrowed = False

    def _freeze(self) -> CallSummary:
        self.own_metadata()
        # only what the call set: the defaults are the summary's class attributes (``take_defaults``)
        return freeze(vars(self).copy(), build_payload)


# the facts a record holds as class defaults until the call sets them (``freeze`` needs them all)
_FACT_DEFAULTS = {
    name: value
    for name, value in vars(CallRecord).items()
    if not name.startswith("__") and not callable(value) and not isinstance(value, property)
}
take_defaults(_FACT_DEFAULTS)
