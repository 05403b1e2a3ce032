"""Attacks on the dashboard (issue 16 review), each against a real ``lmgate ui`` subprocess on
a store file holding hostile calls: markup in a model name and a prompt, spreadsheet formulas
in CSV cells, credentials inside a stored payload, non-finite times, login guessing and a
login form posted by another site."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from test_proxy_server import free_port
from test_ui_local import lmgate_ui

pytest.importorskip("sqlalchemy")
pytest.importorskip("jinja2")

from lmgate.store import open_store  # noqa: E402
from lmgate.store.rows import row_from_payload  # noqa: E402
from lmgate.ui.throttle import MAX_FAILURES  # noqa: E402

EVIL_MODEL = '</script><img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
EVIL_PROMPT = "<script>window.__xss=3</script><b>bold?</b>"
META_SECRET = "plain-metadata-secret-value"  # no key shape: only its name says it is a secret
PROMPT_KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz012345"
UI_KEY = "sk-review-ui-key-0123456789"


def payload(call_id: str, start: float, **extra: Any) -> dict[str, Any]:
    return {
        "litellm_call_id": call_id,
        "startTime": start,
        "endTime": start + 0.25,
        "status": "success",
        "model": "gpt-4o-mini",
        "total_tokens": 10,
        "response_cost": 0.002,
        "messages": [{"role": "user", "content": "hello"}],
        **extra,
    }


def hostile_store(db: Path, now: float) -> None:
    store = open_store(str(db))
    rows = [
        payload(
            "evil-model", now - 60, model=EVIL_MODEL, messages=[{"role": "user", "content": EVIL_PROMPT}]
        ),
        payload(
            "formulas",
            now - 50,
            model='=HYPERLINK("http://evil.example","x")',
            request_tags=["+1+1", '@SUM(A1), "quoted"\nnext line', "-2"],
            metadata={"user_api_key_alias": "=cmd|' /C calc'!A0"},
        ),
        payload(
            "secrets",
            now - 40,
            messages=[{"role": "user", "content": f"my key is {PROMPT_KEY}"}],
            metadata={
                "api_key": META_SECRET,
                "headers": {"Authorization": "Bearer abcdefghijklmnop0123", "x-trace": "fine"},
            },
            model_parameters={"temperature": 0.2, "api_key": META_SECRET},
        ),
    ]
    store.write(row_from_payload(orjson.dumps(r)) for r in rows)
    store.close()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import time

    db = tmp_path_factory.mktemp("ui-review") / "logs.sqlite3"
    hostile_store(db, time.time())
    with lmgate_ui(db) as url:
        yield url


def test_a_model_name_holding_script_tags_stays_data_in_the_overview(hostile: str) -> None:
    page = httpx.get(f"{hostile}/ui/overview", params={"range": "all"}, timeout=10).text
    assert page.count("</script>") == page.count("<script"), "an element was closed early"
    assert "<img src=x" not in page and "<script>window.__xss" not in page
    policy = httpx.get(f"{hostile}/ui/overview", timeout=10).headers["content-security-policy"]
    assert "form-action 'self'" in policy and "base-uri 'none'" in policy  # no form posts elsewhere
    data = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page, re.S)
    assert data is not None
    groups = {r["group"] for r in json.loads(data.group(1))["tokens_by_model"]}
    assert EVIL_MODEL in groups  # the same name, once parsed
    for path in ("/ui/logs", "/ui/logs/evil-model", "/ui/overview?range=all&by=model"):
        text = httpx.get(f"{hostile}{path}", timeout=10).text
        assert "<img src=x" not in text and "<script>window.__xss" not in text, path


def test_csv_cells_a_spreadsheet_would_run_are_text_and_commas_quotes_newlines_survive(hostile: str) -> None:
    r = httpx.get(f"{hostile}/ui/api/logs", params={"format": "csv", "search": "HYPERLINK"}, timeout=10)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 1
    row = rows[0]
    assert row["model"] == '\'=HYPERLINK("http://evil.example","x")'
    assert row["key_alias"] == "'=cmd|' /C calc'!A0"
    assert json.loads(row["tags"]) == ["+1+1", '@SUM(A1), "quoted"\nnext line', "-2"]  # a JSON list: text
    by_model = httpx.get(
        f"{hostile}/ui/api/breakdown", params={"format": "csv", "range": "all", "by": "key"}, timeout=10
    )
    groups = [g["group"] for g in csv.DictReader(io.StringIO(by_model.text))]
    assert "'=cmd|' /C calc'!A0" in groups and not any(g.startswith("=") for g in groups)
    tags = httpx.get(
        f"{hostile}/ui/api/breakdown", params={"format": "csv", "range": "all", "by": "tag"}, timeout=10
    )
    groups = [g["group"] for g in csv.DictReader(io.StringIO(tags.text))]
    assert {"'+1+1", "'-2", '\'@SUM(A1), "quoted"\nnext line'} <= set(groups)
    # numbers stay numbers (a negative cost is no formula)
    assert all(not g["requests"].startswith("'") for g in csv.DictReader(io.StringIO(tags.text)))


def test_credentials_inside_a_stored_payload_never_reach_the_detail(hostile: str) -> None:
    body = httpx.get(f"{hostile}/ui/api/logs/secrets", timeout=10)
    page = httpx.get(f"{hostile}/ui/logs/secrets", timeout=10)
    assert body.status_code == 200 and page.status_code == 200
    for text in (body.text, page.text):
        assert META_SECRET not in text
        assert "abcdefghijklmnop0123" not in text
        assert PROMPT_KEY not in text and PROMPT_KEY[12:] not in text
    detail = body.json()
    assert detail["metadata"]["headers"]["x-trace"] == "fine"  # the rest is shown as it was
    assert detail["model_parameters"]["temperature"] == 0.2


def test_non_finite_or_overflowing_times_are_a_clear_400(hostile: str) -> None:
    for params in ({"since": "nan"}, {"until": "inf"}, {"since": "-1e999"}):
        for path in ("/ui/api/logs", "/ui/api/overview"):
            r = httpx.get(f"{hostile}{path}", params=params, timeout=10)
            assert r.status_code == 400, (path, params, r.text)
            assert "finite" in r.json()["error"]["message"]


def test_paging_past_the_end_is_an_empty_page(hostile: str) -> None:
    r = httpx.get(f"{hostile}/ui/api/logs", params={"offset": 1000, "limit": 10}, timeout=10).json()
    assert r["rows"] == [] and r["has_more"] is False
    page = httpx.get(f"{hostile}/ui/logs", params={"offset": 1000}, timeout=10)
    assert page.status_code == 200 and "No calls match" in page.text


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import time

    db = tmp_path_factory.mktemp("ui-review-key") / "logs.sqlite3"
    hostile_store(db, time.time())
    with lmgate_ui(db, {"LMGATE_UI_KEY": UI_KEY}) as url:
        yield url


def test_a_login_form_posted_by_another_site_is_refused(keyed: str) -> None:
    port = keyed.rsplit(":", 1)[1]
    evil = httpx.post(
        f"{keyed}/ui/login", data={"key": UI_KEY}, headers={"Origin": "https://evil.example"}, timeout=10
    )
    assert evil.status_code == 403 and "set-cookie" not in evil.headers
    cross = httpx.post(
        f"{keyed}/ui/login", data={"key": UI_KEY}, headers={"Sec-Fetch-Site": "cross-site"}, timeout=10
    )
    assert cross.status_code == 403 and "set-cookie" not in cross.headers
    assert (
        httpx.post(f"{keyed}/ui/logout", headers={"Origin": "https://evil.example"}, timeout=10).status_code
        == 403
    )
    own = httpx.post(
        f"{keyed}/ui/login", data={"key": UI_KEY}, headers={"Origin": f"http://127.0.0.1:{port}"}, timeout=10
    )
    assert own.status_code == 303 and "lmgate_ui=" in own.headers["set-cookie"]
    # behind a reverse proxy that rewrites Host the browser's own word still counts
    proxied = httpx.post(
        f"{keyed}/ui/login",
        data={"key": UI_KEY},
        headers={"Origin": "https://dash.example", "Sec-Fetch-Site": "same-origin"},
        timeout=10,
    )
    assert proxied.status_code == 303


def test_login_guessing_is_bounded(keyed: str) -> None:
    with httpx.Client(base_url=keyed, timeout=10) as client:
        for i in range(MAX_FAILURES):
            r = client.post("/ui/login", data={"key": f"sk-guess-{i}"})
            assert r.status_code == 401, (i, r.text)
        blocked = client.post("/ui/login", data={"key": UI_KEY})  # even the right key now waits
        assert blocked.status_code == 429 and "set-cookie" not in blocked.headers
        assert 1 <= int(blocked.headers["retry-after"]) <= 300 and "Too many" in blocked.text
        # the API with a Bearer key is not the login form: scripts keep working
        ok = client.get("/ui/api/overview", headers={"Authorization": f"Bearer {UI_KEY}"})
        assert ok.status_code == 200


def lmgate_logs(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lmgate", "logs", "--url", url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_lmgate_logs_url_shows_the_call_asked_for_and_no_password(hostile: str) -> None:
    # an id holding '?' is that id, not a query string that drops back to another call
    shown = lmgate_logs(hostile, "show", "secrets?x=1")
    assert shown.returncode != 0 and "secrets?x=1" in shown.stderr and "my key is" not in shown.stdout
    assert lmgate_logs(hostile, "show", "secrets").returncode == 0
    closed = f"http://someone:hunter2-password@127.0.0.1:{free_port()}"
    refused = lmgate_logs(closed, "tail")
    assert refused.returncode == 1 and "cannot reach" in refused.stderr
    assert "hunter2-password" not in refused.stderr


def test_lmgate_logs_on_a_file_masks_credentials_and_quotes_formulas(tmp_path: Path) -> None:
    import time

    db = tmp_path / "logs.sqlite3"
    hostile_store(db, time.time())
    local = [sys.executable, "-m", "lmgate", "logs", "--db", str(db)]
    shown = subprocess.run(
        [*local, "show", "secrets"], capture_output=True, text=True, timeout=60, check=True
    )
    assert META_SECRET not in shown.stdout and PROMPT_KEY not in shown.stdout
    assert '"temperature": 0.2' in shown.stdout
    exported = subprocess.run(
        [*local, "export", "--format", "csv"], capture_output=True, text=True, timeout=60, check=True
    )
    rows = {r["call_id"]: r for r in csv.DictReader(io.StringIO(exported.stdout))}
    assert rows["formulas"]["model"] == '\'=HYPERLINK("http://evil.example","x")'
    assert rows["formulas"]["key_alias"] == "'=cmd|' /C calc'!A0"
    assert json.loads(rows["formulas"]["tags"])[0] == "+1+1"


def test_without_a_login_key_only_this_machine_sees_the_dashboard(hostile: str) -> None:
    # uvicorn takes the client's address from X-Forwarded-For sent by 127.0.0.1 (a reverse
    # proxy on this machine): a client elsewhere, reaching a keyless dashboard through it
    elsewhere = {"X-Forwarded-For": "203.0.113.7"}
    api = httpx.get(f"{hostile}/ui/api/logs", headers=elsewhere, timeout=10)
    assert api.status_code == 401 and "only on this machine" in api.json()["error"]["message"]
    assert httpx.get(f"{hostile}/ui/api/logs/secrets", headers=elsewhere, timeout=10).status_code == 401
    page = httpx.get(f"{hostile}/ui/logs", headers=elsewhere, timeout=10, follow_redirects=True)
    assert page.status_code == 403 and "only on this machine" in page.text and "my key is" not in page.text
    assert httpx.get(f"{hostile}/ui/api/logs", timeout=10).status_code == 200  # this machine: open
