"""Enforcement of a virtual key's limits and budgets, and the spend it is charged.

Before a request goes to any provider, ``Enforcer.reserve`` builds its checks — the key's,
its team's and its user's rpm, tpm, parallel and budget limits (``limits.py``) — and takes
them in one atomic step, or refuses: a budget with 400 ``budget_exceeded``, a rate limit with
429 and ``Retry-After``. When the request ends (an answer, a failure, a stream that finished
or whose client left), ``settle`` gives back the reservation, charges the exact cost (the
``response_cost`` the logs carry) to the budget window the request started in, counts its
tokens, frees its parallel slot, and hands its ledger row to the ``SpendWriter``.

The reservation rule (``docs/keys.md`` "Budgets"): a request reserves its worst case — its
input at the dearest input price of the deployments that may answer it, plus its
``max_tokens`` (or ``max_completion_tokens``), times ``n``, at the dearest output price. A
request that names neither reserves the most any of those deployments can generate (their
models' ``max_output_tokens``: ``prices.json``, or a deployment's ``model_info``); when one of
them has no known maximum it reserves ``DEFAULT_MAX_TOKENS`` and is sent with that
``max_tokens`` (``output_cap``), so the provider cannot generate more than was reserved.
Input tokens are counted as the UTF-8 bytes of the messages and tools (a token is never
shorter than a byte) plus ``IMAGE_TOKENS`` per image.
A request whose worst case does not fit beside the requests in flight is refused, even if
its real cost would have fit: that is the one trade-off of never overrunning. The other API
formats are read through their chat translation (the Messages API's ``max_tokens``, the
Responses API's ``max_output_tokens``), legacy completions as sent (``worst_case``).

Budget windows (``budget_duration``) start when the key, team or user was created and every
``budget_duration`` after: fixed boundaries, the same for every instance. Without a
``budget_duration`` the budget never resets.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson

from ..control.durations import parse_duration
from .errors import ProxyError
from .limits import NANO, Check, Counters, Refusal

if TYPE_CHECKING:
    from .spend import SpendWriter

logger = logging.getLogger("lmgate.proxy")

LIMITS = "lmgate.limits"  # the request scope's entry: the caller's KeyLimits (set by virtual_keys.py)
# output tokens reserved for a request that names no max_tokens, when a model that may answer it
# has no known max_output_tokens: the request is then sent with this max_tokens (``output_cap``)
DEFAULT_MAX_TOKENS = 4096
IMAGE_TOKENS = 2000  # input tokens reserved per image part (more than any vendor bills for one image)


@dataclass(slots=True, frozen=True)
class Scope:
    """The limits of one key, team or user."""

    kind: str  # "key" | "team" | "user"
    id: str
    label: str  # how an error names it: Key=sk-...abcd, Team=…, User=…
    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None
    max_budget: float | None = None
    window_s: float | None = None  # budget_duration in seconds; None: the budget never resets
    anchor: float = 0.0  # where the windows start counting (the row's creation)
    soft_budget: float | None = None  # an alert (never a refusal) once per window past it
    # who owns it, as a soft-budget alert names them (proxy/alerts.py): a key's alias, team, user
    alias: str | None = None
    team_id: str | None = None
    user_id: str | None = None


@dataclass(slots=True, frozen=True)
class KeyLimits:
    """What a key's requests are checked against, computed once per cached key row."""

    token: str
    team_id: str | None
    user_id: str | None
    scopes: tuple[Scope, ...]
    budgeted: bool  # any scope has a budget: the worst case is computed only then
    soft: tuple[Scope, ...] = ()  # the scopes with a soft budget (watched at settlement)


@dataclass(slots=True)
class Reservation:
    # the ledger row's id when the call has none of its own (``Enforcer.request_id``: made
    # only then, not for every request)
    request_id: str
    limits: KeyLimits
    checks: list[Check]
    owners: list[Scope]  # the scope of each check
    started_at: float
    model: str
    end_user: str | None
    reserved: int = 0
    settled: bool = field(default=False)
    # the max_tokens the request must be sent with (it named none and a model that may answer
    # has no known maximum: ``DEFAULT_MAX_TOKENS`` was reserved); 0: sent as it is
    cap: int = 0
    # taken by the counters (``reserve_now`` in memory, else ``admit``): until then nothing is held
    admitted: bool = False


def _duration(value: Any, name: str) -> float | None:
    if not value:
        return None
    try:
        return parse_duration(value, name)
    except ValueError:
        logger.error("%s: %r is not a duration; the budget is treated as never resetting", name, value)
        return None


def key_limits(row: dict[str, Any]) -> KeyLimits:
    """The limits of a key's row as ``KeyStore.key`` returns it (with its team's and user's)."""
    scopes = [
        Scope(
            "key",
            row["token"],
            f"Key={row['key_name']}",
            rpm=row.get("rpm_limit"),
            tpm=row.get("tpm_limit"),
            parallel=row.get("max_parallel_requests"),
            max_budget=row.get("max_budget"),
            window_s=_duration(row.get("budget_duration"), "key budget_duration"),
            anchor=float(row.get("created_at") or 0.0),
            soft_budget=row.get("soft_budget"),
            alias=row.get("key_alias"),
            team_id=row.get("team_id"),
            user_id=row.get("user_id"),
        )
    ]
    if row.get("team_id") is not None:
        scopes.append(
            Scope(
                "team",
                row["team_id"],
                f"Team={row['team_id']}",
                rpm=row.get("team_rpm_limit"),
                tpm=row.get("team_tpm_limit"),
                max_budget=row.get("team_max_budget"),
                window_s=_duration(row.get("team_budget_duration"), "team budget_duration"),
                anchor=float(row.get("team_created_at") or 0.0),
                soft_budget=row.get("team_soft_budget"),
                alias=row.get("team_alias"),
                team_id=row["team_id"],
            )
        )
    user_budgeted = row.get("user_max_budget") is not None or row.get("user_soft_budget") is not None
    if row.get("user_id") is not None and user_budgeted:
        scopes.append(
            Scope(
                "user",
                row["user_id"],
                f"User={row['user_id']}",
                max_budget=row.get("user_max_budget"),
                window_s=_duration(row.get("user_budget_duration"), "user budget_duration"),
                anchor=float(row.get("user_created_at") or 0.0),
                soft_budget=row.get("user_soft_budget"),
                user_id=row["user_id"],
            )
        )
    kept = tuple(s for s in scopes if any(v is not None for v in (s.rpm, s.tpm, s.parallel, s.max_budget)))
    return KeyLimits(
        row["token"],
        row.get("team_id"),
        row.get("user_id"),
        kept,
        any(s.max_budget is not None for s in kept),
        tuple(s for s in scopes if s.soft_budget is not None),
    )


def _end_user_scope(end_user: str | None, customer: dict[str, Any] | None) -> Scope | None:
    if not end_user or not customer or customer.get("max_budget") is None:
        return None
    return Scope(
        "end_user",
        end_user,
        f"EndUser={end_user}",
        max_budget=float(customer["max_budget"]),
        window_s=_duration(customer.get("budget_duration"), "end user budget_duration"),
        anchor=float(customer.get("created_at") or 0.0),
    )


def window_of(scope: Scope, now: float) -> tuple[float, float]:
    """The budget window ``now`` falls in: (start, end); (0, 0) for a budget that never resets."""
    if not scope.window_s:
        return 0.0, 0.0
    start = scope.anchor + math.floor((now - scope.anchor) / scope.window_s) * scope.window_s
    return start, start + scope.window_s


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def _usd(nano: int | float) -> str:
    return f"{nano / NANO:.6f}".rstrip("0").rstrip(".")


class Enforcer:
    """Reserves before a call and settles after it, over ``counters`` (memory or Redis)."""

    def __init__(
        self,
        counters: Counters,
        writer: SpendWriter | None,
        prices: Callable[[str], tuple[Any, ...]],  # (input, output[, max output tokens]): group_prices
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counters = counters
        use_clock = getattr(counters, "use_clock", None)
        if use_clock is not None:  # leases expire and rates are measured on this clock too
            use_clock(clock)
        self.writer = writer
        self.prices = prices
        self._prices: dict[
            str, tuple[Any, ...]
        ] = {}  # ``prices``' answers, read by ``_worst`` without a call
        self.clock = clock
        self.settle_errors = 0
        # token → (its KeyLimits, valid until, valid from, checks, their scopes)
        self._templates: dict[str, tuple[KeyLimits, float, float, list[Check], list[Scope]]] = {}
        # request ids: unique across instances (a random prefix), cheap within one (a counter)
        self._prefix = os.urandom(6).hex() + "-"
        self._ids = itertools.count()

    # ---- before ----
    async def reserve(
        self,
        limits: KeyLimits,
        data: dict[str, Any],
        group: str,
        kind: str,
        end_user: str | None = None,
        customer: dict[str, Any] | None = None,
        sent: dict[str, Any] | None = None,
        api: str | None = None,
    ) -> Reservation:
        """``reserve_now``, then ``admit`` when the counters could not admit it at once."""
        res = self.reserve_now(limits, data, group, kind, end_user, customer, sent, api)
        if not res.admitted:
            await self.admit(res)
        return res

    def reserve_now(
        self,
        limits: KeyLimits,
        data: dict[str, Any],
        group: str,
        kind: str,
        end_user: str | None = None,
        customer: dict[str, Any] | None = None,
        sent: dict[str, Any] | None = None,
        api: str | None = None,
    ) -> Reservation:
        """The request's reservation, admitted at once when the counters can without waiting
        (in memory; with Redis, against this instance's slices): a reservation not ``admitted``
        holds nothing until ``admit`` (which may refuse it) has run. Synchronous: the common
        case costs no coroutine.

        ``customer``: the end user's row (``lmgate_customers``), whose budget is checked too.
        ``sent``: the request as the client sent it on another API (``api``, a format's route),
        when ``data`` is its chat translation."""
        now = self.clock()
        scope = _end_user_scope(end_user, customer) if customer else None
        if limits.budgeted or scope is not None:
            amount, cap = self._worst(data, group, kind, sent, api)
        else:
            amount = cap = 0
        cached = self._templates.get(limits.token)  # ``_checks``' cache, inline: once a request
        if cached is not None and cached[0] is limits and cached[2] <= now < cached[1]:
            checks, owners = cached[3], cached[4]
        else:
            checks, owners = self._checks(limits, now)
        if scope is not None:  # per request, not cached with the key's
            start, end = window_of(scope, now)
            limit = _nano_down(scope.max_budget or 0.0)
            checks = [
                *checks,
                Check("budget", f"bud:end_user:{scope.id}:{int(start)}", limit, end and end + 3600),
            ]
            owners = [*owners, scope]
        if not checks:
            admitted = True
        else:
            try:
                admitted = self.counters.admit_now(checks, amount, now)
            except Exception as error:
                raise _unavailable(error) from None
        # every field by position (a keyword costs the call its own dict): settled=False
        return Reservation("", limits, checks, owners, now, group, end_user, amount, False, cap, admitted)

    async def admit(self, res: Reservation) -> None:
        """Take a reservation ``reserve_now`` could not admit at once: from Redis, after
        starting a budget's window from the ledger when it must; or refuse it (``ProxyError``)."""
        checks, owners, amount, now = res.checks, res.owners, res.reserved, res.started_at
        for _ in range(len(checks) + 1):  # each budget may need its window started once
            try:
                refusal = await self.counters.admit(res.request_id, checks, amount, now)
            except Exception as error:
                raise _unavailable(error) from None
            if refusal is None:
                res.admitted = True
                return
            if not refusal.need_seed:
                raise self._refused(checks[refusal.check], owners[refusal.check], refusal, amount, now)
            await self._seed(checks[refusal.check], owners[refusal.check], now)
        raise ProxyError(
            503, "the budget counters could not be started; try again", code="limits_unavailable"
        )

    def _worst(
        self, data: dict[str, Any], group: str, kind: str, asked: dict[str, Any] | None, api: str | None
    ) -> tuple[int, int]:
        """``worst_case`` in nano-dollars and ``output_cap``, in one pass for the common case:
        a chat request (or another API's chat translation) to a group whose deployments set no
        output length of their own. The same rule, the same figures (tests/test_limits.py holds
        both paths to them): every budgeted request runs this."""
        prices = self._prices.get(group)
        if prices is None:
            if len(self._prices) >= 10_000:  # groups are the config's, but bounded all the same
                self._prices.clear()
            prices = self._prices[group] = self.prices(group)
        if kind != "chat" or len(prices) > 3 or (api == "completions" and asked is not None):
            return (
                _nano_up(self.worst_case(data, group, kind, asked, api)),
                self.output_cap(data, group, kind, asked, api),
            )
        get = data.get
        sent = orjson.dumps([get("messages"), get("tools"), get("functions")])
        input_tokens = len(sent)
        # both names start so, and most requests have neither: one search instead of two counts
        # (``in`` would cost as much: bytes try the needle as an int first, raising a TypeError)
        if sent.find(b'"i') >= 0:
            input_tokens += IMAGE_TOKENS * (sent.count(b'"image_url"') + sent.count(b'"input_audio"'))
        named = get("max_tokens")
        if type(named) is int and named > 0 and get("max_completion_tokens") is None and get("n") is None:
            # the usual request (``_asked_output``'s first case, one choice): nothing else to read
            return math.ceil((input_tokens * prices[0] + named * prices[1]) * NANO), 0
        named = _asked_output(data)
        most = prices[2] if len(prices) > 2 else None
        out_price = prices[1]
        if named is not None:
            out, cap = named, 0
        elif most:
            out, cap = most, 0
        else:  # no known maximum: the default is reserved and sent (unless output costs nothing)
            out, cap = DEFAULT_MAX_TOKENS, DEFAULT_MAX_TOKENS if out_price else 0
        n = get("n")
        if n is not None and isinstance(n, int) and not isinstance(n, bool) and n > 0:
            out *= n
        return math.ceil((input_tokens * prices[0] + out * out_price) * NANO), cap

    def worst_case(
        self,
        data: dict[str, Any],
        group: str,
        kind: str,
        asked: dict[str, Any] | None = None,
        api: str | None = None,
    ) -> float:
        """The most this request can cost, in USD (the reservation rule, in the module's text).

        ``data`` is a chat request: the Anthropic Messages and Responses APIs are read through
        their translation (``max_tokens`` and ``max_output_tokens`` become its ``max_tokens``,
        system/instructions, tools and a ``previous_response_id``'s conversation its input).
        Legacy completions are read as sent (``asked``): a pass-through sends what the chat
        translation leaves out — several prompts, token ids, ``best_of``."""
        prices = self.prices(group)
        in_price, out_price = prices[0], prices[1]
        if kind == "embedding":
            sent = orjson.dumps(data.get("input"))
            return len(sent) * in_price
        # what a request without max_tokens may generate: the models' maximum, else the default
        # (which ``output_cap`` then sends as its max_tokens)
        most = (prices[2] if len(prices) > 2 else None) or DEFAULT_MAX_TOKENS
        if api == "completions" and asked is not None:
            return _completions_worst_case(asked, in_price, out_price, most)
        sent = orjson.dumps([data.get("messages"), data.get("tools"), data.get("functions")])
        images = sent.count(b'"image_url"') + sent.count(b'"input_audio"')
        input_tokens = len(sent) + IMAGE_TOKENS * images
        out = _asked_output(data)
        if out is None:
            out = most
        # a deployment's own max_tokens / max_completion_tokens is sent unless the request names
        # that same parameter, and the provider may read it rather than the request's other one
        for name, value in (prices[3] if len(prices) > 3 else {}).items():
            if _asked_output({name: data.get(name)}) is None:
                out = max(out, value)
        n = data.get("n")
        choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
        return input_tokens * in_price + out * choices * out_price

    def output_cap(
        self,
        data: dict[str, Any],
        group: str,
        kind: str,
        asked: dict[str, Any] | None = None,
        api: str | None = None,
    ) -> int:
        """The max_tokens a budgeted request must be sent with: ``DEFAULT_MAX_TOKENS`` when it
        names none and a deployment that may answer it (at a price) has no known maximum, so
        the worst case reserved is one the provider cannot exceed; 0 otherwise."""
        if kind == "embedding":
            return 0
        prices = self.prices(group)
        if not prices[1] or (len(prices) > 2 and prices[2]):
            return 0  # output costs nothing, or every model's maximum is known and reserved
        named = _asked_output(asked) if api == "completions" and asked is not None else _asked_output(data)
        return 0 if named is not None else DEFAULT_MAX_TOKENS

    def _checks(self, limits: KeyLimits, now: float) -> tuple[list[Check], list[Scope]]:
        """The key's checks at ``now``: the same objects until the minute or a budget window
        changes (a cache per key, so a request allocates none)."""
        cached = self._templates.get(limits.token)
        if cached is not None and cached[0] is limits and now < cached[1] and now >= cached[2]:
            return cached[3], cached[4]
        minute = int(now // 60)
        minute_end = (minute + 1) * 60.0
        valid_until, valid_from = minute_end, minute * 60.0
        checks: list[Check] = []
        owners: list[Scope] = []
        for s in limits.scopes:
            first = len(checks)
            scope = f"{s.kind}:{s.id}"
            if s.rpm is not None:
                checks.append(Check("rpm", f"rpm:{scope}:{minute}", s.rpm, minute_end + 60))
            if s.tpm is not None:
                checks.append(Check("tpm", f"tpm:{scope}:{minute}", s.tpm, minute_end + 60))
            if s.parallel is not None:
                checks.append(Check("parallel", f"par:{scope}", s.parallel))
            if s.max_budget is not None:
                start, end = window_of(s, now)
                if end:
                    valid_until = min(valid_until, end)
                    valid_from = max(valid_from, start)
                # kept an hour past the window: requests that started in it still settle into it
                checks.append(
                    Check("budget", f"bud:{scope}:{int(start)}", _nano_down(s.max_budget), end and end + 3600)
                )
            owners += [s] * (len(checks) - first)
        if len(self._templates) >= 10_000:
            self._templates.clear()
        self._templates[limits.token] = (limits, valid_until, valid_from, checks, owners)
        return checks, owners

    async def _seed(self, check: Check, scope: Scope, now: float) -> None:
        """Start a budget window's counter from the ledger (and what this process has not written yet)."""
        kind, scope_id = scope.kind, scope.id
        start, _ = window_of(scope, now)
        field_name = {"key": "token", "team": "team_id", "user": "user_id", "end_user": "end_user"}[kind]
        spent = 0.0
        if self.writer is not None:
            try:  # between two batches: a batch being written is in neither place
                spent = await asyncio.wait_for(self.writer.spent(kind, field_name, scope_id, start), 10.0)
            except Exception as error:
                raise _unavailable(error) from None
        try:
            await self.counters.seed(check, _nano_round(spent))
        except Exception as error:
            raise _unavailable(error) from None

    def _refused(self, check: Check, scope: Scope, refusal: Refusal, amount: int, now: float) -> ProxyError:
        if check.kind == "budget":
            start, end = window_of(scope, now)
            resets = f"; the budget resets at {_iso(end)}" if end else ""
            if refusal.used >= check.limit:
                message = (
                    f"Budget has been exceeded! {scope.label} Current cost: {_usd(refusal.used)}, "
                    f"Max budget: {scope.max_budget}{resets}"
                )
            else:
                message = (
                    f"Budget has been exceeded! {scope.label} Current cost: {_usd(refusal.used)} "
                    f"(+{_usd(refusal.reserved)} reserved by requests in flight), Max budget: "
                    f"{scope.max_budget}; this request may cost up to {_usd(amount)} (its input and "
                    f"max_tokens at the model's prices), which does not fit: send a smaller max_tokens{resets}"
                )
            return ProxyError(400, message, type="budget_exceeded", code="400")
        if check.kind == "parallel":
            wait = 1
            what = f"max_parallel_requests: {check.limit}, requests in flight: {refusal.used}"
        else:
            wait = max(1, math.ceil((int(now // 60) + 1) * 60 - now))
            unit = "rpm" if check.kind == "rpm" else "tpm"
            what = f"{unit}_limit: {check.limit}, current {unit}: {refusal.used}"
        return ProxyError(
            429,
            f"Max parallel request limit reached. Hit limit for {scope.label}: {what}. Retry after {wait}s",
            type="rate_limit_error",
            code="429",
            headers={"retry-after": str(wait)},
        )

    # ---- after ----
    async def settle(
        self, res: Reservation, cost: float | None, usage: Any, request_id: str | None = None
    ) -> None:
        """``settle_now`` (kept awaitable for callers that are coroutines)."""
        self.settle_now(res, cost, usage, request_id)

    def settle_now(
        self, res: Reservation, cost: float | None, usage: Any, request_id: str | None = None
    ) -> None:
        """Charge the exact cost, free what the reservation held, write the ledger row. Once.

        Synchronous, so a stream's end settles before anything else runs: the client that
        sends its next request at once finds its slot free (Redis: in this instance's lease at
        once; what was used reaches Redis with the next sync, ``leases.py``)."""
        if res.settled:
            return
        res.settled = True
        now = self.clock()
        if isinstance(usage, dict):  # ``_tokens``, inline for the usual three ints
            get = usage.get
            prompt, completion, total = get("prompt_tokens"), get("completion_tokens"), get("total_tokens")
            if type(prompt) is not int or type(completion) is not int or type(total) is not int or not total:
                prompt, completion, total = _tokens(usage)
        else:
            prompt, completion, total = _tokens(usage)
        amount = cost if isinstance(cost, (int, float)) and cost > 0 else 0.0
        if res.checks:
            try:
                self.counters.settle(
                    res.request_id, res.checks, res.reserved, round(amount * NANO), total, now
                )
            except Exception as error:  # the ledger still gets the row: spend is never lost
                self.settle_errors += 1
                logger.error(
                    "limits: settling a request failed (%s); its counters are left as they were", error
                )
        writer = self.writer
        if writer is not None:
            limits = res.limits
            if limits.soft and amount:  # checked against the ledger after its next batch
                for scope in limits.soft:
                    writer.watch(scope, window_of(scope, res.started_at)[0])
            if not request_id:  # ``request_id``, inline: the call brought none
                request_id = res.request_id
                if not request_id:
                    request_id = res.request_id = f"{self._prefix}{next(self._ids)}"
            writer.record_values(  # ``spend.ROW_FIELDS``' order
                (
                    request_id,
                    limits.token,
                    limits.team_id,
                    limits.user_id,
                    res.end_user,
                    res.model,
                    amount,
                    prompt,
                    completion,
                    res.started_at,
                    now,
                )
            )

    settle_soon = settle_now  # a stream's end (a synchronous callback)

    def request_id(self, res: Reservation) -> str:
        """The reservation's own id (its ledger row's when the call brought none): unique across
        instances (a random prefix), cheap within one (a counter)."""
        if not res.request_id:
            res.request_id = f"{self._prefix}{next(self._ids)}"
        return res.request_id

    async def drain(self) -> None:
        """Send the settlements still queued (shutdown)."""
        flush = getattr(self.counters, "flush", None)
        if flush is not None:
            await flush()

    async def close(self) -> None:
        await self.drain()
        await self.counters.close()


def _count(value: Any) -> int:
    """A positive integer field (``n``, ``best_of``), 1 when absent or not one."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


_OUTPUT_NAMES = ("max_completion_tokens", "max_tokens")


def _asked_output(data: dict[str, Any]) -> int | None:
    """The output tokens a request names (``max_completion_tokens`` or ``max_tokens``), or None.
    When it names both, the larger: providers differ in which one they send (Anthropic's reads
    ``max_tokens`` first, Gemini's ``max_completion_tokens``), and a reservation must cover either."""
    # every budgeted request reads it: no list, no generator; the usual request names one int
    a, b = data.get("max_completion_tokens"), data.get("max_tokens")
    if a is None and type(b) is int and b > 0:
        return b
    a = a if isinstance(a, int) and not isinstance(a, bool) and a > 0 else None
    if isinstance(b, int) and not isinstance(b, bool) and b > 0 and (a is None or b > a):
        return b
    return a


def cap_output(data: dict[str, Any], extra: dict[str, Any] | None, tokens: int) -> None:
    """Send the request with ``max_tokens`` = ``tokens`` (``Reservation.cap``): its chat form,
    which every bridged deployment gets, and the body passed through to an OpenAI deployment
    (the Responses API's ``max_output_tokens``, a legacy completion's ``max_tokens``). A
    Messages request always names its max_tokens (that API requires it)."""
    data["max_tokens"] = tokens
    passthrough = (extra or {}).get("openai_passthrough")
    if isinstance(passthrough, dict) and isinstance(passthrough.get("body"), dict):
        name = "max_output_tokens" if passthrough.get("api") == "responses" else "max_tokens"
        passthrough["body"][name] = tokens


def _completions_worst_case(
    asked: dict[str, Any], in_price: float, out_price: float, most: int = DEFAULT_MAX_TOKENS
) -> float:
    """A legacy completion as sent: every prompt's bytes (a token id is at least one byte of
    its JSON) and, per prompt, ``max(n, best_of)`` completions of ``max_tokens`` (``most``
    when it names none; all ``best_of`` candidates are generated and billed)."""
    prompt = asked.get("prompt")
    several = isinstance(prompt, list) and bool(prompt) and not isinstance(prompt[0], int)
    prompts = len(prompt) if several else 1  # type: ignore[arg-type]
    input_tokens = len(orjson.dumps([prompt, asked.get("suffix")]))
    out = asked.get("max_tokens")
    if not isinstance(out, int) or isinstance(out, bool) or out <= 0:
        out = most
    choices = max(_count(asked.get("n")), _count(asked.get("best_of"))) * prompts
    return input_tokens * in_price + out * choices * out_price


def _nano_up(usd: float) -> int:
    return math.ceil(usd * NANO)


def _nano_down(usd: float) -> int:
    return math.floor(usd * NANO + 1e-6)


def _nano_round(usd: float) -> int:
    return round(usd * NANO)


def _tokens(usage: Any) -> tuple[int, int, int]:
    if usage is None:
        return 0, 0, 0
    if isinstance(usage, dict):
        get = usage.get
        prompt, completion, total = get("prompt_tokens"), get("completion_tokens"), get("total_tokens")
    else:
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        total = getattr(usage, "total_tokens", None)
    # every request settles: no generator here (it cost as much as the counters' settlement);
    # the usual ints pass one identity test each
    if type(prompt) is not int:
        prompt = int(prompt) if isinstance(prompt, (int, float)) else 0
    if type(completion) is not int:
        completion = int(completion) if isinstance(completion, (int, float)) else 0
    if type(total) is not int:
        total = int(total) if isinstance(total, (int, float)) else 0
    return prompt, completion, total or prompt + completion


def _unavailable(error: BaseException) -> ProxyError:
    logger.error("limits: the counters are unavailable: %s", error)
    return ProxyError(
        503,
        "the proxy cannot check this key's limits right now (its counter store is unavailable); try again",
        code="limits_unavailable",
    )


def group_prices(state: Any) -> Callable[[str], tuple[float, float, int | None]]:
    """The dearest (input, output) USD per token among the deployments that may answer a group,
    and the most output tokens any of them generates in one answer (None when one that prices
    its output has no known maximum: ``output_cap`` then sends the request with a max_tokens).

    With fallbacks configured a request may end on another group, so every deployment of the
    config counts. A deployment without a known price adds nothing (its calls cost nothing
    in the logs either). A model's maximum is its ``prices.json`` entry's ``max_output_tokens``;
    a deployment's ``model_info.max_output_tokens`` overrides it (the reference's place for it).
    """
    from ..cost import custom_prices, find_price

    def price_of(deployment: Any) -> tuple[float, float, int | None]:
        params = deployment.litellm_params
        custom = custom_prices(dict(params)) or {}
        model = str(params.get("model"))
        entry: dict[str, Any] = {}
        for name in (params.get("base_model"), model, model.split("/", 1)[-1]):
            found = find_price(name) if name else None
            if found is not None:
                entry = dict(found[1])
                break
        entry.update(custom)
        ins = [
            float(v) for k, v in entry.items() if "input" in k and "cost" in k and isinstance(v, (int, float))
        ]
        outs = [
            float(v)
            for k, v in entry.items()
            if "output" in k and "cost" in k and isinstance(v, (int, float))
        ]
        most = (getattr(deployment, "model_info", None) or {}).get("max_output_tokens")
        if most is None:
            most = entry.get("max_output_tokens")
        return max(ins, default=0.0), max(outs, default=0.0), most if isinstance(most, int) else None

    def own_output(deployment: Any) -> dict[str, int]:
        """The max_tokens / max_completion_tokens a deployment's litellm_params send by default."""
        params = deployment.litellm_params
        return {k: v for k in _OUTPUT_NAMES if (v := _asked_output({k: params.get(k)})) is not None}

    config = state.config
    settings = config.router_settings
    any_fallbacks = any(
        settings.get(k) for k in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
    )
    cache: dict[str, tuple[float, float, int | None]] = {}

    def prices(group: str) -> tuple[float, float, int | None]:
        found = cache.get(group)
        if found is None:
            deployments = [d for d in config.model_list if any_fallbacks or d.model_name == group]
            each = [price_of(d) for d in deployments]
            priced = [p[2] for p in each if p[1] > 0]  # the maxima that matter: output at a price
            found = cache[group] = (
                max((p[0] for p in each), default=0.0),
                max((p[1] for p in each), default=0.0),
                None if None in priced else max(priced, default=None),  # type: ignore[type-var]
            )
            own: dict[str, int] = {}  # the deployments' own output lengths (worst_case), when any set one
            for d in deployments:
                for k, v in own_output(d).items():
                    own[k] = max(own.get(k, 0), v)
            if own:
                found = cache[group] = (*found, own)  # type: ignore[assignment]
        return found

    return prices


__all__ = [
    "DEFAULT_MAX_TOKENS",
    "IMAGE_TOKENS",
    "LIMITS",
    "Enforcer",
    "KeyLimits",
    "Reservation",
    "Scope",
    "cap_output",
    "group_prices",
    "key_limits",
    "window_of",
]
