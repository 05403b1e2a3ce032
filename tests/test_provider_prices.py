"""Every model docs/providers/ names has its price in prices.json, dated and sourced, as the page says.

Issue 14 point 6: every model named in ``docs/providers/`` has input, output, cache-read,
cache-write and reasoning prices where the vendor publishes them, with the date they were taken;
an unknown price stays ``None`` with its reason, never 0. These tests read the pages themselves:

* each row of a page's ``## Prices`` table names models that have an entry, with ``source`` and
  ``as_of`` (or, unconfirmed, ``price_unknown`` and ``checked``), and the row's figures are the
  entry's: input, output, cache read, cache write, per 1M tokens; a "—" is a price the vendor does
  not publish apart, which the entry must not invent either;
* each ``<provider>/<model>`` the page names (examples, set-up) costs something or ``None`` with a
  reason: an entry, or a statement on the page that it costs ``None``;
* a model listed without a confirmed price costs ``None`` with the entry's reason, not 0.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from lmgate.cost import compute_cost, find_price

PAGES = sorted((Path(__file__).resolve().parent.parent / "docs" / "providers").glob("*.md"))
PER_MILLION = 1e-6
# a table column's header -> the price-entry key it shows
COLUMNS = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache read": "cache_read_input_token_cost",
    "cached input": "cache_read_input_token_cost",
    "cache write": "cache_creation_input_token_cost",
}
NAMED = r"`((?:bedrock/|gemini/|vertex_ai/)[^`\s]+)`"  # a `<provider>/<model>` on a page
UNCONFIRMED = "unconfirmed"  # what a table row says in place of a price that could not be confirmed


def price_rows(page: Path) -> list[tuple[list[str], dict[str, str]]]:
    """(model ids, {column header: cell}) of each row of the page's ``## Prices`` tables."""
    section = re.search(r"^## Prices\n(.*?)(?=^## |\Z)", page.read_text(), re.S | re.M)
    if section is None:
        return []
    rows: list[tuple[list[str], dict[str, str]]] = []
    header: list[str] = []
    for line in section.group(1).splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = [c.lower() for c in cells]
        elif not set(line) <= set("|-: "):
            ids = [m for m in re.findall(r"`([^`]+)`", cells[0]) if not re.search(r"[…<{*]|^-", m)]
            rows.append((ids, dict(zip(header, cells, strict=False))))
    return rows


def table_cases() -> list[Any]:
    return [
        pytest.param(model, cells, id=f"{page.stem}:{model}")
        for page in PAGES
        for ids, cells in price_rows(page)
        for model in ids
    ]


@pytest.mark.parametrize(("model", "cells"), table_cases())
def test_each_priced_row_is_the_entry_dated_and_sourced(model, cells):
    found = find_price(model)
    assert found is not None, f"{model} is in a price table but has no entry in prices.json"
    entry = found[1]
    assert entry.get("source", "").startswith("https://"), f"{model}: no source page"
    if entry.get("input_cost_per_token") is None:  # listed unconfirmed: why, and when it was looked for
        assert entry.get("price_unknown") and re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry.get("checked", ""))
        assert UNCONFIRMED in cells.get("input", "").lower(), (
            f"{model}: the page shows a price the entry lacks"
        )
        return
    assert re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", entry.get("as_of", "")), f"{model}: no as_of date"
    if cells.get("input", "").startswith("as on"):  # the row points at another page's table
        return
    for column, key in COLUMNS.items():
        cell = cells.get(column)
        if cell is None:
            continue
        if cell == "—":
            # not published apart; an embedding model's output price is 0 (it has no output tokens)
            embedding = key == "output_cost_per_token" and entry.get(key) == 0.0
            assert key not in entry or embedding, f"{model}: {key} priced in prices.json, '—' on the page"
        else:
            assert entry.get(key) == pytest.approx(float(cell) * PER_MILLION, rel=1e-9), (model, column)


def named_models() -> list[Any]:
    out = []
    for page in PAGES:
        text = page.read_text()
        for model in sorted(set(re.findall(NAMED, text))):
            if not re.search(r"[…<{*]", model):
                out.append(pytest.param(model, text, id=f"{page.stem}:{model}"))
    return out


@pytest.mark.parametrize(("model", "text"), named_models())
def test_each_model_a_page_names_is_priced_or_said_to_cost_none(model, text):
    if find_price(model) is not None:
        return
    # not in the table: the page must say so (e.g. Vertex's per-character embedding prices)
    bare = model.split("/", 1)[1]
    said = [par for par in text.split("\n\n") if f"`{bare}`" in par and "`None`" in par]
    assert said, (
        f"{model} is named in docs/providers but has no price entry and the page does not say it costs None"
    )


@pytest.mark.parametrize(
    "model",
    [
        "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0",
        "bedrock/us.anthropic.claude-3-5-sonnet-20241022-v2:0",  # a cross-region profile: its base model's
        "gemini/gemini-2.0-flash",
        "mistral/mistral-medium-latest",
    ],
)
def test_an_unconfirmed_price_costs_none_with_its_reason_never_zero(model):
    result = compute_cost([model], {"prompt_tokens": 10, "completion_tokens": 5})
    assert result.cost is None and result.breakdown is None
    assert "no confirmed price" in (result.reason or "") and "could not be read" in (result.reason or "")
    # prices given with the call still win
    custom = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
    assert compute_cost([model], {"prompt_tokens": 10, "completion_tokens": 5}, custom).cost == pytest.approx(
        2e-5
    )


def test_a_priced_candidate_wins_over_an_unconfirmed_one():
    """The first candidate with a confirmed price is used (a deployment's base_model, the response's model)."""
    result = compute_cost(["gemini/gemini-2.0-flash", "gemini-2.5-flash-lite"], {"prompt_tokens": 10})
    assert result.cost == pytest.approx(10 * 1e-7) and result.price_key == "gemini-2.5-flash-lite"
