"""The dashboard's query API and pages over HTTP, against a real ``lmgate serve`` that served
real traffic (``ui_server.py``): numbers equal the store's, filters, paging, CSV, who sees
what, the login cookie, and ``lmgate logs --url`` on the same proxy."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
from ui_server import MASTER, UiTraffic, start

pytest.importorskip("sqlalchemy")
pytest.importorskip("jinja2")
pytest.importorskip("itsdangerous")

from lmgate.store import Filters  # noqa: E402


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiTraffic]:
    yield from start(tmp_path_factory.mktemp("ui-api"))


@contextmanager
def login(t: UiTraffic, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=t.url, timeout=10) as client:
        r = client.post("/ui/login", data={"key": key, "next": "/ui/logs"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/logs", r.text
        yield client


def test_without_a_login_pages_redirect_and_the_api_answers_401(traffic: UiTraffic) -> None:
    r = httpx.get(f"{traffic.url}/ui/logs?model=x", timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/logs%3Fmodel%3Dx"
    r = traffic.api("/ui/api/overview", as_key=None)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert traffic.api("/ui/api/logs", as_key="sk-wrong").status_code == 401
    assert httpx.get(f"{traffic.url}/ui/login", timeout=10).status_code == 200


def test_a_wrong_key_gets_no_cookie(traffic: UiTraffic) -> None:
    r = httpx.post(f"{traffic.url}/ui/login", data={"key": "sk-not-a-key"}, timeout=10)
    assert r.status_code == 401 and "not valid" in r.text and "set-cookie" not in r.headers


def test_the_session_cookie_is_signed_httponly_strict_and_holds_no_key(traffic: UiTraffic) -> None:
    r = httpx.post(
        f"{traffic.url}/ui/login", data={"key": MASTER, "next": "https://evil.example/"}, timeout=10
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui"  # never a redirect off the dashboard
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert MASTER not in cookie and MASTER[3:20] not in cookie
    # a tampered cookie is no login
    forged = value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")
    r = httpx.get(f"{traffic.url}/ui/api/me", cookies={"lmgate_ui": forged}, timeout=10)
    assert r.status_code == 401
    r = httpx.get(f"{traffic.url}/ui/api/me", cookies={"lmgate_ui": value}, timeout=10)
    assert r.json() == {"admin": True, "label": "admin", "key_hash": None}


def test_overview_totals_equal_the_store(traffic: UiTraffic) -> None:
    body = traffic.api("/ui/api/overview", range="all").json()
    store = traffic.store()
    try:
        expected = store.totals(Filters())
        assert body["totals"] == expected
        assert expected["requests"] == traffic.total and expected["errors"] == 2
        assert sum(r["requests"] for r in body["series"]) == traffic.total
        assert {r["group"] for r in body["tokens_by_model"]} == {
            "gpt-4o-mini",
            "claude-3-5-haiku-20241022",
            "gpt-4o",
        }
        assert body["range"] == {"name": "all", "since": None, "until": None, "bucket": "day"}
        day = traffic.api("/ui/api/overview").json()  # the default: the last 24 hours, per hour
        assert day["range"]["name"] == "24h" and day["range"]["bucket"] == "hour"
        assert day["totals"]["requests"] == traffic.total
        by_tag = traffic.api("/ui/api/breakdown", by="tag", range="all").json()["rows"]
        assert {r["group"]: r["requests"] for r in by_tag} == {
            "ui-test": traffic.total - 2,
            "team-admin": 6,
            "team-alice": 4,
            "team-bob": 3,
            None: 2,  # the failing calls were sent without tags
        }
    finally:
        store.close()


def test_logs_filters_search_and_paging(traffic: UiTraffic) -> None:
    failed = traffic.api("/ui/api/logs", status="failure").json()
    assert len(failed["rows"]) == 2 and all(r["error_class"] == "RateLimitError" for r in failed["rows"])
    found = traffic.api("/ui/api/logs", search="needle-bob-1").json()["rows"]
    assert len(found) == 1 and found[0]["key_alias"] == "bob"
    claude = traffic.api("/ui/api/logs", model="claude-3-5-haiku").json()["rows"]
    assert len(claude) == 4 and {r["model"] for r in claude} == {"claude-3-5-haiku-20241022"}
    first = traffic.api("/ui/api/logs", limit=5).json()
    second = traffic.api("/ui/api/logs", limit=5, offset=5).json()
    last = traffic.api("/ui/api/logs", limit=5, offset=10).json()
    assert first["has_more"] and second["has_more"] and not last["has_more"]
    ids = [r["call_id"] for r in first["rows"] + second["rows"] + last["rows"]]
    assert len(ids) == len(set(ids)) == traffic.total
    starts = [r["start_time"] for r in first["rows"] + second["rows"] + last["rows"]]
    assert starts == sorted(starts, reverse=True)
    user = traffic.api("/ui/api/logs", user="end-alice").json()["rows"]
    assert len(user) == 4 and {r["end_user"] for r in user} == {"end-alice"}  # the failure named no user
    detail = traffic.api(f"/ui/api/logs/{found[0]['call_id']}").json()
    assert detail["messages"] == [{"role": "user", "content": "question 1 from bob about needle-bob-1"}]
    assert detail["answer"] == "Hello from a mock gpt-4o-mini" and detail["cost"]["total"] > 0
    # the mock waits 10 ms on uvloop, whose timers count whole milliseconds and may fire up to 1 ms early
    assert detail["timings"]["latency_ms"] >= 8 and detail["error"] is None
    assert [t["call_id"] for t in detail["trace"]] == [found[0]["call_id"]]
    assert traffic.api("/ui/api/logs/nope").status_code == 404


def test_csv_export_of_any_table(traffic: UiTraffic) -> None:
    r = traffic.api("/ui/api/logs", format="csv", limit=500)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == traffic.total and rows[0]["call_id"] and rows[0]["start_time"]
    stats = list(
        csv.DictReader(
            io.StringIO(traffic.api("/ui/api/breakdown", by="user", format="csv", range="all").text)
        )
    )
    assert {r["group"] for r in stats} >= {"user-alice", "user-bob"}
    spend = list(csv.DictReader(io.StringIO(traffic.api("/ui/api/spend", format="csv", range="all").text)))
    assert {r["kind"] for r in spend} == {"keys", "teams", "users"}
    assert "delivered" in traffic.api("/ui/api/health", format="csv").text.splitlines()[0]


def test_bad_parameters_are_a_clear_400(traffic: UiTraffic) -> None:
    for params, needle in (
        ({"range": "fortnight"}, "range must be one of"),
        ({"limit": "0"}, "limit must be between 1 and 500"),
        ({"status": "maybe"}, "status must be success or failure"),
        ({"since": "yesterday-ish"}, "since: expected an ISO time"),
    ):
        r = traffic.api("/ui/api/logs", **params)
        assert r.status_code == 400 and needle in r.json()["error"]["message"], (params, r.text)
    r = traffic.api("/ui/api/breakdown", by="colour")
    assert r.status_code == 400 and "by must be one of" in r.json()["error"]["message"]


def test_a_key_holder_sees_only_their_own_calls(traffic: UiTraffic) -> None:
    alice_key, alice = traffic.keys["alice"], traffic.hashes["alice"]
    totals = traffic.api("/ui/api/overview", as_key=alice_key, range="all").json()["totals"]
    assert totals["requests"] == traffic.sent["alice"] and totals["errors"] == 1
    # asking for bob's key changes nothing: the filter is the server's
    rows = traffic.api("/ui/api/logs", as_key=alice_key, key="bob").json()["rows"]
    assert len(rows) == traffic.sent["alice"] and {r["key_hash"] for r in rows} == {alice}
    bob_call = traffic.api("/ui/api/logs", search="needle-bob-0").json()["rows"][0]["call_id"]
    assert traffic.api(f"/ui/api/logs/{bob_call}", as_key=alice_key).status_code == 404
    by_key = traffic.api("/ui/api/breakdown", as_key=alice_key, by="key", range="all").json()["rows"]
    assert [r["group"] for r in by_key] == ["alice"]
    assert traffic.api("/ui/api/health", as_key=alice_key).status_code == 403
    spend = traffic.api("/ui/api/spend", as_key=alice_key, range="all").json()
    assert [k["key_alias"] for k in spend["budgets"]["keys"]] == ["alice"]
    # the same through a session cookie, on the pages
    with login(traffic, alice_key) as client:
        page = client.get("/ui/logs").text
        assert page.count('class="detail"') == traffic.sent["alice"]
        assert client.get("/ui/health").status_code == 403
        assert client.get(f"/ui/logs/{bob_call}").status_code == 400
        overview = client.get("/ui/overview?range=all").text
        assert f'id="t-requests">{traffic.sent["alice"]}<' in overview


def test_a_deleted_key_is_logged_out(traffic: UiTraffic, tmp_path: Path) -> None:
    r = httpx.post(
        f"{traffic.url}/key/generate",
        json={"key_alias": "short-lived"},
        headers={"Authorization": f"Bearer {MASTER}"},
        timeout=10,
    )
    key = r.json()["key"]
    with login(traffic, key) as client:
        assert client.get("/ui/api/me").json()["label"] == "short-lived"
        deleted = httpx.post(
            f"{traffic.url}/key/delete",
            json={"keys": [key]},
            headers={"Authorization": f"Bearer {MASTER}"},
            timeout=10,
        )
        assert deleted.status_code == 200
        assert client.get("/ui/api/me").status_code == 401
        assert client.get("/ui/logs").status_code == 303


def test_pages_render_with_units_and_never_show_a_key(traffic: UiTraffic) -> None:
    with login(traffic, MASTER) as client:
        call_id = traffic.api("/ui/api/logs", limit=1).json()["rows"][0]["call_id"]
        for path in (
            "/ui",
            "/ui/overview?range=all&by=tag",
            "/ui/logs",
            "/ui/logs?status=failure",
            f"/ui/logs/{call_id}",
            "/ui/spend?range=all",
            "/ui/health",
        ):
            r = client.get(path)
            assert r.status_code == 200, (path, r.text[:300])
            assert "default-src 'self'" in r.headers["content-security-policy"]
            for secret in (MASTER, *traffic.keys.values()):
                assert secret not in r.text, path
        overview = client.get("/ui/overview?range=all").text
        assert f'id="t-requests">{traffic.total}<' in overview and 'id="t-cost">$' in overview
        assert " ms</span>" in overview
        health = client.get("/ui/health").text
        assert "store" in health and "healthy" in health
        empty = client.get("/ui/logs?model=no-such-model").text
        assert "No calls match" in empty


def test_uplot_ships_in_the_package(traffic: UiTraffic) -> None:
    js = httpx.get(f"{traffic.url}/ui/static/uPlot.iife.min.js", timeout=10)
    assert js.status_code == 200 and "uPlot" in js.text[:200]
    assert httpx.get(f"{traffic.url}/ui/static/uPlot.LICENSE", timeout=10).text.startswith("The MIT License")


def lmgate_logs(traffic: UiTraffic, *args: str, key: str = MASTER) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LMGATE_API_KEY": key}
    return subprocess.run(
        [sys.executable, "-m", "lmgate", "logs", "--url", traffic.url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_lmgate_logs_reads_a_running_proxy(traffic: UiTraffic) -> None:
    tail = lmgate_logs(traffic, "tail", "-n", "3", "--status", "failure")
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert lines[0].split("\t")[0] == "time" and len(lines) == 3  # the header and the two failures
    stats = lmgate_logs(traffic, "stats", "--by", "key")
    assert stats.returncode == 0, stats.stderr
    groups = {line.split("\t")[0]: line.split("\t")[1] for line in stats.stdout.splitlines()[1:]}
    assert groups["alice"] == str(traffic.sent["alice"]) and groups["bob"] == str(traffic.sent["bob"])
    mine = lmgate_logs(traffic, "export", "--format", "csv", key=traffic.keys["bob"])
    assert len(list(csv.DictReader(io.StringIO(mine.stdout)))) == traffic.sent["bob"]
    refused = lmgate_logs(traffic, "tail", key="sk-nobody")
    assert refused.returncode == 1 and "401" in refused.stderr


def test_lmgate_logs_show_through_a_proxy_has_the_payload_and_trace(traffic: UiTraffic) -> None:
    call_id = traffic.api("/ui/api/logs", search="needle-alice-2").json()["rows"][0]["call_id"]
    shown = lmgate_logs(traffic, "show", call_id)
    assert shown.returncode == 0, shown.stderr
    assert "trace " in shown.stdout and "1 call(s)" in shown.stdout
    assert "needle-alice-2" in shown.stdout.split("payload:", 1)[1]
    assert lmgate_logs(traffic, "show", call_id, key=traffic.keys["bob"]).returncode == 1


def test_lmgate_logs_tail_follow_through_a_proxy(traffic: UiTraffic) -> None:
    """``tail -f --url``: the newest calls, then a call made later, once (runs last: it adds a call)."""
    import select
    import signal

    from ui_server import chat

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lmgate",
            "logs",
            "--url",
            traffic.url,
            "tail",
            "-n",
            "2",
            "-f",
            "--interval",
            "0.05",
            "--user",
            "follower",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "LMGATE_API_KEY": MASTER},
        # Ctrl-C is how it stops; a runner started in the background (`cmd &` in a script)
        # hands its children SIGINT ignored, which Python then keeps: give it back
        preexec_fn=_sigint_default,
    )
    assert proc.stdout is not None
    try:
        pending = [b""]

        def next_line() -> str:
            while b"\n" not in pending[0]:
                ready, _, _ = select.select([proc.stdout], [], [], 30)  # bounded: a hung follower fails
                assert ready, "tail -f printed nothing within 30 s"
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, "tail -f exited"
                pending[0] += chunk
            line, _, pending[0] = pending[0].partition(b"\n")
            return line.decode()

        assert next_line().startswith("time\t")  # no calls by this user yet: the header only
        chat(traffic.url, MASTER, "gpt-4o-mini", "a call to follow", user="follower")
        chat(traffic.url, MASTER, "claude-3-5-haiku", "and another", user="follower")
        traffic.total += 2
        models = sorted(next_line().split("\t")[2] for _ in range(2))
        assert models == ["claude-3-5-haiku-20241022", "gpt-4o-mini"]
        # each shown once: a third call (to another model, failing) is the next line, not a repeat
        with pytest.raises(openai.RateLimitError):
            chat(traffic.url, MASTER, "flaky", "a third", user="follower")
        traffic.total += 1
        third = next_line().split("\t")
        assert third[2] == "gpt-4o" and third[4] == "failure:RateLimitError"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        proc.stdout.close()
    assert code == 0
    assert len(traffic.api("/ui/api/logs", user="follower").json()["rows"]) == 3


def test_lmgate_logs_colours_failures_on_a_terminal(traffic: UiTraffic) -> None:
    import pty

    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmgate", "logs", "--db", str(traffic.db), "tail", "-n", "50"],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    lines = b"".join(chunks).decode().replace("\r\n", "\n").splitlines()
    assert lines[0].startswith("\033[1m")  # the header in bold
    red = [line for line in lines if line.startswith("\033[31m")]
    assert red and all("failure:RateLimitError" in line for line in red)
    assert all("failure" not in line for line in lines[1:] if not line.startswith("\033[31m"))


def _sigint_default() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
