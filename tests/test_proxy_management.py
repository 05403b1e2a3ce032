"""The management API beyond keys and teams, through a real ``lmgate serve`` with the official
``openai`` client: users, end users (customers), spend reports, the identity every hook and
logger sees, and per-key / per-team logging that a request body cannot change.

Spend rows are the ledger's (``lmgate_spend_ledger``), written by the limits' spend writer; the
report tests write their rows into the ledger directly, so they check the reports alone.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
from fakes import FakeProvider, LogReceiver
from test_proxy_server import Served

from lmgate.control.reports import LEDGER
from lmgate.control.store import async_url

MASTER = "sk-master-mgmt-0123456789"
UPSTREAM = "sk-upstream-mgmt-0123456789"
HI = [{"role": "user", "content": "Hi there"}]
DAY1 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
DAY2 = DAY1 + 86_400.0


def write_config(
    tmp: Path,
    fake: FakeProvider,
    receiver: LogReceiver,
    second: LogReceiver | None = None,
    database_url: str = "",
) -> Path:
    path = tmp / "config.yaml"
    team_sink = (
        f"  team_sink: {{callback_type: generic_api, endpoint: {second.url}, batch_size: 1, spool_dir: {tmp / 'spool2'}}}\n"
        if second
        else ""
    )
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params: {{model: openai/gpt-4o-mini, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
          - model_name: smart
            litellm_params: {{model: openai/gpt-4o, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
        litellm_settings:
          callbacks: [sink]
        general_settings:
          master_key: {MASTER}
          virtual_keys: true
        """)
        + (f"  database_url: {database_url}\n" if database_url else "")
        + "callback_settings:\n"
        + f"  sink: {{callback_type: generic_api, endpoint: {receiver.url}, batch_size: 1, spool_dir: {tmp / 'spool'}}}\n"
        + team_sink
    )
    return path


class Proxy:
    """A served proxy and where its key store lives."""

    def __init__(self, served: Served, database_url: str) -> None:
        self.served = served
        self.url = served.url
        self.database_url = database_url

    def call(self, method: str, path: str, key: str = MASTER, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method, f"{self.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10, **kwargs
        )

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.call(method, path, **kwargs)
        assert r.status_code == 200, (path, r.text)
        return r.json()

    def error(
        self, method: str, path: str, status: int, param: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        r = self.call(method, path, **kwargs)
        assert r.status_code == status, (path, r.text)
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        if param is not None:
            assert error["param"] == param, error
        return error  # type: ignore[no-any-return]

    def chat(self, key: str, model: str = "fast", **extra: Any) -> Any:
        with openai.OpenAI(api_key=key, base_url=f"{self.url}/v1", max_retries=0) as client:
            return client.chat.completions.create(model=model, messages=HI, **extra)  # type: ignore[call-overload]

    def ledger(self, rows: list[dict[str, Any]]) -> None:
        """Spend rows, as the limits' spend writer leaves them (the table made if this store lacks it)."""

        async def write() -> None:
            engine = sa.ext.asyncio.create_async_engine(async_url(self.database_url))
            try:
                async with engine.begin() as conn:
                    await conn.run_sync(lambda c: LEDGER.create(c, checkfirst=True))
                    await conn.execute(LEDGER.insert(), rows)
            finally:
                await engine.dispose()

        import sqlalchemy.ext.asyncio  # noqa: F401

        asyncio.run(write())


def start(tmp: Path, config: Path, database_url: str) -> Proxy:
    served = Served(config, tmp, args=["--data-dir", str(tmp / "data")])
    served.wait_ready()
    return Proxy(served, database_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def proxy(
    request: pytest.FixtureRequest, tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver
) -> Iterator[Proxy]:
    if request.param == "sqlite":
        url, configured = f"sqlite:///{tmp_path / 'data' / 'lmgate.db'}", ""
    else:
        url = configured = str(request.getfixturevalue("fresh_postgres_url"))
    p = start(tmp_path, write_config(tmp_path, fake_provider, log_receiver, database_url=configured), url)
    try:
        yield p
    finally:
        p.served.stop()


# ------------------------------------------------------------------------------------ users


def test_user_lifecycle_and_its_key(proxy: Proxy) -> None:
    made = proxy.ok(
        "POST",
        "/user/new",
        json={"user_id": "ana", "user_email": "ana@example.com", "max_budget": 25, "budget_duration": "30d"},
    )
    assert made["user_id"] == "ana" and made["max_budget"] == 25.0 and made["budget_duration"] == "30d"
    key = made["key"]  # auto_create_key is on by default, as in the reference
    assert key.startswith("sk-") and len(made["token"]) == 64
    assert proxy.chat(key).choices[0].message.content == "Hello from fake"

    info = proxy.ok("GET", "/user/info", params={"user_id": "ana"})
    assert info["user_id"] == "ana" and info["user_info"]["user_email"] == "ana@example.com"
    assert info["user_info"]["spend"] == 0.0 and info["user_info"]["max_budget"] == 25.0
    assert [k["token"] for k in info["keys"]] == [made["token"]] and info["teams"] == []
    assert key not in json.dumps(info)

    updated = proxy.ok("POST", "/user/update", json={"user_id": "ana", "max_budget": 50, "user_alias": "Ana"})
    assert updated["max_budget"] == 50.0 and updated["user_alias"] == "Ana"
    keyless = proxy.ok(
        "POST", "/user/new", json={"user_id": "bo", "auto_create_key": False, "user_role": "internal_user"}
    )
    assert "key" not in keyless and keyless["user_role"] == "internal_user"
    listed = proxy.ok("GET", "/user/list")
    assert [u["user_id"] for u in listed["users"]] == ["ana", "bo"] and listed["total"] == 2

    gone = proxy.ok("POST", "/user/delete", json={"user_ids": ["ana", "nobody"]})
    assert gone == {"deleted_users": ["ana"], "deleted_keys": [made["token"]]}
    with pytest.raises(openai.AuthenticationError):  # a user's keys go with it
        proxy.chat(key)
    proxy.error("GET", "/user/info", 404, "user_id", params={"user_id": "ana"})


def test_user_routes_refuse_bad_input_by_name(proxy: Proxy) -> None:
    proxy.ok("POST", "/user/new", json={"user_id": "cy", "auto_create_key": False})
    proxy.error("POST", "/user/new", 400, "user_id", json={"user_id": "cy"})  # taken
    proxy.error("POST", "/user/new", 400, "max_budget", json={"max_budget": "lots"})
    proxy.error("POST", "/user/new", 400, "budget_duration", json={"budget_duration": "fortnightly"})
    proxy.error("POST", "/user/new", 400, "user_role", json={"user_role": "root"})
    proxy.error("POST", "/user/new", 400, "teams", json={"teams": ["t"]})  # unknown: named, not ignored
    proxy.error("POST", "/user/new", 400, "auto_create_key", json={"auto_create_key": "yes"})
    proxy.error("POST", "/user/update", 400, "user_id", json={"max_budget": 1})
    proxy.error("POST", "/user/update", 404, "user_id", json={"user_id": "nobody", "max_budget": 1})
    proxy.error("POST", "/user/delete", 400, "user_ids", json={"user_ids": []})
    proxy.error("POST", "/user/delete", 404, "user_ids", json={"user_ids": ["nobody"]})
    proxy.error("GET", "/user/info", 400, "user_id")
    proxy.error("POST", "/user/new", 400, None, content=b"[1, 2]")
    key = proxy.ok("POST", "/key/generate", json={})["key"]
    for method, path in [
        ("POST", "/user/new"),
        ("GET", "/user/list"),
        ("GET", "/spend/logs"),
        ("POST", "/customer/new"),
    ]:
        r = proxy.call(method, path, key=key, json={"user_id": "x"} if method == "POST" else None)
        assert r.status_code == 401 and r.json()["error"]["type"] == "auth_error", path
    assert proxy.ok("GET", "/user/info", params={"user_id": "cy"})["user_id"] == "cy"


# ------------------------------------------------------------------------------- end users


def test_customer_lifecycle(proxy: Proxy) -> None:
    made = proxy.ok(
        "POST",
        "/customer/new",
        json={"user_id": "acme-42", "alias": "Acme", "max_budget": 5, "budget_duration": "1d"},
    )
    assert made["user_id"] == "acme-42" and made["alias"] == "Acme" and made["blocked"] is False
    assert made["spend"] == 0.0 and made["litellm_budget_table"]["max_budget"] == 5.0
    proxy.ledger(
        [
            {"request_id": "r1", "token": "t" * 64, "end_user": "acme-42", "model": "fast", "cost": 0.25,
             "prompt_tokens": 10, "completion_tokens": 5, "started_at": DAY1, "ended_at": DAY1 + 1},
            {"request_id": "r2", "token": "t" * 64, "end_user": "acme-42", "model": "fast", "cost": 0.5,
             "prompt_tokens": 10, "completion_tokens": 5, "started_at": DAY2, "ended_at": DAY2 + 1},
        ]
    )  # fmt: skip
    info = proxy.ok("GET", "/customer/info", params={"end_user_id": "acme-42"})
    assert info["spend"] == 0.75 and info["max_budget"] == 5.0
    assert (
        proxy.ok("GET", "/end_user/info", params={"end_user_id": "acme-42"})["spend"] == 0.75
    )  # older spelling

    assert (
        proxy.ok("POST", "/customer/update", json={"user_id": "acme-42", "max_budget": 9})["max_budget"]
        == 9.0
    )
    blocked = proxy.ok("POST", "/customer/block", json={"user_ids": ["acme-42", "new-7"]})
    assert [(c["user_id"], c["blocked"]) for c in blocked["blocked_users"]] == [
        ("acme-42", True),
        ("new-7", True),
    ]
    unblocked = proxy.ok("POST", "/customer/unblock", json={"user_ids": ["new-7"]})
    assert unblocked["unblocked_users"][0]["blocked"] is False
    assert [c["user_id"] for c in proxy.ok("GET", "/customer/list")] == ["acme-42", "new-7"]
    assert proxy.ok("POST", "/customer/delete", json={"user_ids": ["new-7"]}) == {
        "deleted_customers": ["new-7"]
    }

    # a blocked end user's requests are refused (any key), at once on this instance; unblocked, served
    proxy.ok("POST", "/customer/block", json={"user_ids": ["acme-42"]})
    with pytest.raises(openai.AuthenticationError) as refused:
        proxy.chat(MASTER, user="acme-42")
    assert "acme-42" in refused.value.message and refused.value.body["param"] == "user"  # type: ignore[index]
    proxy.ok("POST", "/customer/unblock", json={"user_ids": ["acme-42"]})
    assert proxy.chat(MASTER, user="acme-42").choices[0].message.content == "Hello from fake"
    assert proxy.chat(MASTER, user="never-registered").choices[0].message.content == "Hello from fake"

    proxy.error("POST", "/customer/new", 400, "user_id", json={"user_id": "acme-42"})  # taken
    proxy.error("POST", "/customer/new", 400, "user_id", json={"alias": "no id"})
    proxy.error("POST", "/customer/new", 400, "max_budget", json={"user_id": "z", "max_budget": -1})
    proxy.error("POST", "/customer/new", 400, "colour", json={"user_id": "z", "colour": "red"})
    proxy.error("POST", "/customer/update", 404, "user_id", json={"user_id": "nobody", "alias": "x"})
    proxy.error("POST", "/customer/delete", 404, "user_ids", json={"user_ids": ["nobody"]})
    proxy.error("GET", "/customer/info", 404, "end_user_id", params={"end_user_id": "nobody"})
    proxy.error("GET", "/customer/info", 400, "end_user_id")


# ------------------------------------------------------------------------------------ spend


def spend_rows(tokens: dict[str, str]) -> list[dict[str, Any]]:
    """Six requests: key a (team t1, user ana) on two days and two models, key b (no team, user bo)."""

    def row(
        rid: str,
        key: str,
        team: str | None,
        user: str | None,
        model: str,
        cost: float,
        when: float,
        end_user: str | None = None,
    ) -> dict[str, Any]:
        return {
            "request_id": rid,
            "token": tokens[key],
            "team_id": team,
            "user_id": user,
            "end_user": end_user,
            "model": model,
            "cost": cost,
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "started_at": when,
            "ended_at": when + 2,
        }

    return [
        row("req-1", "a", "t1", "ana", "fast", 0.10, DAY1, "acme"),
        row("req-2", "a", "t1", "ana", "smart", 0.40, DAY1 + 60),
        row("req-3", "a", "t1", "ana", "fast", 0.20, DAY2),
        row("req-4", "b", None, "bo", "fast", 0.05, DAY1 + 120, "acme"),
        row("req-5", "b", None, "bo", "smart", 1.00, DAY2 + 60),
        row("req-6", "b", None, "bo", "smart", 2.00, DAY2 + 3 * 86_400),  # outside the report's dates
    ]  # fmt: skip


def test_spend_logs_filters_and_global_report(proxy: Proxy) -> None:
    proxy.ok("POST", "/team/new", json={"team_id": "t1", "team_alias": "search"})
    key_a = proxy.ok("POST", "/key/generate", json={"team_id": "t1", "user_id": "ana"})
    key_b = proxy.ok("POST", "/key/generate", json={"user_id": "bo"})
    proxy.ledger(spend_rows({"a": key_a["token"], "b": key_b["token"]}))

    def ids(rows: list[dict[str, Any]]) -> list[str]:
        return [r["request_id"] for r in rows]

    everything = proxy.ok("GET", "/spend/logs")
    assert ids(everything) == ["req-6", "req-5", "req-3", "req-4", "req-2", "req-1"]  # newest first
    first = everything[-1]
    assert first["api_key"] == key_a["token"] and first["spend"] == 0.10 and first["total_tokens"] == 110
    assert first["team_id"] == "t1" and first["user"] == "ana" and first["end_user"] == "acme"
    assert first["startTime"].startswith("2027-01-15T08:00:00")
    # a key by its text or its hash
    assert ids(proxy.ok("GET", "/spend/logs", params={"api_key": key_a["key"]})) == [
        "req-3",
        "req-2",
        "req-1",
    ]
    assert ids(proxy.ok("GET", "/spend/logs", params={"api_key": key_b["token"]})) == [
        "req-6",
        "req-5",
        "req-4",
    ]
    assert ids(proxy.ok("GET", "/spend/logs", params={"user_id": "bo", "summarize": "false"})) == [
        "req-6",
        "req-5",
        "req-4",
    ]
    assert ids(proxy.ok("GET", "/spend/logs", params={"team_id": "t1"})) == ["req-3", "req-2", "req-1"]
    assert ids(proxy.ok("GET", "/spend/logs", params={"request_id": "req-4"})) == ["req-4"]
    one_day = {"start_date": "2027-01-15", "end_date": "2027-01-15"}  # an end date includes its whole day
    assert ids(proxy.ok("GET", "/spend/logs", params={**one_day, "summarize": "false"})) == [
        "req-4",
        "req-2",
        "req-1",
    ]
    # with both dates the reference answers a daily summary unless summarize=false
    summary = proxy.ok("GET", "/spend/logs", params={"start_date": "2027-01-15", "end_date": "2027-01-16"})
    assert [d["startTime"] for d in summary] == ["2027-01-15", "2027-01-16"]
    assert summary[0]["spend"] == pytest.approx(0.55) and summary[0]["users"] == pytest.approx(
        {"ana": 0.5, "bo": 0.05}
    )
    assert summary[1]["models"] == pytest.approx({"fast": 0.2, "smart": 1.0})

    dates = {"start_date": "2027-01-15", "end_date": "2027-01-16"}
    by_key = proxy.ok("GET", "/global/spend/report", params={**dates, "group_by": "api_key"})
    assert [(r["api_key"], round(r["total_cost"], 6)) for r in by_key] == [
        (key_b["token"], 1.05),
        (key_a["token"], 0.7),
    ]
    assert by_key[1]["model_details"][0] == {
        "model": "smart", "total_cost": 0.4, "total_input_tokens": 100, "total_output_tokens": 10, "requests": 1,
    }  # fmt: skip
    by_user = proxy.ok("GET", "/global/spend/report", params={**dates, "group_by": "user"})
    assert [(r["user_id"], r["requests"]) for r in by_user] == [("bo", 2), ("ana", 3)]
    by_model = proxy.ok("GET", "/global/spend/report", params={**dates, "group_by": "model"})
    assert [(r["model"], round(r["total_cost"], 6)) for r in by_model] == [("smart", 1.4), ("fast", 0.35)]
    by_team = proxy.ok("GET", "/global/spend/report", params={**dates, "group_by": "team"})
    assert [d["group_by_day"] for d in by_team] == ["2027-01-15", "2027-01-16"]
    day1 = {t["team_name"]: t for t in by_team[0]["teams"]}
    assert set(day1) == {"search", "Unassigned Team"} and day1["search"]["total_spend"] == pytest.approx(0.5)
    assert {m["model"] for m in day1["search"]["metadata"]} == {"fast", "smart"}
    by_customer = proxy.ok("GET", "/global/spend/report", params={**dates, "group_by": "customer"})
    assert {c["customer"]: c["total_spend"] for c in by_customer[0]["customers"]}["acme"] == pytest.approx(
        0.15
    )

    # the /…/info answers carry spend (the key's, team's and user's sums the spend writer keeps)
    assert "spend" in proxy.ok("GET", "/key/info", params={"key": key_a["key"]})["info"]
    assert "spend" in proxy.ok("GET", "/team/info", params={"team_id": "t1"})["team_info"]

    proxy.error("GET", "/global/spend/report", 400, "start_date", params={"end_date": "2027-01-16"})
    proxy.error("GET", "/global/spend/report", 400, "group_by", params={**dates, "group_by": "planet"})
    proxy.error(
        "GET",
        "/global/spend/report",
        400,
        "end_date",
        params={"start_date": "2027-01-15", "end_date": "16/01/2027"},
    )
    proxy.error("GET", "/spend/logs", 400, "start_date", params={"start_date": "yesterday"})
    proxy.error("GET", "/spend/logs", 400, "limit", params={"limit": "-3"})


def test_reports_are_empty_before_any_spend(proxy: Proxy) -> None:
    """A store whose ledger does not exist yet (or is empty) answers empty reports, not errors."""
    assert proxy.ok("GET", "/spend/logs") == []
    dates = {"start_date": "2027-01-15", "end_date": "2027-01-16"}
    for group_by in ("team", "api_key", "user", "model", "customer"):
        assert proxy.ok("GET", "/global/spend/report", params={**dates, "group_by": group_by}) == []


# --------------------------------------------------------------------------------- identity

SHOW_HOOK = '''
import json
from lmgate.integrations.custom_logger import CustomLogger

FIELDS = ("api_key", "token", "key_alias", "key_name", "team_id", "team_alias", "user_id", "user_email",
          "end_user_id", "user_role", "models", "team_models", "spend", "max_budget", "budget_duration",
          "rpm_limit", "tpm_limit", "max_parallel_requests", "metadata", "team_metadata", "tags",
          "team_spend", "team_max_budget", "team_rpm_limit", "user_spend", "user_max_budget", "end_user_max_budget")


class Show(CustomLogger):
    """Answers a request whose metadata says show=true with the caller's identity as JSON."""

    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        if (data.get("metadata") or {}).get("requester_metadata", {}).get("show"):
            return json.dumps({name: user_api_key_dict[name] for name in FIELDS})
        return None


show = Show()
'''


@pytest.fixture
def hooked(tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver) -> Iterator[Proxy]:
    config = write_config(tmp_path, fake_provider, log_receiver)
    (tmp_path / "show_hooks.py").write_text(SHOW_HOOK)
    config.write_text(config.read_text().replace("callbacks: [sink]", "callbacks: [sink, show_hooks.show]"))
    p = start(tmp_path, config, f"sqlite:///{tmp_path / 'data' / 'lmgate.db'}")
    try:
        yield p
    finally:
        p.served.stop()


def test_identity_reaches_every_hook_and_the_payload(hooked: Proxy, log_receiver: LogReceiver) -> None:
    proxy = hooked
    proxy.ok(
        "POST",
        "/team/new",
        json={"team_id": "t9", "team_alias": "search", "max_budget": 100, "rpm_limit": 60},
    )
    proxy.ok("POST", "/user/new", json={"user_id": "ana", "user_email": "ana@example.com", "max_budget": 20,
                                        "auto_create_key": False})  # fmt: skip
    made = proxy.ok(
        "POST",
        "/key/generate",
        json={"key_alias": "bot", "team_id": "t9", "user_id": "ana", "models": ["fast"], "max_budget": 5,
              "budget_duration": "1d", "rpm_limit": 10, "tpm_limit": 1000, "metadata": {"owner": "search"},
              "tags": ["prod"]},
    )  # fmt: skip
    proxy.ok("POST", "/customer/new", json={"user_id": "cust-9", "max_budget": 7})
    shown = json.loads(
        proxy.chat(made["key"], user="cust-9", metadata={"show": True}).choices[0].message.content
    )
    assert shown["end_user_max_budget"] == 7.0
    assert shown["api_key"] == shown["token"] == made["token"]
    assert (shown["key_alias"], shown["team_id"], shown["team_alias"]) == ("bot", "t9", "search")
    assert (shown["user_id"], shown["user_email"], shown["end_user_id"]) == (
        "ana",
        "ana@example.com",
        "cust-9",
    )
    assert shown["models"] == ["fast"] and shown["user_role"] == "internal_user"
    assert (shown["max_budget"], shown["budget_duration"], shown["spend"]) == (5.0, "1d", 0.0)
    assert (shown["rpm_limit"], shown["tpm_limit"]) == (10, 1000)
    assert (shown["team_max_budget"], shown["team_rpm_limit"], shown["team_spend"]) == (100.0, 60, 0.0)
    assert (shown["user_max_budget"], shown["user_spend"]) == (20.0, 0.0)
    assert shown["metadata"] == {"owner": "search"} and shown["tags"] == ["prod"]
    # the master key's identity is shared by its requests: one request's end user stays its own
    first = json.loads(proxy.chat(MASTER, user="u-1", metadata={"show": True}).choices[0].message.content)
    second = json.loads(proxy.chat(MASTER, metadata={"show": True}).choices[0].message.content)
    assert (first["end_user_id"], second["end_user_id"], second["user_role"]) == ("u-1", None, "proxy_admin")

    proxy.chat(made["key"], user="cust-9", metadata={"user_api_key_end_user_id": "spoofed"})

    def this_call(records: list[dict]) -> list[dict]:  # the earlier calls' records may still arrive after it
        return [
            r
            for r in records
            if r["metadata"].get("user_api_key_hash") == made["token"]
            and (r["metadata"].get("requester_metadata") or {}).get("user_api_key_end_user_id") == "spoofed"
        ]

    assert log_receiver.wait_until(this_call, timeout=10)
    (record,) = this_call(log_receiver.records)
    metadata = record["metadata"]
    assert record["end_user"] == "cust-9" and metadata["user_api_key_end_user_id"] == "cust-9"
    assert (
        metadata["user_api_key_alias"] == "bot" and metadata["user_api_key_user_email"] == "ana@example.com"
    )
    assert (metadata["user_api_key_spend"], metadata["user_api_key_max_budget"]) == (0.0, 5.0)
    assert (metadata["user_api_key_team_id"], metadata["user_api_key_team_alias"]) == ("t9", "search")
    assert (metadata["user_api_key_team_spend"], metadata["user_api_key_team_max_budget"]) == (0.0, 100.0)
    assert (metadata["user_api_key_user_spend"], metadata["user_api_key_user_max_budget"]) == (0.0, 20.0)
    assert metadata["user_api_key_request_route"] == "/v1/chat/completions"
    assert metadata["user_api_key_auth_metadata"] == {"owner": "search"}
    assert metadata["user_api_end_user_max_budget"] == 7.0
    assert made["key"] not in json.dumps(record)


# ------------------------------------------------------------------- per-key / per-team logging


@pytest.fixture
def two_sinks(
    tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver
) -> Iterator[tuple[Proxy, LogReceiver]]:
    with LogReceiver() as second:
        config = write_config(tmp_path, fake_provider, log_receiver, second)
        p = start(tmp_path, config, f"sqlite:///{tmp_path / 'data' / 'lmgate.db'}")
        try:
            yield p, second
        finally:
            p.served.stop()


def test_keys_and_teams_name_their_own_callbacks_and_bodies_cannot(
    two_sinks: tuple[Proxy, LogReceiver], log_receiver: LogReceiver, fake_provider: FakeProvider
) -> None:
    proxy, team_sink = two_sinks
    logged = proxy.ok("POST", "/key/generate", json={"key_alias": "logged", "metadata": {"logging": [{"callback_name": "team_sink", "callback_type": "success"}]}})  # fmt: skip
    proxy.ok("POST", "/team/new", json={"team_id": "quiet", "metadata": {"turn_off_message_logging": True}})
    quiet = proxy.ok("POST", "/key/generate", json={"key_alias": "quiet", "team_id": "quiet"})
    plain = proxy.ok("POST", "/key/generate", json={"key_alias": "plain"})

    # a request body may not add, remove or redirect a callback, nor turn redaction on or off,
    # nor redirect the deployment: every one of these is dropped
    attempt = {
        "callbacks": ["team_sink"],
        "success_callback": ["team_sink"],
        "failure_callback": ["team_sink"],
        "turn_off_message_logging": True,
        "api_base": "http://127.0.0.1:9/v1",
        "api_key": "sk-evil-000000000000",
        "mock_response": "mocked",
        "metadata": {"logging": [{"callback_name": "team_sink"}], "turn_off_message_logging": True},
    }
    answer = proxy.chat(plain["key"], extra_body=attempt)
    assert answer.choices[0].message.content == "Hello from fake"  # the real deployment answered
    sent = fake_provider.last_request
    assert sent is not None and sent.headers["authorization"] == f"Bearer {UPSTREAM}"
    assert not {"api_base", "api_key", "mock_response", "callbacks", "success_callback"} & set(sent.json)
    proxy.chat(quiet["key"], extra_body={"turn_off_message_logging": False})
    proxy.chat(logged["key"])
    assert log_receiver.wait_for_records(3, timeout=10) and team_sink.wait_for_records(1, timeout=10)
    proxy.served.stop()  # a graceful stop delivers whatever was still pending

    by_alias = {r["metadata"]["user_api_key_alias"]: r for r in log_receiver.records}
    assert set(by_alias) == {"plain", "quiet", "logged"} and len(log_receiver.records) == 3
    assert [r["metadata"]["user_api_key_alias"] for r in team_sink.records] == ["logged"]
    assert "Hi there" in json.dumps(by_alias["plain"]["messages"])  # the body could not turn it off
    assert "Hi there" not in json.dumps(by_alias["quiet"]) and "redacted-by-litellm" in json.dumps(
        by_alias["quiet"]
    )
    assert "Hi there" in json.dumps(team_sink.records[0]["messages"])


def test_logging_settings_are_checked_when_an_admin_sets_them(two_sinks: tuple[Proxy, LogReceiver]) -> None:
    proxy, _ = two_sinks
    for metadata, param in [
        ({"logging": [{"callback_name": "elsewhere"}]}, "metadata.logging[0].callback_name"),
        ({"logging": [{"callback_name": "team_sink", "callback_vars": {"endpoint": "http://x"}}]},
         "metadata.logging[0].callback_vars"),
        ({"logging": [{"callback_name": "team_sink", "callback_type": "sometimes"}]},
         "metadata.logging[0].callback_type"),
        ({"logging": "team_sink"}, "metadata.logging"),
        ({"logging": ["team_sink"]}, "metadata.logging[0]"),
        ({"turn_off_message_logging": "yes"}, "metadata.turn_off_message_logging"),
    ]:  # fmt: skip
        proxy.error("POST", "/key/generate", 400, param, json={"metadata": metadata})
        proxy.error("POST", "/team/new", 400, param, json={"metadata": metadata})
    key = proxy.ok("POST", "/key/generate", json={})
    proxy.error("POST", "/key/update", 400, "metadata.logging[0].callback_name",
                json={"key": key["key"], "metadata": {"logging": [{"callback_name": "nope"}]}})  # fmt: skip
    # only the admin sets them: a key cannot update itself
    r = proxy.call("POST", "/key/update", key=key["key"],
                   json={"key": key["key"], "metadata": {"logging": [{"callback_name": "team_sink"}]}})  # fmt: skip
    assert r.status_code == 401


def test_key_regenerate(proxy: Proxy) -> None:
    old = proxy.ok("POST", "/key/generate", json={"key_alias": "rotating", "max_budget": 3})
    assert proxy.chat(old["key"]).choices[0].message.content == "Hello from fake"
    new = proxy.ok("POST", "/key/regenerate", json={"key": old["key"], "max_budget": 4})
    assert new["key"] != old["key"] and new["token"] != old["token"]
    assert (new["key_alias"], new["max_budget"]) == ("rotating", 4.0)  # the rest stays, a field may change
    with pytest.raises(openai.AuthenticationError):  # the old text stops at once on this instance
        proxy.chat(old["key"])
    assert proxy.chat(new["key"]).choices[0].message.content == "Hello from fake"
    newer = proxy.ok("POST", f"/key/{new['token']}/regenerate", json={})  # the path form, by hash
    assert proxy.chat(newer["key"]).choices[0].message.content == "Hello from fake"
    proxy.error("POST", "/key/regenerate", 404, "key", json={"key": old["key"]})
    proxy.error("POST", "/key/regenerate", 400, "key", json={})
    proxy.error(
        "POST", "/key/regenerate", 400, "new_master_key", json={"key": newer["key"], "new_master_key": "sk-x"}
    )
    assert (
        proxy.call("POST", "/key/regenerate", key=newer["key"], json={"key": newer["key"]}).status_code == 401
    )


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("lmgate.proxy.spend") is None,
    reason="the spend writer (the limits part of issue 15, proxy/spend.py) is not in this tree yet",
)
def test_spend_of_real_calls_reaches_the_reports_after_a_restart(
    tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver
) -> None:
    """Calls made with generated keys: after a graceful stop (spend is never lost on SIGTERM) and
    a restart on the same store, /spend/logs has one row per call, with the cost and call id the
    client saw, and the /…/info answers and the report sum them."""
    url = f"sqlite:///{tmp_path / 'data' / 'lmgate.db'}"
    config = write_config(tmp_path, fake_provider, log_receiver)
    first = start(tmp_path, config, url)
    seen: dict[str, float] = {}
    try:
        first.ok("POST", "/team/new", json={"team_id": "t1"})
        first.ok("POST", "/customer/new", json={"user_id": "cust-1"})
        key = first.ok("POST", "/key/generate", json={"team_id": "t1", "user_id": "ana"})
        first.ok("POST", "/user/new", json={"user_id": "ana", "auto_create_key": False})
        with openai.OpenAI(api_key=key["key"], base_url=f"{first.url}/v1", max_retries=0) as client:
            for end_user in ("cust-1", None, None):
                extra = {"user": end_user} if end_user else {}
                raw = client.chat.completions.with_raw_response.create(model="fast", messages=HI, **extra)
                seen[raw.headers["x-litellm-call-id"]] = float(raw.headers["x-litellm-response-cost"])
        cust_call = next(iter(seen))
    finally:
        assert first.served.stop() == 0
    second = start(tmp_path, config, url)
    try:
        rows = second.ok("GET", "/spend/logs", params={"api_key": key["key"]})
        assert {r["request_id"]: r["spend"] for r in rows} == pytest.approx(seen)
        assert {r["team_id"] for r in rows} == {"t1"} and {r["user"] for r in rows} == {"ana"}
        total = sum(seen.values())
        assert second.ok("GET", "/key/info", params={"key": key["key"]})["info"]["spend"] == pytest.approx(
            total
        )
        assert second.ok("GET", "/team/info", params={"team_id": "t1"})["team_info"][
            "spend"
        ] == pytest.approx(total)
        assert second.ok("GET", "/user/info", params={"user_id": "ana"})["user_info"][
            "spend"
        ] == pytest.approx(total)
        assert second.ok("GET", "/customer/info", params={"end_user_id": "cust-1"})["spend"] == pytest.approx(
            seen[cust_call]
        )
        today = rows[0]["startTime"][:10]
        report = second.ok(
            "GET",
            "/global/spend/report",
            params={"start_date": today, "end_date": today, "group_by": "api_key"},
        )
        assert [(r["api_key"], r["requests"]) for r in report] == [(key["token"], 3)]
        assert report[0]["total_cost"] == pytest.approx(total)
    finally:
        second.served.stop()
