"""``GET /metrics``: counters kept per process, written in the Prometheus text format (0.0.4).

Written by hand rather than with ``prometheus_client``: the proxy needs four counters, one
histogram and a few gauges read from the loggers at scrape time, all updated on one event
loop thread (plain dict updates, no locks, nothing on the request path but additions); the
client library would add a dependency, a registry and locking for no gain. With
``--workers N`` each worker keeps its own numbers (a scrape reaches one worker).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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


class Metrics:
    """The proxy's numbers; ``observe`` once per request, ``render`` per scrape."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.tokens: dict[tuple[str, str], int] = {}
        self.cost: dict[str, float] = {}
        self.in_flight = 0

    def observe(self, route: str, model: str, status: int, seconds: float, usage: Any = None, cost: Any = None) -> None:
        key = (route, model, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        hkey = (route, model)
        hist = self.latency.get(hkey)
        if hist is None:
            hist = self.latency[hkey] = Histogram()
        hist.observe(seconds)
        if usage:
            for kind in ("prompt_tokens", "completion_tokens"):
                n = usage.get(kind) if isinstance(usage, dict) else getattr(usage, kind, None)
                if n:
                    tkey = (model, kind.split("_")[0])
                    self.tokens[tkey] = self.tokens.get(tkey, 0) + int(n)
        if isinstance(cost, (int, float)) and cost > 0 and math.isfinite(cost):
            self.cost[model] = self.cost.get(model, 0.0) + float(cost)

    def render(self, loggers: list[tuple[str, dict[str, Any]]], dispatcher: dict[str, Any]) -> str:
        out: list[str] = []
        out += ["# HELP lmgate_requests_total Requests answered by the proxy.", "# TYPE lmgate_requests_total counter"]
        for (route, model, status), n in sorted(self.requests.items()):
            out.append(f"lmgate_requests_total{_labels(route=route, model=model, status=str(status))} {n}")
        out += ["# HELP lmgate_request_duration_seconds Time from request to last byte.",
                "# TYPE lmgate_request_duration_seconds histogram"]
        for (route, model), hist in sorted(self.latency.items()):
            cumulative = 0
            for bound, n in zip(LATENCY_BUCKETS_S, hist.counts, strict=False):
                cumulative += n
                out.append(f"lmgate_request_duration_seconds_bucket{_labels(route=route, model=model, le=_num(bound))} {cumulative}")
            out.append(f"lmgate_request_duration_seconds_bucket{_labels(route=route, model=model, le='+Inf')} {hist.count}")
            out.append(f"lmgate_request_duration_seconds_sum{_labels(route=route, model=model)} {_num(hist.total)}")
            out.append(f"lmgate_request_duration_seconds_count{_labels(route=route, model=model)} {hist.count}")
        out += ["# HELP lmgate_tokens_total Tokens reported by providers.", "# TYPE lmgate_tokens_total counter"]
        for (model, kind), n in sorted(self.tokens.items()):
            out.append(f"lmgate_tokens_total{_labels(model=model, type=kind)} {n}")
        out += ["# HELP lmgate_cost_usd_total Cost of answered requests in USD.", "# TYPE lmgate_cost_usd_total counter"]
        for model, usd in sorted(self.cost.items()):
            out.append(f"lmgate_cost_usd_total{_labels(model=model)} {_num(usd)}")
        out += ["# HELP lmgate_requests_in_flight Requests being answered now.", "# TYPE lmgate_requests_in_flight gauge",
                f"lmgate_requests_in_flight {self.in_flight}"]
        out += _logger_lines(loggers)
        out += ["# HELP lmgate_callback_deliveries_pending Callback deliveries submitted and not yet done.",
                "# TYPE lmgate_callback_deliveries_pending gauge",
                f"lmgate_callback_deliveries_pending {int(dispatcher.get('pending') or 0)}",
                "# HELP lmgate_callback_errors_total Callback hooks that raised.",
                "# TYPE lmgate_callback_errors_total counter",
                f"lmgate_callback_errors_total {int(dispatcher.get('errors_total') or 0)}"]
        return "\n".join(out) + "\n"


_LOGGER_METRICS = (
    ("delivered", "lmgate_logger_delivered_total", "counter", "Records a logger delivered."),
    ("dropped", "lmgate_logger_dropped_total", "counter", "Records a logger dropped, by reason."),
    ("pending", "lmgate_logger_pending", "gauge", "Records a logger holds (queued, in flight or spooled)."),
)


def _logger_lines(loggers: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out: list[str] = []
    for key, metric, kind, help_text in _LOGGER_METRICS:
        out += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
        for name, stats in loggers:
            value = stats.get(key)
            if isinstance(value, dict):  # a breakdown, e.g. dropped by reason
                for reason, n in sorted(value.items()):
                    if _is_number(n):
                        out.append(f"{metric}{_labels(logger=name, reason=str(reason))} {_num(n)}")
            elif _is_number(value):
                out.append(f"{metric}{_labels(logger=name)} {_num(value)}")
    # any other number a logger reports, as a gauge
    extra: dict[str, list[str]] = {}
    for name, stats in loggers:
        for key, value in sorted(stats.items()):
            if key in ("delivered", "dropped", "pending") or not _is_number(value):
                continue
            metric = "lmgate_logger_" + "".join(ch if ch.isalnum() else "_" for ch in str(key))
            extra.setdefault(metric, []).append(f"{metric}{_labels(logger=name)} {_num(value)}")
    for metric, lines in sorted(extra.items()):
        out.append(f"# TYPE {metric} gauge")
        out += lines
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


__all__ = ["LATENCY_BUCKETS_S", "Metrics"]
