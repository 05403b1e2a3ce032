"""bench/ stays runnable: every script compiles, the shared modules import, and a tiny smoke run measures lmgate.

The real benchmarks (make bench) are too slow and noisy for CI; this only proves the harness works.
"""

from __future__ import annotations

import json
import py_compile
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def test_every_bench_script_compiles():
    """Each Python file under bench/ (the reference's venv, bench/.venv-ref, excluded) is valid Python."""
    scripts = [p for p in BENCH.rglob("*.py") if not any(part.startswith(".venv") for part in p.parts)]
    assert len(scripts) >= 8
    for path in scripts:
        py_compile.compile(str(path), doraise=True)


def test_bench_modules_import():
    """The harness modules import without running anything (no reference venv, no matplotlib needed)."""
    paths = [str(BENCH), str(BENCH / "scenarios")]
    code = f"import sys; sys.path[:0] = {paths!r}; import run, report, _common; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_smoke_run_measures_lmgate():
    """`bench/run.py --smoke` runs one tiny scenario for lmgate and writes a JSON result with real numbers."""
    out = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    written = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("wrote ")]
    assert written, out.stdout
    summary = json.loads((ROOT / written[-1]).read_text())
    variant = summary["scenarios"]["mock_sync"]["no_callbacks"]
    assert variant["sides"]["lmgate"]["errors"] == []
    assert variant["metrics"]["calls_per_s"]["lmgate"]["median"] > 0
    assert variant["metrics"]["cpu_us_per_call"]["lmgate"]["median"] > 0
