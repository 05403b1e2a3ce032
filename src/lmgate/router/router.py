"""``lmgate.Router``: model groups, routing strategies, retries across deployments, cooldowns
and fallbacks, over the public call functions.

The decisions of one request are written once, in the generator ``Router._route``: it yields
``Attempt`` (make this call) and ``Wait`` (back off) and receives each attempt's outcome, so
the sync and async entry points differ only in how they perform those two operations (the
shape of ``_attempt.py``). Every attempt is an ordinary ``completion``/``acompletion``/
``embedding``/``aembedding`` call with the Router's ``Settings`` (``_settings=``) and
``defer_failure_event``: a failed attempt's failure event is held back, and emitted only when
the request ends in that failure, so each request ends in exactly one terminal event — the
success of the deployment that answered, or the last failure.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from .. import exceptions as exc
from .._attempt import run_async
from .._call import acompletion, aembedding, chat_call, completion, embedding
from .._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from ..settings import DEFAULT, Settings
from .cooldown import Cooldowns, counts_against_deployment
from .counters import Counters, LocalCounters, RedisCounters
from .deployments import Deployment, read_model_list
from .fallbacks import Fallbacks
from .strategies import STRATEGIES, InFlight, make_strategy

DEFAULT_ALLOWED_FAILS = 3
DEFAULT_COOLDOWN_TIME_S = 5.0
_CALLBACK_SETTINGS = ("callbacks", "input_callback", "success_callback", "failure_callback")


OnAttempt = Callable[[Deployment], None] | None


@dataclass
class Attempt:
    """Make one call with ``kwargs``; ``deployment`` is None for a request no deployment can take."""

    deployment: Deployment | None
    kwargs: dict[str, Any]


@dataclass
class Wait:
    seconds: float


@dataclass
class Routed:
    """The answer of one request: who gave it, what it is, and ``release`` to call once it is
    over (a stream counts as in flight until then)."""

    deployment: Deployment
    result: Any
    release: Callable[[], None]


class _Request:
    """What one request has gathered across attempts."""

    __slots__ = ("deferred", "attempts", "last")

    def __init__(self) -> None:
        self.deferred: list[Any] = []  # the held-back failure events, in order (DeferredFailure)
        self.attempts = 0
        self.last: Deployment | None = None  # the last deployment tried


class Router:
    """Compatible with the reference's ``litellm.Router``; see docs/router.md."""

    def __init__(
        self,
        model_list: Sequence[dict[str, Any] | Deployment] | None = None,
        *,
        routing_strategy: str = "simple-shuffle",
        fallbacks: Any = None,
        context_window_fallbacks: Any = None,
        content_policy_fallbacks: Any = None,
        num_retries: int | None = None,
        timeout: float | None = None,
        cooldown_time: float | None = None,
        allowed_fails: int | None = None,
        retry_policy: RetryPolicy | None = None,
        redis_url: str | None = None,
        redis_host: str | None = None,
        redis_port: int | None = None,
        redis_password: str | None = None,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
        rng: random.Random | None = None,
        **callbacks: Any,
    ) -> None:
        from .. import _conf

        unknown = set(callbacks) - set(_CALLBACK_SETTINGS)
        if unknown:
            raise exc.ConfigError(
                f"unknown argument {sorted(unknown)[0]!r}",
                "Router",
                sorted(unknown)[0],
                fix="see docs/router.md for the arguments a Router takes",
            )
        routing_strategy = _conf.choice(routing_strategy, STRATEGIES, name="routing_strategy", where="Router")
        own = {k: list(v) for k, v in callbacks.items() if v is not None}
        # a Router's own callbacks: its calls are heard by these, not by another Router's (without
        # any, the module's settings themselves: a derived object would cost a lookup per read)
        base = settings or DEFAULT
        self.settings = base.derive(**own) if own else base
        self.deployments = read_model_list(model_list or [])
        self.groups: dict[str, tuple[Deployment, ...]] = {}
        for d in self.deployments:
            self.groups[d.model_name] = (*self.groups.get(d.model_name, ()), d)
        self.fallbacks = Fallbacks(fallbacks, context_window_fallbacks, content_policy_fallbacks)
        missing = self.fallbacks.groups() - set(self.groups) - {"*"}
        if missing:
            raise exc.ConfigError(
                f"names {sorted(missing)[0]!r}, which is not a model_name of model_list",
                "Router",
                "fallbacks",
                fix="add a deployment with that model_name",
            )
        self.num_retries = (
            None
            if num_retries is None
            else int(_conf.number(num_retries, name="num_retries", where="Router", minimum=0, integer=True))
        )
        self.timeout = timeout
        self.strategy_name = routing_strategy
        self.retry_policy = retry_policy
        self.clock = clock
        self.timer = timer
        self.cooldowns = Cooldowns(
            DEFAULT_ALLOWED_FAILS
            if allowed_fails is None
            else int(
                _conf.number(allowed_fails, name="allowed_fails", where="Router", minimum=0, integer=True)
            ),
            DEFAULT_COOLDOWN_TIME_S
            if cooldown_time is None
            else _conf.duration_s(cooldown_time, name="cooldown_time", where="Router"),
            clock,
        )
        self.counters: Counters
        if redis_url or redis_host:
            self.counters = RedisCounters.connect(
                clock, url=redis_url, host=redis_host, port=redis_port, password=redis_password
            )
        else:
            self.counters = LocalCounters(clock)
        self.in_flight = InFlight()
        self.strategy = make_strategy(
            routing_strategy, self.groups, self.counters, self.in_flight, rng or random.Random()
        )
        self._measures_usage = routing_strategy.startswith("usage-based")
        self._measures_latency = routing_strategy == "latency-based-routing"
        # per group, what no request changes: its deployments' ids (the cooldown check's argument)
        self._ids = {group: [d.model_id for d in members] for group, members in self.groups.items()}
        # a lone candidate is every strategy's pick but usage-based routing's (it may be over its limits)
        self._lone_is_picked = not self._measures_usage
        # the groups whose request is one attempt at their one deployment, with nowhere to fall
        # back to: ``route_async`` makes it without the decision generators (issue 18)
        self._lone: dict[str, Deployment] = (
            {}
            if not self._lone_is_picked
            else {
                group: members[0]
                for group, members in self.groups.items()
                if len(members) == 1 and not self.fallbacks.may_apply(group)
            }
        )
        self.model_list = list(model_list or [])

    def __repr__(self) -> str:
        return f"<lmgate Router {self.strategy_name}: {', '.join(self.groups) or 'no groups'}>"

    def get_model_names(self) -> list[str]:
        return list(self.groups)

    # ---- the public calls ----
    def completion(self, model: str, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
        return self.route_sync("chat", model, {"messages": messages, **kwargs}).result

    async def acompletion(
        self, model: str, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Any:
        return (await self.route_async("chat", model, {"messages": messages, **kwargs})).result

    def embedding(self, model: str, input: Any = None, **kwargs: Any) -> Any:
        return self.route_sync("embedding", model, {"input": input, **kwargs}).result

    async def aembedding(self, model: str, input: Any = None, **kwargs: Any) -> Any:
        return (await self.route_async("embedding", model, {"input": input, **kwargs})).result

    # ---- the drivers: the only place sync and async differ ----
    def route_sync(
        self, kind: str, model: str, kwargs: dict[str, Any], hold: bool = False, on_attempt: OnAttempt = None
    ) -> Routed:
        call = completion if kind == "chat" else embedding
        flow = self._route(kind, model, kwargs, hold, on_attempt)
        outcome: Any = None  # None starts the generator; then (result, error)
        while True:
            try:
                op = flow.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                if isinstance(op, Wait):
                    self._policy().sleep(op.seconds)
                    outcome = (None, None)
                    continue
                try:
                    outcome = (call(**op.kwargs), None)
                except Exception as error:
                    outcome = (None, error)
            except BaseException as error:  # interrupted mid-request: the decisions end it, then up
                flow.throw(error)
                raise

    async def route_async(
        self, kind: str, model: str, kwargs: dict[str, Any], hold: bool = False, on_attempt: OnAttempt = None
    ) -> Routed:
        """One request; with ``hold`` the caller calls ``release()`` when it is over (the proxy,
        for streams); ``on_attempt`` sees each deployment as it is tried (the proxy's error log)."""
        call = acompletion if kind == "chat" else aembedding
        lone = self._lone.get(model)
        if lone is not None and not self.cooldowns.cooling(self._ids[model]):
            # what ``_route`` decides for a group of one deployment without fallbacks, nothing
            # cooling, written out here (no decision generators, no coroutine of its own: issue
            # 18): one attempt at it (its retries are the call's own); a failure is the request's
            # one terminal event and is raised. ``tests/test_router.py`` holds it to ``route_sync``.
            call_kwargs = self._call_kwargs(lone, kwargs, False, _FIRST_ATTEMPT)
            deferred = call_kwargs["defer_failure_event"]  # the call moves it out of call_kwargs
            if on_attempt is not None:
                on_attempt(lone)
            model_id = lone.model_id
            self.in_flight.acquire(model_id)
            start = self.timer()
            try:
                if call is acompletion:  # what acompletion(**call_kwargs) does, without a copy of them
                    result = await run_async(chat_call(call_kwargs))
                else:
                    result = await call(**call_kwargs)
            except BaseException:  # a cancelled call too: its held-back failure is still emitted
                self.in_flight.release(model_id)
                request = _Request()
                request.deferred.extend(deferred)
                self._end_in_failure(request)
                raise
            release = _releaser(self.in_flight, model_id)
            if not hold:
                release()
            self._measure(lone, result, 0, self.timer() - start)
            return Routed(lone, result, release)
        flow = self._route(kind, model, kwargs, hold, on_attempt)
        outcome: Any = None  # None starts the generator; then (result, error)
        while True:
            try:
                op = flow.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                if isinstance(op, Wait):
                    await self._policy().async_sleep(op.seconds)
                    outcome = (None, None)
                    continue
                try:
                    outcome = (await call(**op.kwargs), None)
                except Exception as error:
                    outcome = (None, error)
            except BaseException as error:  # cancelled mid-request: the decisions end it, then up
                flow.throw(error)
                raise

    # ---- the decisions, written once ----
    def _policy(self) -> RetryPolicy:
        return self.retry_policy or self.settings.retry_policy or DEFAULT_RETRY_POLICY

    def _route(
        self, kind: str, model: str, kwargs: dict[str, Any], hold: bool, on_attempt: OnAttempt
    ) -> Generator[Attempt | Wait, Any, Routed]:
        request = _Request()
        try:
            try:
                return (yield from self._group(kind, model, kwargs, hold, request, on_attempt))
            except Exception as error:
                failure = error
            for group in self.fallbacks.for_error(model, failure):
                try:
                    return (yield from self._group(kind, group, kwargs, hold, request, on_attempt))
                except Exception as error:
                    failure = error
        except BaseException:
            # the caller was cancelled (or interrupted) mid-request: the attempts' held-back
            # failures still end it, one terminal event, as a failure does
            self._end_in_failure(request)
            raise
        self._end_in_failure(request)
        raise failure

    def _group(
        self,
        kind: str,
        group: str,
        kwargs: dict[str, Any],
        hold: bool,
        request: _Request,
        on_attempt: OnAttempt,
    ) -> Generator[Attempt | Wait, Any, Routed]:
        members = self.groups.get(group) or ()
        if not members:
            error = exc.BadRequestError(
                f"model {group!r} is not a model group of this Router; groups: {', '.join(self.groups) or '(none)'}",
                "router",
                group,
            )
            yield from self._refuse(group, kwargs, error, request)
        many = len(members) > 1
        if many:
            retries = (
                self.num_retries if self.num_retries is not None else int(self.settings.num_retries or 0)
            )
            total = max(len(members), 1 + retries)
        else:
            total = 1
        tokens = _estimate_tokens(kwargs) if self._measures_usage else 0
        tried: list[str] = []
        last_error: BaseException | None = None
        ids = self._ids.get(group) or [d.model_id for d in members]
        for index in range(total):
            cooling = self.cooldowns.cooling(ids)
            deployment: Deployment | None
            if not cooling and not many and self._lone_is_picked:  # the usual lone deployment
                deployment = members[0]
            else:
                # the usual first attempt: nothing cooling, nothing tried, every member a candidate
                candidates = [d for d in members if d.model_id not in cooling] if cooling else list(members)
                fresh = [d for d in candidates if d.model_id not in tried] if tried else candidates
                if (
                    not fresh and candidates and index > 0
                ):  # every deployment failed once: back off, go round again
                    yield Wait(
                        self._policy().delay_s(index - len(members), getattr(last_error, "retry_after", None))
                    )
                pool = _first_order(fresh or candidates)
                deployment = self.strategy.pick(group, pool, tokens) if pool else None
            if deployment is None:
                if last_error is not None:  # the last attempt's failure stays the answer
                    raise last_error
                left = self.cooldowns.seconds_left(ids)
                why = "cooling down" if cooling else "over its rpm/tpm limit this minute"
                yield from self._refuse(
                    group,
                    kwargs,
                    exc.RouterRateLimitError(
                        f"no deployment of model group {group!r} is available: every one is {why}",
                        "router",
                        group,
                        status_code=429,
                        retry_after=left or None,
                    ),
                    request,
                )
            assert deployment is not None
            call_kwargs = self._call_kwargs(deployment, kwargs, many, request)
            if on_attempt is not None:
                on_attempt(deployment)
            self.in_flight.acquire(deployment.model_id)
            start = self.timer()
            try:
                result, error = yield Attempt(deployment, call_kwargs)
            except BaseException:  # the caller cancelled it: no longer in flight, its failure held back
                self.in_flight.release(deployment.model_id)
                request.deferred.extend(call_kwargs["defer_failure_event"])
                raise
            request.attempts += 1
            request.last = deployment
            if error is None:
                release = _releaser(self.in_flight, deployment.model_id)
                if not hold:
                    release()
                self._measure(deployment, result, tokens, self.timer() - start)
                return Routed(deployment, result, release)
            self.in_flight.release(deployment.model_id)
            request.deferred.extend(call_kwargs["defer_failure_event"])
            if many and counts_against_deployment(
                error
            ):  # as the reference: a lone deployment never sits out
                self.cooldowns.failed(deployment.model_id)
            if not isinstance(error, exc.LmgateError):  # not an answer from a deployment: no failover
                self._end_in_failure(request)
                raise error
            tried.append(deployment.model_id)
            last_error = error
            if not self._policy().is_retryable(error):
                break
        assert last_error is not None
        raise last_error

    def _call_kwargs(
        self, deployment: Deployment, kwargs: dict[str, Any], many: bool, request: _Request
    ) -> dict[str, Any]:
        kw = dict(deployment.call_params)
        kw.update(kwargs)  # the request's arguments win over the deployment's (the reference's order)
        kw["model_id"] = deployment.model_id
        kw["model_group"] = deployment.model_name
        kw["_settings"] = self.settings
        kw["defer_failure_event"] = []
        if many:
            kw["num_retries"] = 0  # the Router retries, on another deployment
        elif self.num_retries is not None and "num_retries" not in kwargs:
            kw["num_retries"] = self.num_retries
        if self.timeout is not None and "timeout" not in kwargs:
            kw["timeout"] = self.timeout
        if request.deferred:
            kw["failed_attempts_cost"] = sum(d.cost for d in request.deferred)
        return kw

    def _refuse(
        self, group: str, kwargs: dict[str, Any], error: exc.LmgateError, request: _Request
    ) -> Generator[Attempt | Wait, Any, Routed]:
        """No deployment can take the request: it still gets its one failure event (through
        the ordinary pipeline, as a mock answer that is ``error``), then ``error`` is raised."""
        kw = {
            **kwargs,
            "model": group,
            "mock_response": error,
            "model_group": group,
            "_settings": self.settings,
            "defer_failure_event": [],
        }
        if request.deferred:
            kw["failed_attempts_cost"] = sum(d.cost for d in request.deferred)
        raised: BaseException | None = (yield Attempt(None, kw))[1]
        request.deferred.extend(kw["defer_failure_event"])
        raise raised or error

    def _end_in_failure(self, request: _Request) -> None:
        """The request failed for good: its last held-back failure is its one terminal event."""
        if not request.deferred:
            return
        *earlier, last = request.deferred
        request.deferred = []
        if earlier:
            last.add_failed_attempts_cost(sum(d.cost for d in earlier))
        last()

    def _measure(self, deployment: Deployment, result: Any, tokens: int, elapsed: float) -> None:
        if self._measures_usage:
            usage = result.get("usage") if isinstance(result, dict) else None
            used = usage.get("total_tokens") if isinstance(usage, dict) else None
            self.counters.add_usage(deployment.model_id, int(used or tokens))
        if self._measures_latency:
            self.counters.add_latency(deployment.model_id, elapsed)


_FIRST_ATTEMPT = _Request()  # read only: a first attempt has no earlier failures to carry


def _first_order(pool: list[Deployment]) -> list[Deployment]:
    """The deployments of the lowest ``order`` (1 before 2; without one, after every ordered one):
    the strategy picks among them, and a retry reaches the next order once they are all tried."""
    if len(pool) < 2 or all(d.order is None for d in pool):
        return pool
    lowest = min(d.order for d in pool if d.order is not None)
    return [d for d in pool if d.order == lowest]


def _releaser(in_flight: InFlight, model_id: str) -> Callable[[], None]:
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            in_flight.release(model_id)

    return release


def _estimate_tokens(kwargs: dict[str, Any]) -> int:
    """A cheap guess of the request's tokens (4 characters a token) for the tpm check."""
    payload = kwargs.get("messages") or kwargs.get("input") or ""
    if isinstance(payload, list):
        text = sum(len(str(m.get("content", "")) if isinstance(m, dict) else str(m)) for m in payload)
        return text // 4 + 1
    return len(str(payload)) // 4 + 1


__all__ = ["Attempt", "Routed", "Router", "Wait"]
