"""Draw docs/benchmarks.png from bench/results/latest.json: lmgate and LiteLLM side by side.

Runs with the reference venv's interpreter (matplotlib lives there, not in the project venv):
    bench/.venv-ref/bin/python bench/chart.py bench/results/latest.json docs/benchmarks.png
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - backend first

# (scenario, metric, panel title): the headline numbers; a panel with no data is left out
PANELS = [
    ("import", "import_ms", "import time (ms)"),
    ("import", "peak_rss_mb", "peak RSS after import (MiB)"),
    ("mock_sync", "cpu_us_per_call", "sync mock: CPU per call (µs)"),
    ("mock_sync", "calls_per_s", "sync mock: calls/s"),
    ("mock_async", "cpu_us_per_call", "async mock, 100 concurrent: CPU per call (µs)"),
    ("mock_async", "hook_delay_p99_ms", "async: return → hook p99 (ms)"),
    ("overhead_http", "overhead_ms", "added latency over raw httpx (ms)"),
    ("generic_api", "records_per_s", "generic API logger: records/s"),
    ("generic_api", "records_lost", "generic API logger: records lost"),
    ("generic_api", "lost_after_restart", "records lost after a restart (lmgate: spool replay)"),
    ("proxy", "rps_c50", "proxy: requests/s, concurrency 50"),
    ("proxy", "p99_c50_ms", "proxy: p99 latency at c50 (ms)"),
    ("proxy", "startup_s", "proxy: start-up (s)"),
    ("proxy", "idle_rss_mb", "proxy: idle RSS (MiB)"),
]
COLORS = {"lmgate": "#2b8cbe", "litellm": "#bdbdbd"}
NAMES = {"lmgate": "lmgate", "litellm": "LiteLLM"}


def panel_data(summary: dict, scenario: str, metric: str) -> list[tuple[str, dict]]:
    rows = []
    for variant, agg in summary["scenarios"].get(scenario, {}).items():
        entry = agg["metrics"].get(metric)
        if entry and ("lmgate" in entry or "litellm" in entry):
            rows.append((variant, entry))
    return rows


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        summary = json.load(f)
    panels = [(s, m, t, panel_data(summary, s, m)) for s, m, t in PANELS]
    panels = [p for p in panels if p[3]]
    if not panels:
        sys.exit("nothing to draw")
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (_s, _m, title, data) in zip(axes.flat, panels, strict=False):
        labels = [v for v, _ in data]
        width = 0.38
        for k, impl in enumerate(("lmgate", "litellm")):
            xs = [i + (k - 0.5) * width for i in range(len(data))]
            meds = [e.get(impl, {}).get("median", 0) for _, e in data]
            lo = [m - e.get(impl, {}).get("min", m) for m, (_, e) in zip(meds, data, strict=False)]
            hi = [e.get(impl, {}).get("max", m) - m for m, (_, e) in zip(meds, data, strict=False)]
            bars = ax.bar(xs, meds, width, yerr=[lo, hi], capsize=2, color=COLORS[impl], label=NAMES[impl])
            if data and data[0][1].get("ratio") is False:
                # counts (records lost): a zero bar is invisible, so print every value
                ax.bar_label(bars, labels=[f"{m:.0f}" for m in meds], fontsize=7, padding=1)
        meds_all = [e[impl]["median"] for _, e in data for impl in ("lmgate", "litellm") if impl in e]
        if meds_all and min(meds_all) > 0 and max(meds_all) / min(meds_all) > 20:
            # sides often differ 10-1000×: on a linear axis the smaller bar would be invisible
            ax.set_yscale("log")
            title += " — log scale"
        for i, (_, e) in enumerate(data):
            if "lmgate" not in e:
                ax.annotate(
                    "lmgate: n/a",
                    (i - 0.19, 0.02),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    fontsize=7,
                    color="#555555",
                    rotation=90,
                    va="bottom",
                )
            r = e.get("ratio_median")
            if r:
                ax.annotate(
                    f"{r:.1f}×" if r >= 1 else f"{r:.2f}×",
                    (i, 1.0),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    va="top",
                    fontsize=8,
                    color="#08519c" if r >= 1 else "#a50f15",
                )
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(len(data)))
        ax.set_xticklabels(labels, fontsize=7, rotation=15)
        ax.tick_params(axis="y", labelsize=7)
        ax.margins(y=0.15)
    axes.flat[0].legend(fontsize=8, loc="upper left")
    meta = summary.get("meta", {})
    fig.suptitle(
        f"lmgate vs LiteLLM {meta.get('versions', {}).get('litellm', '')} — {meta.get('cpu', '')}, "
        f"{meta.get('cores', '')} cores ({'quick' if meta.get('quick') else 'full'} run; "
        "label = lmgate is N× better)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main()
