"""``lmgate keys|teams|spend`` against a real ``lmgate serve`` (URL and master key from the
environment, as an operator would set them), and the official ``openai`` client using the key it
printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from fakes import FakeProvider, LogReceiver
from test_proxy_management import MASTER, Proxy, start, write_config

from lmgate.cli import main


@pytest.fixture
def proxy(tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver) -> Iterator[Proxy]:
    p = start(
        tmp_path,
        write_config(tmp_path, fake_provider, log_receiver),
        f"sqlite:///{tmp_path / 'data' / 'lmgate.db'}",
    )
    try:
        yield p
    finally:
        p.served.stop()


@pytest.fixture
def admin_env(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> Proxy:
    monkeypatch.setenv("LMGATE_URL", proxy.url)
    monkeypatch.setenv("LMGATE_MASTER_KEY", MASTER)
    return proxy


def lmgate(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    assert main(list(argv)) == code
    captured = capsys.readouterr()
    return captured.out if code == 0 else captured.err


def columns_aligned(lines: list[str], header: str, value: str) -> bool:
    """Whether ``value`` starts, in some row, at the column of ``header`` in the header line."""
    at = lines[0].index(header)
    return any(line[at:].startswith(value) for line in lines[1:])


def test_keys_and_teams_from_the_terminal(admin_env: Proxy, capsys: pytest.CaptureFixture[str]) -> None:
    out = lmgate(
        capsys,
        "teams",
        "create",
        "--id",
        "t1",
        "--alias",
        "search",
        "--models",
        "fast,smart",
        "--max-budget",
        "10",
    )
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert (fields["team_id"], fields["team_alias"], fields["max_budget"], fields["blocked"]) == (
        "t1",
        "search",
        "10.0",
        "false",
    )
    out = lmgate(capsys, "keys", "create", "--alias", "bot", "--team", "t1", "--max-budget", "5", "--duration", "30d",
                 "--metadata", '{"owner": "search"}')  # fmt: skip
    key = out.split("\n", 1)[0].removeprefix("key: ")
    assert key.startswith("sk-") and "shown once" in out
    with openai.OpenAI(api_key=key, base_url=f"{admin_env.url}/v1", max_retries=0) as client:
        reply = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "Hello from fake"

    lines = lmgate(capsys, "keys", "list").splitlines()
    assert lines[0].split() == [
        "KEY",
        "ALIAS",
        "TEAM",
        "USER",
        "MODELS",
        "SPEND",
        "BUDGET",
        "EXPIRES",
        "BLOCKED",
    ]
    assert columns_aligned(lines, "ALIAS", "bot") and columns_aligned(lines, "TEAM", "t1")
    assert key not in "\n".join(lines)  # the text is never listed: its masked name is
    assert "$5.0000" in lines[1]
    info = lmgate(capsys, "keys", "info", key)
    assert "key_alias" in info and "bot" in info and '{"owner": "search"}' in info
    assert json.loads(lmgate(capsys, "keys", "info", key, "--json"))["info"]["team_id"] == "t1"

    blocked = dict(
        line.split(None, 1) for line in lmgate(capsys, "keys", "update", key, "--block").splitlines()
    )
    assert blocked["blocked"] == "true"
    with openai.OpenAI(api_key=key, base_url=f"{admin_env.url}/v1", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    lmgate(capsys, "keys", "update", key, "--unblock", "--rpm", "100")
    assert json.loads(lmgate(capsys, "keys", "info", key, "--json"))["info"]["rpm_limit"] == 100

    tlines = lmgate(capsys, "teams", "list").splitlines()
    assert tlines[0].split()[:3] == ["TEAM_ID", "ALIAS", "MODELS"] and columns_aligned(
        tlines, "ALIAS", "search"
    )
    assert "fast,smart" in tlines[1]
    lmgate(capsys, "teams", "update", "t1", "--alias", "search-2")
    tinfo = lmgate(capsys, "teams", "info", "t1")
    assert "search-2" in tinfo and "bot" in tinfo  # the team, then its keys
    assert lmgate(capsys, "keys", "delete", key) == "deleted 1 key(s)\n"
    assert lmgate(capsys, "teams", "delete", "t1") == "deleted 1 team(s) and 0 key(s)\n"
    assert "(no keys)" in lmgate(capsys, "keys", "list")


def test_spend_by_key_team_user_model(admin_env: Proxy, capsys: pytest.CaptureFixture[str]) -> None:
    admin_env.ok("POST", "/team/new", json={"team_id": "t1", "team_alias": "search"})
    a = admin_env.ok("POST", "/key/generate", json={"team_id": "t1", "user_id": "ana", "key_alias": "a"})
    b = admin_env.ok("POST", "/key/generate", json={"user_id": "bo", "key_alias": "b"})
    now = time.time()

    def row(
        rid: str, token: str, team: str | None, user: str, model: str, cost: float, ago: float
    ) -> dict[str, object]:
        return {"request_id": rid, "token": token, "team_id": team, "user_id": user, "end_user": None, "model": model,
                "cost": cost, "prompt_tokens": 100, "completion_tokens": 20, "started_at": now - ago,
                "ended_at": now - ago + 1}  # fmt: skip

    admin_env.ledger(
        [
            row("r1", a["token"], "t1", "ana", "fast", 0.25, 3600),
            row("r2", a["token"], "t1", "ana", "smart", 1.0, 7200),
            row("r3", b["token"], None, "bo", "fast", 0.5, 60),
            row("r4", b["token"], None, "bo", "fast", 9.0, 40 * 86400),  # before the default 30 days
        ]
    )
    lines = lmgate(capsys, "spend", "--by", "key").splitlines()
    assert lines[0].startswith("spend by key, ")
    assert lines[1].split() == ["KEY", "ALIAS", "SPEND", "REQUESTS", "TOKENS"]
    assert lines[2].split() == [a["key_name"], "a", "$1.2500", "2", "240"]
    assert lines[3].split() == [b["key_name"], "b", "$0.5000", "1", "120"]
    assert lines[-1] == "total $1.7500"
    assert lines[2].index("$1.2500") + len("$1.2500") == lines[3].index("$0.5000") + len(
        "$0.5000"
    )  # right-aligned
    team = lmgate(capsys, "spend", "--by", "team").splitlines()
    assert [ln.split()[:2] for ln in team[2:4]] == [["search", "$1.2500"], ["Unassigned", "Team"]]
    user = lmgate(capsys, "spend", "--by", "user", "--since", "90m").splitlines()
    assert [ln.split()[:3] for ln in user[2:4]] == [["bo", "$0.5000", "1"], ["ana", "$0.2500", "1"]]
    model = lmgate(capsys, "spend", "--by", "model", "--since", "60d").splitlines()
    assert [ln.split()[:3] for ln in model[2:4]] == [["fast", "$9.7500", "3"], ["smart", "$1.0000", "1"]]
    assert "(no spend in this period)" in lmgate(
        capsys, "spend", "--by", "key", "--since", "2020-01-01", "--until", "2020-01-02"
    )
    assert json.loads(lmgate(capsys, "spend", "--by", "key", "--json"))[0]["api_key"] == a["token"]


def test_cli_errors_are_one_clear_line(
    admin_env: Proxy, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "(team_id)" in lmgate(capsys, "keys", "create", "--team", "nope", code=1)
    assert "404" in lmgate(capsys, "keys", "info", "sk-never-made-000000", code=1)
    assert "nothing to change" in lmgate(capsys, "keys", "update", "sk-x-0000000000", code=1)
    assert "--metadata is not JSON" in lmgate(capsys, "keys", "create", "--metadata", "{oops", code=1)
    assert "not a date" in lmgate(capsys, "spend", "--by", "user", "--since", "last tuesday", code=1)
    err = lmgate(capsys, "keys", "list", "--master-key", "sk-wrong-00000000000", code=1)
    assert "401" in err and "sk-wrong" not in err
    monkeypatch.delenv("LMGATE_MASTER_KEY")
    monkeypatch.delenv("LITELLM_MASTER_KEY", raising=False)
    assert "no admin key" in lmgate(capsys, "keys", "list", code=1)
    assert "cannot reach the proxy" in lmgate(
        capsys, "teams", "list", "--url", "http://127.0.0.1:9", "--master-key", MASTER, code=1
    )


def test_the_installed_command_runs(admin_env: Proxy) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lmgate", "keys", "list", "--json"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["keys"] == []


def test_keys_info_never_puts_the_key_text_in_a_url(
    admin_env: Proxy, capsys: pytest.CaptureFixture[str]
) -> None:
    """``lmgate keys info sk-…`` asks for the key by its hash: a URL's query string is written to
    the access log of any reverse proxy in front of lmgate (a body is not)."""
    import argparse

    import httpx

    from lmgate.keys_cli import add_parsers, run

    key = admin_env.ok("POST", "/key/generate", json={"key_alias": "by-url"})["key"]
    urls: list[str] = []

    class Recording(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            urls.append(str(request.url))
            return super().handle_request(request)

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    assert run(parser.parse_args(["keys", "info", key]), transport=Recording()) == 0
    assert "by-url" in capsys.readouterr().out
    assert urls and not [u for u in urls if key in u or key.removeprefix("sk-") in u], urls
