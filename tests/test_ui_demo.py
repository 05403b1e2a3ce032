"""``make dashboard`` (examples/dashboard.py): the proxy on mock models, a burst through the
official openai client, every call stored, and the dashboard's URL printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_proxy_server import free_port

pytest.importorskip("sqlalchemy")
pytest.importorskip("jinja2")
pytest.importorskip("openai")

SCRIPT = Path(__file__).parent.parent / "examples" / "dashboard.py"


def test_the_dashboard_demo_fills_the_store_and_prints_the_url() -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--port", str(port), "--burst", "24", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(
        r"24 calls sent through the openai client \(1 failed on purpose\), 24 stored\.", done.stdout
    )
    assert f"dashboard:  http://127.0.0.1:{port}/ui/overview?range=15m" in done.stdout
    assert re.search(r"log in with the master key  sk-demo-\S+", done.stdout)
