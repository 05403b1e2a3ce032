"""The frozen summary of one call: what every reader of a finished call gets.

At the terminal event (success or failure) the running call's ``CallRecord`` is frozen into one
``CallSummary``: typed, immutable (assigning a field raises ``dataclasses.FrozenInstanceError``),
its data held as JSON snapshots or private copies taken while the call ran. Everything that
reads a finished call reads this: sinks on the caller's path (``protocols.SummarySink``), the
standard logging payload (``payload.build_payload``) and, through it, the ``kwargs`` key
``standard_logging_object`` (``kwargs.build_kwargs``).

Built once per call, on first need (``CallRecord.summary()``): on the caller's path when a sink
takes it there, otherwise on the callback thread where a callback first reads
``kwargs["standard_logging_object"]`` — so a call whose callbacks read no payload never pays for
it. The encoded payload is kept with it (``payload_json``): every sink and callback shares one
encoding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import FrozenInstanceError
from types import MappingProxyType
from typing import Any

import orjson

from .data import encode_parts, thaw
from .encoding import encode_record, encode_record_flagged
from .redact import redact_messages, redact_response

# what the record holds that is not a fact of the call
_RECORD_ONLY = ("_parts_cache", "_summary", "tails", "_metadata_borrowed")


class CallSummary:
    """One finished call. Times are POSIX seconds; ``api_base`` and ``api_key_masked`` are masked;
    mappings are read-only views of the call's private copies; snapshots read back as fresh copies.

    Immutable: setting or deleting an attribute raises ``dataclasses.FrozenInstanceError``. Made
    by ``freeze`` from the record's attributes in one dict copy (a dataclass's ``__init__`` of
    these ~45 fields costs several times more, on every call someone listens to).
    """

    # ids
    call_id: str
    trace_id: str
    call_type: str
    # timings
    start: float
    end: float
    completion_start: float | None
    overhead_ms: float | None
    # model, provider, deployment
    model: str
    provider: str
    response_model: str | None
    model_id: str | None
    model_group: str | None
    api_base: str | None
    api_key_masked: str | None
    # outcome
    status: str  # success | failure
    stream: bool
    stream_status: str | None  # complete | abandoned | broken (streams only)
    error: BaseException | None
    traceback: str | None
    # usage and cost
    cost: float | None
    cost_reason: str | None
    price_key: str | None
    # cache
    cache_hit: bool
    cache_key: str | None
    saved_cache_cost: float
    # request
    user: Any
    is_async: bool
    attempt: int
    original_response: str | None
    metadata: Any
    redact_all: bool
    # snapshots: (JSON, None), or (None, a private copy) for data orjson cannot encode
    messages_snapshot: tuple[bytes | None, Any]
    body_snapshot: tuple[bytes | None, Any]
    response_json: bytes | None
    response_id: str | None
    # the response object the caller got (shared with it: read-only), for typed copies
    response: Any
    # litellm_params is built on first use (a factory is passed), off the caller's path
    litellm_params_source: dict[str, Any] | Callable[[], dict[str, Any]]
    # what is derived from the summary and kept with it (payload, its JSON, encoded parts)
    _memo: dict[Any, Any]
    # payload.build_payload, handed in by the record (the payload adapter depends on the summary,
    # not the other way round)
    _build_payload: Callable[[CallSummary], dict[str, Any]]

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}: a CallSummary is immutable")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}: a CallSummary is immutable")

    def __repr__(self) -> str:
        return f"<CallSummary {self.call_id} {self.call_type} {self.model} {self.status}>"

    # ---- mappings: read-only views of the call's private copies (made when read, not at freeze) ----
    @property
    def usage(self) -> Mapping[str, Any] | None:
        value = self.__dict__.get("usage")
        return MappingProxyType(value) if value is not None else None

    @property
    def cost_breakdown(self) -> Mapping[str, float] | None:
        value = self.__dict__.get("cost_breakdown")
        return MappingProxyType(value) if value is not None else None

    @property
    def optional_params(self) -> Mapping[str, Any]:
        return MappingProxyType(self.__dict__["optional_params"])

    @property
    def request_headers(self) -> Mapping[str, Any]:
        return MappingProxyType(self.__dict__["request_headers"])

    @property
    def hidden_params(self) -> Mapping[str, Any]:
        return MappingProxyType(self.__dict__["hidden_params"] or {})

    def encodable(self) -> tuple[Any, Any, Any, Any, Any]:
        """The call's own mappings behind ``usage``, ``cost_breakdown``, ``optional_params``,
        ``request_headers`` and ``hidden_params``, in that order (not read-only views: a view has
        no JSON form), for an adapter that encodes them. Never change them or hand them out."""
        d = self.__dict__
        return (
            d.get("usage"),
            d.get("cost_breakdown"),
            d["optional_params"],
            d["request_headers"],
            d["hidden_params"],
        )

    def summary(self) -> CallSummary:
        """Itself (a ``protocols.FinishedCall``, like the record it was frozen from)."""
        return self

    # ---- snapshots, read back as fresh copies ----
    @property
    def messages(self) -> Any:
        return thaw(*self.messages_snapshot)

    @property
    def request_body(self) -> Any:
        return thaw(*self.body_snapshot)

    @property
    def response_snapshot(self) -> dict[str, Any] | None:
        """A fresh plain copy of the response as the call ended."""
        return orjson.loads(self.response_json) if self.response_json else None  # type: ignore[no-any-return]

    @property
    def litellm_params(self) -> dict[str, Any]:
        memo = self._memo.get("litellm_params")
        if memo is None:
            source = self.litellm_params_source
            memo = self._memo["litellm_params"] = source() if callable(source) else source
        return memo  # type: ignore[no-any-return]

    # ---- what adapters share ----
    def encoded_parts(self, redact: bool) -> dict[str, Any]:
        key = ("parts", redact)
        parts = self._memo.get(key)  # type: ignore[call-overload]
        if parts is None:
            parts = encode_parts(
                self.messages_snapshot,
                self.body_snapshot,
                self.__dict__["request_headers"],
                self.__dict__["optional_params"],
                self.litellm_params,
                redact,
                self.api_base,
                self.__dict__.get("raw_request", False),
            )
            self._memo[key] = parts  # type: ignore[index]
        return parts  # type: ignore[no-any-return]

    def payload(self) -> dict[str, Any]:
        """The standard logging payload's parts, built once (large parts pre-encoded). Read it as
        ``payload_json()`` or as a dict of your own via ``payload.payload_copy``."""
        built = self._memo.get("payload")
        if built is None:
            # no lock: two threads that ask at the same moment (rare) both build it, and the
            # first one kept is the one every reader gets (setdefault is atomic)
            built = self._memo.setdefault("payload", self._build_payload(self))
        return built  # type: ignore[no-any-return]

    def payload_json_if_built(self) -> bytes | None:
        """The payload's JSON if a reader has encoded it already, else None (costs nothing)."""
        return self._memo.get("payload_json")  # type: ignore[no-any-return]

    def payload_json(self, redact: bool = False) -> bytes:
        """The standard logging payload as JSON, encoded once and shared by every reader; parts
        that cannot be encoded are replaced and named (``payload_flagged`` is then true).

        ``redact=True``: with messages and response text redacted, for a sink made with
        ``turn_off_message_logging=True`` (encoded for that reader; a call whose messages are
        off for everyone is redacted already)."""
        if redact and not self.redact_all:
            copy = orjson.loads(self.payload_json())
            copy["messages"] = redact_messages(copy["messages"])
            copy["response"] = redact_response(copy["response"])
            return encode_record(copy)
        data = self._memo.get("payload_json")
        if data is None:
            payload = self.payload()
            data, flagged = encode_record_flagged(payload)
            self._memo["payload_flagged"] = flagged or self._memo.get("payload_flagged", False)
            self._memo["payload_json"] = data
        return data  # type: ignore[no-any-return]

    @property
    def payload_flagged(self) -> bool:
        """Whether the payload names parts it could not take as given (``metadata.lmgate_encoding_errors``)."""
        memo = self._memo
        if "payload_json" not in memo:
            self.payload_json()
        return bool(memo.get("payload_flagged"))

    def flag_payload(self) -> None:
        """Called by the payload adapter when it left parts out of the payload."""
        self._memo["payload_flagged"] = True


def freeze(facts: dict[str, Any], build_payload: Callable[[CallSummary], dict[str, Any]]) -> CallSummary:
    """A summary of the record whose attributes are ``facts`` (a fresh dict of them: it becomes
    the summary's); ``build_payload`` makes its standard logging payload."""
    data = facts
    for name in _RECORD_ONLY:
        data.pop(name, None)
    if data.get("end") is None:
        data["end"] = data["start"]
    if not data.get("status"):
        data["status"] = "failure"
    data["_memo"] = {}
    data["_build_payload"] = build_payload
    summary = _new(CallSummary)
    _set(summary, "__dict__", data)
    return summary


def take_defaults(defaults: Mapping[str, Any]) -> None:
    """The facts a record leaves at their defaults (its class attributes) read the same on the
    summary: they become ``CallSummary``'s class attributes, so ``freeze`` copies only what the
    call set (merging ~35 defaults into every summary cost ~10,000 instructions a call). The
    mappings behind properties read their default themselves (``__dict__.get``)."""
    for name, value in defaults.items():
        if name in _RECORD_ONLY or isinstance(getattr(CallSummary, name, None), property):
            continue
        type.__setattr__(CallSummary, name, value)


_new = object.__new__
_set = object.__setattr__
