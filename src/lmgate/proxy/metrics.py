"""``GET /metrics``: counters kept per process, exposed in the Prometheus text format (0.0.4).

Counting and writing are separate jobs. Counting is on the request path: plain dict
additions on the event-loop thread (no locks; ``observe`` costs about a microsecond). Writing
happens per scrape: the numbers become ``prometheus_client`` metric families and the library
writes the text (names, escaping, ``HELP``/``TYPE``, number formatting), so the output is what
``promtool check metrics`` accepts. ``prometheus_client`` is imported only when a scrape comes.

The ``model`` label takes only configured model names: anything else a client sends (a typo,
a scan of names) counts under ``model="other"``, so clients cannot create unbounded series.
With ``--workers N`` each worker keeps its own numbers (a scrape reaches one worker).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any, TypeGuard

from ..types import Usage

_get = dict.get  # a response's Usage is a dict whose attribute reads go through its __getattr__ hook

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OTHER_MODEL = "other"  # the model label of every request for a model name not in model_list


class Histogram:
    __slots__ = ("counts", "total", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.total += seconds
        self.count += 1


class _ModelTotals:
    """A model label's tokens and cost, over every route: summed in the order they come."""

    __slots__ = ("prompt", "completion", "cost")

    def __init__(self) -> None:
        self.prompt = 0  # only counts above zero are added: above zero once one was
        self.completion = 0
        self.cost = 0.0  # only finite costs above zero are added: above zero once one was


class _Series(Histogram):
    """The numbers of one route and model label: its latency histogram, its requests by status,
    and its model's totals, found with one lookup a request (issue 18: the keyed tuples and the
    four dict lookups ``observe`` made each request)."""

    __slots__ = ("statuses", "model")

    def __init__(self, model: _ModelTotals) -> None:
        super().__init__()
        self.statuses: dict[int, int] = {}
        self.model = model


class Metrics:
    """The proxy's numbers; ``observe`` once per request, ``render`` per scrape."""

    def __init__(self, model_names: Iterable[str] = ()) -> None:
        self.model_names = frozenset(model_names)
        # route -> model label -> its series, in the order first seen
        self._series: dict[str, dict[str, _Series]] = {}
        self._models: dict[str, _ModelTotals] = {}
        self.in_flight = 0
        self.budget_alerts: dict[str, int] = {}  # soft budgets crossed, by scope (key, team, user)

    def budget_alert(self, alert: dict[str, Any]) -> None:
        """A soft budget alert (``proxy/spend.py``), counted by the scope that crossed it."""
        scope = str(alert.get("scope"))
        self.budget_alerts[scope] = self.budget_alerts.get(scope, 0) + 1

    def observe(
        self, route: str, model: str, status: int, seconds: float, usage: Any = None, cost: Any = None
    ) -> None:
        # once per request: the histogram's observe and the token kinds' loop written out
        if model not in self.model_names:
            model = OTHER_MODEL
        by_model = self._series.get(route)
        series = by_model.get(model) if by_model is not None else None
        if series is None:
            series = self._new_series(route, model)
        statuses = series.statuses
        statuses[status] = statuses.get(status, 0) + 1
        series.counts[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        series.total += seconds
        series.count += 1
        if usage:
            if type(usage) is Usage or type(usage) is dict:  # dict's own get: not through the class's hook
                prompt, completion = _get(usage, "prompt_tokens"), _get(usage, "completion_tokens")
            elif isinstance(usage, dict):
                prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            else:
                prompt = getattr(usage, "prompt_tokens", None)
                completion = getattr(usage, "completion_tokens", None)
            # a count, never a string or a float from a bad usage block
            if isinstance(prompt, int) and prompt > 0:
                series.model.prompt += prompt if type(prompt) is int else int(prompt)
            if isinstance(completion, int) and completion > 0:
                series.model.completion += completion if type(completion) is int else int(completion)
        if isinstance(cost, (int, float)) and cost > 0 and math.isfinite(cost):
            series.model.cost += cost if type(cost) is float else float(cost)

    def _new_series(self, route: str, model: str) -> _Series:
        totals = self._models.get(model)
        if totals is None:
            totals = self._models[model] = _ModelTotals()
        series = self._series.setdefault(route, {})[model] = _Series(totals)
        return series

    @property
    def requests(self) -> dict[tuple[str, str, int], int]:
        """Requests counted, by route, model label and status."""
        return {
            (route, model, status): n
            for route, by_model in self._series.items()
            for model, series in by_model.items()
            for status, n in series.statuses.items()
        }

    @property
    def latency(self) -> dict[tuple[str, str], Histogram]:
        """The latency histogram of each route and model label."""
        return {
            (route, model): s for route, by_model in self._series.items() for model, s in by_model.items()
        }

    @property
    def tokens(self) -> dict[tuple[str, str], int]:
        """Tokens counted, by model label and kind (``prompt``, ``completion``); a kind none of
        whose counts was above zero is not there."""
        out: dict[tuple[str, str], int] = {}
        for model, totals in self._models.items():
            if totals.prompt > 0:
                out[(model, "prompt")] = totals.prompt
            if totals.completion > 0:
                out[(model, "completion")] = totals.completion
        return out

    @property
    def cost(self) -> dict[str, float]:
        """Cost counted, by model label; a model none of whose costs was above zero is not there."""
        return {model: totals.cost for model, totals in self._models.items() if totals.cost > 0}

    def render(self, loggers: list[tuple[str, dict[str, Any]]], dispatcher: dict[str, Any]) -> str:
        """The exposition text: request numbers, then each logger's ``stats()``, then the dispatcher's."""
        from prometheus_client.exposition import generate_latest

        return generate_latest(_Families(self._families(loggers, dispatcher))).decode()  # type: ignore[arg-type]

    def _families(
        self, loggers: list[tuple[str, dict[str, Any]]], dispatcher: dict[str, Any]
    ) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        requests = CounterMetricFamily(
            "lmgate_requests", "Requests answered by the proxy.", labels=("route", "model", "status")
        )
        for (route, model, status), n in sorted(self.requests.items()):
            requests.add_metric((route, model, str(status)), n)
        yield requests
        latency = HistogramMetricFamily(
            "lmgate_request_duration_seconds", "Time from request to last byte.", labels=("route", "model")
        )
        bounds = [_le(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]
        for (route, model), hist in sorted(self.latency.items()):
            cumulative, buckets = 0, []
            for bound, n in zip(bounds, hist.counts, strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            latency.add_metric((route, model), buckets, hist.total)
        yield latency
        tokens = CounterMetricFamily(
            "lmgate_tokens", "Tokens reported by providers.", labels=("model", "type")
        )
        for (model, kind), n in sorted(self.tokens.items()):
            tokens.add_metric((model, kind), n)
        yield tokens
        cost = CounterMetricFamily("lmgate_cost_usd", "Cost of answered requests in USD.", labels=("model",))
        for model, usd in sorted(self.cost.items()):
            cost.add_metric((model,), usd)
        yield cost
        yield GaugeMetricFamily(
            "lmgate_requests_in_flight", "Requests being answered now.", value=self.in_flight
        )
        alerts = CounterMetricFamily(
            "lmgate_soft_budget_alerts",
            "Soft budgets crossed (one alert per budget window), by scope.",
            labels=("scope",),
        )
        for scope, n in sorted(self.budget_alerts.items()):
            alerts.add_metric((scope,), n)
        yield alerts
        yield from _logger_families(_unique_names(loggers))
        yield GaugeMetricFamily(
            "lmgate_callback_deliveries_pending",
            "Callback deliveries submitted and not yet done.",
            value=_number_or_zero(dispatcher.get("pending")),
        )
        yield CounterMetricFamily(
            "lmgate_callback_errors",
            "Callback hooks that raised.",
            value=_number_or_zero(dispatcher.get("errors_total")),
        )


class _Families:
    """What ``generate_latest`` reads: anything with ``collect()`` (no registry needed per scrape)."""

    def __init__(self, families: Iterator[Any]) -> None:
        self._families = families

    def collect(self) -> Iterator[Any]:
        return self._families


# the numbers every logger's stats() may report under fixed names: (key, metric, type, help)
_LOGGER_METRICS = (
    ("delivered", "lmgate_logger_delivered", "counter", "Records a logger delivered."),
    ("dropped", "lmgate_logger_dropped", "counter", "Records a logger dropped, by reason."),
    ("pending", "lmgate_logger_pending", "gauge", "Records a logger holds (queued, in flight or spooled)."),
)


# the batch loggers' (BatchLogger.stats) numbers that only grow: exposed as counters (``_total``);
# their other numbers (queued, in_flight, spooled, …) are levels, exposed as gauges
_COUNTER_KEYS = frozenset(
    {"emitted", "retried", "recovered", "flagged", "splits", "spool_write_failed", "batches"}
)
# Prometheus reserves these endings for histograms and summaries: a key ending so gets "_value" added
_RESERVED_SUFFIXES = ("_count", "_sum", "_bucket")


def _logger_families(loggers: list[tuple[str, dict[str, Any]]]) -> Iterator[Any]:
    from prometheus_client.metrics_core import Metric

    taken: set[str] = (
        set()
    )  # one family per base name (a counter "x" writes "x_total"; a second "x_total" would clash)
    for key, name, kind, help_text in _LOGGER_METRICS:
        taken.add(name)
        fixed = Metric(name, help_text, kind)
        sample = name + "_total" if kind == "counter" else name
        for logger, stats in loggers:
            value = stats.get(key)
            if isinstance(value, dict):  # a breakdown, e.g. dropped by reason
                for reason, n in sorted(value.items(), key=lambda item: str(item[0])):
                    if _is_number(n):
                        fixed.add_sample(sample, {"logger": logger, "reason": str(reason)}, n)
            elif _is_number(value):
                fixed.add_sample(sample, {"logger": logger}, value)
        yield fixed
    # any other number a logger reports: a counter when its key ends in "_total" or is one of
    # the batch loggers' counts (_COUNTER_KEYS: "retried" → lmgate_logger_retried_total), else a
    # gauge ("queued" → lmgate_logger_queued); one that would reuse a name above is left out
    # ("dropped_total" repeats the sum of lmgate_logger_dropped_total)
    extra: dict[str, Metric] = {}
    for logger, stats in loggers:
        for key, value in sorted(stats.items(), key=lambda item: str(item[0])):
            if key in ("delivered", "dropped", "pending") or not _is_number(value):
                continue
            sample = "lmgate_logger_" + "".join(
                ch if ch.isascii() and ch.isalnum() else "_" for ch in str(key)
            )
            counter = sample.endswith("_total") or key in _COUNTER_KEYS
            base = sample.removesuffix("_total")
            if base.endswith(_RESERVED_SUFFIXES):  # "lag_count" would pass for a histogram's part
                base += "_value"
            if counter:
                sample = base + "_total"
            else:
                sample = base
            family: Metric | None = extra.get(base)
            if family is None:
                if base in taken:
                    continue
                taken.add(base)
                family = extra[base] = Metric(
                    base, f"The {key!r} number in each logger's stats().", "counter" if counter else "gauge"
                )
            elif family.type != ("counter" if counter else "gauge") or any(
                s.labels["logger"] == logger for s in family.samples
            ):
                continue  # two keys that clean up to one name: the first one wins
            family.add_sample(sample, {"logger": logger}, value)
    for _, family in sorted(extra.items()):
        yield family


def _unique_names(loggers: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Loggers that share a name (two of one class) become ``name``, ``name#2``…: one series each."""
    seen: dict[str, int] = {}
    out = []
    for name, stats in loggers:
        n = seen[name] = seen.get(name, 0) + 1
        out.append((name if n == 1 else f"{name}#{n}", stats))
    return out


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_or_zero(value: Any) -> float:
    return value if _is_number(value) else 0


def _le(bound: float) -> str:
    return repr(float(bound))


__all__ = ["LATENCY_BUCKETS_S", "OTHER_MODEL", "Metrics"]
