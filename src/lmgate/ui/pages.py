"""The dashboard's HTML, rendered on the server with Jinja2 (autoescaped: a prompt or a model
name is shown as text, never run). Charts get their numbers as JSON inside the page and are
drawn by ``static/ui.js`` with uPlot; everything else is plain HTML."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import orjson

from .query import RANGES, Viewer

if TYPE_CHECKING:
    import jinja2

    from .context import UiContext

TEMPLATES = Path(__file__).parent / "templates"
BREAKDOWNS = ("model", "provider", "key", "team", "user", "tag")
FILTER_FIELDS = ("model", "key", "team", "user", "status", "search")


@functools.cache
def environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=money,
        ms=milliseconds,
        pct=percent,
        count=count,
        when=when,
        short=short,
        pretty=pretty,
        qs=qs,
    )
    env.globals.update(ranges=list(RANGES) + ["all"], breakdowns=BREAKDOWNS, quote=quote)
    return env


def render(name: str, viewer: Viewer | None, ctx: UiContext, **values: Any) -> str:
    return (
        environment()
        .get_template(name)
        .render(viewer=viewer, title=ctx.title, has_health=ctx.has_health, **values)
    )


# ---- formatting: every number with its unit ----
def money(value: Any) -> str:
    if value is None:
        return "–"
    value = float(value)
    if value == 0:
        return "$0"
    if abs(value) >= 100:
        return f"${value:,.2f}"
    if abs(value) >= 0.01:
        return f"${value:,.4f}"
    return f"${value:.6f}"


def milliseconds(value: Any) -> str:
    if value is None:
        return "–"
    value = float(value)
    return (
        f"{value / 1000:.2f} s"
        if value >= 10_000
        else f"{value:,.0f} ms"
        if value >= 10
        else f"{value:.1f} ms"
    )


def percent(value: Any) -> str:
    if value is None:
        return "–"
    return f"{float(value) * 100:.1f}%"


def count(value: Any) -> str:
    return "–" if value is None else f"{int(value):,}"


def when(value: Any) -> str:
    if value is None:
        return "–"
    return datetime.fromtimestamp(float(value), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def short(value: Any, size: int = 12) -> str:
    """A long id (a key hash) cut to its start: enough to tell keys apart on a page."""
    if value is None:
        return "–"
    text = str(value)
    return text if len(text) <= size + 1 else text[:size] + "…"


def pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()


def qs(params: Mapping[str, Any], **changes: Any) -> str:
    merged = {k: v for k, v in {**params, **changes}.items() if v not in (None, "")}
    return urlencode(merged)


def script_json(value: Any) -> str:
    """``value`` as JSON to put inside a ``<script>`` element: ``<``, ``>`` and ``&`` as ``\\u``
    escapes, so a model name holding ``</script>`` cannot end the element and become markup
    (the JSON parses to the same value)."""
    text = orjson.dumps(value, default=_finite).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


# ---- the pages ----
def overview(
    viewer: Viewer,
    ctx: UiContext,
    params: Mapping[str, str],
    data: dict[str, Any],
    breakdown: dict[str, Any],
) -> str:
    chart = {
        "bucket": data["range"]["bucket"],
        "since": data["range"]["since"],
        "until": data["range"]["until"],
        "series": data["series"],
        "tokens_by_model": data["tokens_by_model"],
    }
    return render(
        "overview.html",
        viewer,
        ctx,
        page="overview",
        params=params,
        range=data["range"],
        totals=data["totals"],
        breakdown=breakdown,
        chart_json=script_json(chart),
    )


def logs(viewer: Viewer, ctx: UiContext, params: Mapping[str, str], found: dict[str, Any]) -> str:
    return render("logs.html", viewer, ctx, page="logs", params=params, found=found)


def call(viewer: Viewer, ctx: UiContext, found: dict[str, Any]) -> str:
    return render("call.html", viewer, ctx, page="logs", params={}, c=found, row=found["row"])


def spend(
    viewer: Viewer,
    ctx: UiContext,
    params: Mapping[str, str],
    found: dict[str, Any],
    budgets: dict[str, list[dict[str, Any]]] | None,
) -> str:
    return render("spend.html", viewer, ctx, page="spend", params=params, found=found, budgets=budgets)


def health(viewer: Viewer, ctx: UiContext, body: dict[str, Any], store: Any) -> str:
    from .._secrets import scrub

    where = scrub(repr(store)) if store is not None else None  # a server store's URL may hold a password
    return render("health.html", viewer, ctx, page="health", params={}, body=body, store=where)


def login(ctx: UiContext, problem: str | None, target: str) -> str:
    return render("login.html", None, ctx, page="login", params={}, problem=problem, target=target)


def no_store(viewer: Viewer, ctx: UiContext) -> str:
    return render("no_store.html", viewer, ctx, page="", params={})


def message(viewer: Viewer | None, ctx: UiContext, text: str, status: int) -> str:
    return render("message.html", viewer, ctx, page="", params={}, text=text, status=status)


__all__ = ["count", "milliseconds", "money", "percent", "render"]
