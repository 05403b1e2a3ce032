#!/usr/bin/env python3
"""Benchmark lmgate against the reference implementation (LiteLLM) on this machine, in one run.

    python bench/run.py                       # full run (~20 min), writes docs/benchmarks.{md,png}
    python bench/run.py --quick               # fewer repeats, shorter loops (under 2 min)
    python bench/run.py --only mock_sync proxy --repeats 3
    python bench/run.py --smoke               # lmgate only, seconds, no reference venv needed (CI)
    python bench/run.py --only forward        # the forwarding path: lmgate, LiteLLM, Portkey, a bare forwarder

Every measurement is a fresh worker process (bench/scenarios/*.py) started alternately for lmgate
(project venv) and LiteLLM (bench/.venv-ref, made by bench/setup_ref.sh), A B A B ..., so that slow
drift on the machine hits both sides alike.  Each worker prints one JSON line; this script keeps the raw
lines under bench/results/raw/, the summary in bench/results/latest.json, and renders the report.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SCEN = BENCH / "scenarios"
RESULTS = BENCH / "results"
PY = {"lmgate": ROOT / ".venv" / "bin" / "python", "litellm": BENCH / ".venv-ref" / "bin" / "python"}
IMPLS = ("lmgate", "litellm")

sys.path.insert(0, str(BENCH))
import report  # noqa: E402 - bench/ is not a package; report.py sits next to this file

sys.path.insert(0, str(BENCH / "scenarios"))
from generic_api import VARIANTS as GENERIC_API_VARIANTS  # noqa: E402 - stdlib only; one list of variants


@dataclass
class Scenario:
    script: str
    variants: list[str]
    repeats: int  # full run
    quick_repeats: int
    timeout: float  # seconds per worker process
    quick_variants: list[str] | None = None  # None = all
    # full mode: one process per variant (no state shared between variants); quick mode groups them
    split_variants: bool = True


SCENARIOS: dict[str, Scenario] = {
    "import": Scenario("import_time.py", ["import"], 5, 2, 60),
    "mock_sync": Scenario(
        "mock_sync.py",
        ["no_callbacks", "stream", "success_fn", "custom_logger", "logger_and_fn", "cache_hit"],
        5,
        2,
        120,
    ),
    "mock_async": Scenario("mock_async.py", ["no_callbacks", "custom_logger"], 5, 1, 120),
    "overhead_http": Scenario(
        "overhead_http.py",
        ["sync", "sync_stream", "async", "async_stream", "sync_hook", "async_hook"],
        3,
        1,
        180,
    ),
    # these drivers start a fresh child / server per variant themselves
    "generic_api": Scenario(
        "generic_api.py",
        GENERIC_API_VARIANTS,
        3,
        1,
        600,
        # every LiteLLM child costs ~5 s of import and exit; quick mode keeps the variants that matter most
        quick_variants=["normal", "receiver_500", "sigkill", "throughput", "throughput_write_ahead"],
        split_variants=False,
    ),
    "proxy": Scenario(
        "proxy.py",
        ["plain", "generic_api", "store"],
        3,
        1,
        600,
        quick_variants=["plain"],
        split_variants=False,
    ),
}
SMOKE = {"import": ["import"], "mock_sync": ["no_callbacks"]}
# not an lmgate-vs-LiteLLM pair of workers: one driver starts every server itself (scenarios/forward.py)
FORWARD = "forward"
FORWARD_TIMEOUT_S = {True: 600, False: 1800}  # quick, full


def worker_env(impl: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if impl == "litellm":
        # no network for the price map, no telemetry, no banners: the reference runs offline like we do
        env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR")
    return env


def run_worker(impl: str, sc: Scenario, variants: list[str], quick: bool, raw_dir: Path, tag: str) -> dict:
    """One fresh worker process; returns {variant: result} (result has metrics, skipped or error)."""
    cmd = [str(PY[impl]), sc.script, "--impl", impl, "--variant", ",".join(variants)]
    if quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    # own process group, so a worker that overruns goes away together with the servers it started
    proc = subprocess.Popen(
        cmd,
        cwd=SCEN,
        env=worker_env(impl),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=sc.timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        out, err = stop_group(proc)
        err, rc = f"{err}\ntimed out after {sc.timeout}s", -1
    (raw_dir / f"{tag}.out").write_text(out)
    (raw_dir / f"{tag}.err").write_text(err)
    line = next((ln for ln in reversed(out.splitlines()) if ln.startswith("{")), None)
    if line is None:
        why = f"worker failed (exit {rc}, {time.perf_counter() - t0:.1f}s): {err.strip().splitlines()[-1:]}"
        return {v: {"error": why} for v in variants}
    return json.loads(line)["results"]


def stop_group(proc: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM first (drivers then stop their servers in `finally`), SIGKILL if that is not enough."""
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            out, err = proc.communicate(timeout=grace)
            return out or "", err or ""
        except subprocess.TimeoutExpired:
            continue
    return "", ""


def ensure_reference() -> bool:
    if PY["litellm"].exists() and any((BENCH / ".venv-ref").glob(".installed-litellm-*")):
        return True
    print("setting up the reference venv (bench/setup_ref.sh) ...", flush=True)
    r = subprocess.run(["bash", str(BENCH / "setup_ref.sh")])
    return r.returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, shorter loops")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=[*SCENARIOS, FORWARD],
        metavar="SCENARIO",
        help=", ".join([*SCENARIOS, FORWARD]),
    )
    ap.add_argument("--repeats", type=int, help="processes per side and variant (default: per scenario)")
    ap.add_argument("--smoke", action="store_true", help="lmgate only, tiny, no reference, no report")
    ap.add_argument("--no-ref", action="store_true", help="measure lmgate only")
    ap.add_argument("--no-report", action="store_true", help="do not rewrite docs/benchmarks.md/.png")
    ap.add_argument("--report-only", action="store_true", help="re-render the docs from latest.json")
    args = ap.parse_args()
    if args.report_only:
        write_report(RESULTS / "latest.json")
        return 0

    started = time.time()
    load_start = [round(x, 2) for x in os.getloadavg()]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    raw_dir = RESULTS / "raw" / stamp
    raw_dir.mkdir(parents=True, exist_ok=True)

    impls: tuple[str, ...] = IMPLS
    if args.smoke or args.no_ref:
        impls = ("lmgate",)
    elif not ensure_reference():
        print("reference venv could not be set up; measuring lmgate only", flush=True)
        impls = ("lmgate",)

    quick = args.quick or args.smoke
    plan = SMOKE if args.smoke else {n: None for n in (args.only or [*SCENARIOS, FORWARD])}
    summary: dict = {"scenarios": {}}
    for name, smoke_variants in plan.items():
        if name == FORWARD:
            summary[FORWARD] = run_forward(quick, args.repeats, impls, raw_dir)
            continue
        sc = SCENARIOS[name]
        t_scenario = time.time()
        chosen = smoke_variants or ((sc.quick_variants or sc.variants) if quick else sc.variants)
        repeats = 1 if args.smoke else (args.repeats or (sc.quick_repeats if quick else sc.repeats))
        groups = [[v] for v in chosen] if (sc.split_variants and not quick) else [chosen]
        if name == "import":
            # one untimed lmgate import first: its (editable, changing) byte-code cache gets written now,
            # not in run 1; pip already compiled LiteLLM's at install time
            run_worker("lmgate", sc, chosen, quick, raw_dir, f"{name}-warmup-lmgate")
        runs: dict = {v: {impl: [] for impl in impls} for v in chosen}
        for group in groups:
            skipped: dict[str, str] = {}
            for rep in range(repeats):
                for impl in impls:  # alternate A B A B ...
                    todo = [v for v in group if not (impl == "lmgate" and v in skipped)]
                    if not todo:
                        continue
                    tag = f"{name}-{'+'.join(todo)}-{impl}-{rep}"
                    res = run_worker(impl, sc, todo, quick, raw_dir, tag)
                    for v in todo:
                        r = res.get(v, {"error": "no result"})
                        runs[v][impl].append(r)
                        if impl == "lmgate" and "skipped" in r:
                            if r["skipped"] not in skipped.values():
                                print(f"skipped: {name}/{v} (lmgate): {r['skipped']}", flush=True)
                            skipped[v] = r["skipped"]
                        elif "error" in r:
                            print(f"error: {name}/{v} ({impl}): {r['error']}", flush=True)
        summary["scenarios"][name] = {v: report.aggregate(runs[v], impls) for v in chosen}
        print(report.console_table(name, summary["scenarios"][name]), flush=True)
        print(f"  ({time.time() - t_scenario:.0f} s)", flush=True)

    summary["meta"] = report.machine_meta(PY, impls)
    summary["meta"].update(
        # the machine may be shared (other jobs inflate both sides' numbers): record how busy it was
        loadavg_end=[round(x, 2) for x in os.getloadavg()],
        loadavg_start=load_start,
        quick=quick,
        smoke=args.smoke,
        command=" ".join(["python bench/run.py", *sys.argv[1:]]),
        started=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        duration_s=round(time.time() - started, 1),
        raw_dir=str(raw_dir.relative_to(ROOT)),
    )
    meta = summary["meta"]
    summary["runs"] = {
        n: {k: meta[k] for k in ("command", "started", "quick", "raw_dir")} for n in summary["scenarios"]
    }
    # a one-sided run (smoke/CI, --no-ref) leaves the tracked files alone: its summary stays with its raw output
    if impls != IMPLS:
        out = raw_dir / ("smoke.json" if args.smoke else "summary.json")
        out.write_text(json.dumps(summary, indent=1))
        print(f"\nwrote {out.relative_to(ROOT)} ({meta['duration_s']} s)")
        return 1 if report.has_errors(summary) else 0
    if FORWARD in summary:
        summary["runs"][FORWARD] = {k: meta[k] for k in ("command", "started", "quick", "raw_dir")}
    out = RESULTS / "latest.json"
    if args.only and out.exists():
        summary = merge_previous(summary, json.loads(out.read_text()))
    out.write_text(json.dumps(summary, indent=1))  # key order = run order
    print(f"\nwrote {out.relative_to(ROOT)} ({meta['duration_s']} s)")
    if not args.no_report:
        write_report(out)
    return 1 if report.has_errors(summary) else 0


def run_forward(quick: bool, rounds: int | None, impls: tuple[str, ...], raw_dir: Path) -> dict:
    """scenarios/forward.py in one process: it starts the upstream and every server itself, one at a time."""
    if not (BENCH / ".portkey" / "node_modules" / "@portkey-ai" / "gateway").exists():
        print("setting up the Portkey gateway (bench/setup_portkey.sh) ...", flush=True)
        subprocess.run(["bash", str(BENCH / "setup_portkey.sh")])  # on failure forward.py skips Portkey
    cmd = [str(PY["lmgate"]), "forward.py", "--markdown"]
    if quick:
        cmd.append("--quick")
    if rounds:
        cmd += ["--rounds", str(rounds)]
    if "litellm" not in impls:
        cmd += ["--servers", "upstream", "lmgate", "lmgate_store", "portkey", "bare", "bare_httpx"]
    t0 = time.time()
    proc = subprocess.Popen(
        cmd,
        cwd=SCEN,
        env=worker_env("lmgate"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=FORWARD_TIMEOUT_S[quick])
    except subprocess.TimeoutExpired:
        out, err = stop_group(proc)
        err += "\ntimed out"
    (raw_dir / "forward.out").write_text(out)
    (raw_dir / "forward.err").write_text(err)
    line = next((ln for ln in reversed(out.splitlines()) if ln.startswith("{")), None)
    if line is None:
        why = f"forward.py failed (exit {proc.returncode}): {err.strip().splitlines()[-1:]}"
        print(f"error: forward: {why}", flush=True)
        return {"servers": {}, "errors": [why], "skipped": {}, "meta": {}}
    result = json.loads(line)
    print("\n## forward\n" + report.forward_table(result), flush=True)
    print(f"  ({time.time() - t0:.0f} s)", flush=True)
    for e in result.get("errors", []):
        print(f"error: forward: {e}", flush=True)
    return result


def merge_previous(new: dict, old: dict) -> dict:
    """--only re-measures some scenarios: keep the others from the previous latest.json, marked as such."""
    scenarios, runs = {}, {}
    for name in SCENARIOS:
        if name in new["scenarios"]:
            scenarios[name], runs[name] = new["scenarios"][name], new["runs"][name]
        elif name in old.get("scenarios", {}):
            scenarios[name] = old["scenarios"][name]
            om = old.get("meta", {})
            runs[name] = old.get("runs", {}).get(name) or {
                k: om.get(k) for k in ("command", "started", "quick", "raw_dir")
            }
    if FORWARD in new:
        runs[FORWARD] = new["runs"][FORWARD]
    elif FORWARD in old:
        new = {**new, FORWARD: old[FORWARD]}
        runs[FORWARD] = old.get("runs", {}).get(FORWARD, {})
    return {**new, "scenarios": scenarios, "runs": runs}


def write_report(summary_path: Path) -> None:
    md = ROOT / "docs" / "benchmarks.md"
    md.write_text(report.markdown(json.loads(summary_path.read_text())))
    print(f"wrote {md.relative_to(ROOT)}")
    if PY["litellm"].exists():
        # matplotlib lives in the reference venv only; the project venv stays lean
        png = ROOT / "docs" / "benchmarks.png"
        r = subprocess.run([str(PY["litellm"]), str(BENCH / "chart.py"), str(summary_path), str(png)])
        if r.returncode == 0:
            print(f"wrote {png.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
