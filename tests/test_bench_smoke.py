"""bench/ stays runnable: every script compiles, the shared modules import, and a tiny smoke run measures lmgate.

The real benchmarks (make bench) are too slow and noisy for CI; this only proves the harness works.
"""

from __future__ import annotations

import json
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (make test installs it)")
def test_forward_scenario_quick_run():
    """bench/scenarios/forward.py --quick measures the upstream alone, lmgate's proxy and the bare forwarder
    forwarding to it: real figures for every server, no errors, and the issue-18 targets table."""
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH / "scenarios" / "forward.py"),
            "--quick",
            "--markdown",
            "--servers",
            "upstream",
            "lmgate",
            "bare",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["errors"] == [] and summary["skipped"] == {}
    for server in ("upstream", "lmgate", "bare"):
        figures = summary["servers"][server]
        assert figures["rps_c50"]["median"] > 0 and figures["stream_ttfb_ms"]["median"] > 0
        assert figures["errors"]["median"] == 0
    assert summary["servers"]["lmgate"]["cpu_ms_per_req"]["median"] > 0
    assert "added_p50_c1_ms" in summary["servers"]["lmgate"]
    assert "| issue 18 target (lmgate) |" in out.stdout


def test_the_typical_request_and_answer_have_their_sizes():
    """`--body typical` (bench/store_instructions.py) sends forward.py's TYPICAL_BODY, a chat request
    of ~2.5 kB, and starts the fake upstream with `--answer-words 250`: its answer then carries that
    many words, in OpenAI's shape."""
    import http.client

    sys.path[:0] = [str(BENCH), str(BENCH / "scenarios")]
    try:
        from _common import start_helper, stop_helper
        from forward import TYPICAL_BODY
    finally:
        del sys.path[:2]
    request = json.loads(TYPICAL_BODY)
    assert 2000 < len(TYPICAL_BODY) < 4000
    assert [m["role"] for m in request["messages"]] == ["system", "user", "assistant", "user"]
    upstream, port = start_helper("fake_openai.py", "--max-seconds", "60", "--answer-words", "250")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(
            "POST", "/v1/chat/completions", body=TYPICAL_BODY, headers={"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        answer = json.loads(response.read())
        conn.close()
    finally:
        stop_helper(upstream)
    assert response.status == 200
    assert len(answer["choices"][0]["message"]["content"].split(" ")) == 250
