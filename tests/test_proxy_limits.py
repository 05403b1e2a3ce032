"""Limits, budgets and spend through real ``lmgate serve`` processes, called with the official
``openai`` client: two instances sharing one Redis and one SQLite key store hold rpm, tpm,
parallel limits and budgets together; spend equals the logged costs after SIGTERM and after
SIGKILL + restart."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fakes import FakeProvider, LogReceiver, RedisServer
from fakes.provider import Reply
from test_proxy_server import Served

MASTER = "sk-master-limits-0123456789"
UPSTREAM = "sk-upstream-limits-0123456789"
HI = [{"role": "user", "content": "Hi"}]
# custom prices: each call of the fake (7 prompt + 5 completion tokens) costs 0.017
IN_PRICE, OUT_PRICE = 0.001, 0.002
CALL_COST = 7 * IN_PRICE + 5 * OUT_PRICE
# the worst case of chat(max_tokens=5): the messages' bytes at the input price + 5 output tokens
WORST = len(b'[[{"role":"user","content":"Hi"}],null,null]') * IN_PRICE + 5 * OUT_PRICE


def write_config(
    tmp: Path, fake: FakeProvider, receiver: LogReceiver, redis_url: str | None, database_url: str | None
) -> Path:
    path = tmp / "config.yaml"
    router = f"router_settings: {{redis_url: '{redis_url}'}}\n" if redis_url else ""
    database = f"  database_url: {database_url}\n" if database_url else ""
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params:
              model: openai/gpt-4o-mini
              api_base: {fake.base_url}/v1
              api_key: {UPSTREAM}
              input_cost_per_token: {IN_PRICE}
              output_cost_per_token: {OUT_PRICE}
        litellm_settings:
          callbacks: [sink]
        callback_settings:
          sink: {{callback_type: generic_api, endpoint: {receiver.url}, batch_size: 1, spool_dir: {tmp / "spool"}}}
        general_settings:
          master_key: {MASTER}
          virtual_keys: true
        """)
        + database
        + router
    )
    return path


class Cluster:
    """Proxy instances on one config and one data directory: one key store, SQLite in the data
    directory or the PostgreSQL database ``database_url`` names."""

    def __init__(
        self, tmp: Path, config: Path, env: dict[str, str] | None = None, database_url: str | None = None
    ) -> None:
        self.tmp, self.config, self.env = tmp, config, env or {}
        self.database_url = database_url
        self.data = tmp / "data"
        self.servers: list[Served] = []

    def start(self, n: int = 1) -> list[Served]:
        started = [
            Served(self.config, self.tmp, self.env, args=["--data-dir", str(self.data)]) for _ in range(n)
        ]
        for server in started:
            server.wait_ready()
        self.servers += started
        return started

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.data / "lmgate.db")

    def query(self, sql: str, **params: Any) -> list[Any]:
        """Rows of one query on the key store, whichever database it is."""
        if self.database_url is None:
            with self.db() as db:
                return db.execute(sql, params).fetchall()
        import sqlalchemy as sa
        from sqlalchemy.ext.asyncio import create_async_engine

        async def run() -> list[Any]:
            engine = create_async_engine(self.database_url)  # type: ignore[arg-type]
            try:
                async with engine.connect() as conn:
                    return list((await conn.execute(sa.text(sql), params)).all())
            finally:
                await engine.dispose()

        return asyncio.run(run())

    def execute(self, sql: str, **params: Any) -> None:
        if self.database_url is None:
            with self.db() as db:
                db.execute(sql, params)
            return
        import sqlalchemy as sa
        from sqlalchemy.ext.asyncio import create_async_engine

        async def run() -> None:
            engine = create_async_engine(self.database_url)  # type: ignore[arg-type]
            try:
                async with engine.begin() as conn:
                    await conn.execute(sa.text(sql), params)
            finally:
                await engine.dispose()

        asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgresql"])
def cluster_of(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    fake_provider: FakeProvider,
    log_receiver: LogReceiver,
    redis_server: RedisServer,
) -> Iterator[Callable[..., Cluster]]:
    """Clusters on SQLite, then on PostgreSQL (tests/pg.py), each with the same Redis."""
    made: list[Cluster] = []
    database = str(request.getfixturevalue("fresh_postgres_url")) if request.param == "postgresql" else None

    def make(redis: bool = True, env: dict[str, str] | None = None) -> Cluster:
        redis_server.flushall()
        url = redis_server.url if redis else None
        config = write_config(tmp_path, fake_provider, log_receiver, url, database)
        cluster = Cluster(tmp_path, config, env, database)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


def admin(server: Served, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, f"{server.url}{path}", headers={"Authorization": f"Bearer {MASTER}"}, timeout=10, **kwargs
    )


def generate(server: Served, **body: Any) -> dict[str, Any]:
    r = admin(server, "POST", "/key/generate", json=body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def chat(server: Served, key: str, **extra: Any) -> Any:
    with openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0) as client:
        return client.chat.completions.create(model="fast", messages=HI, max_tokens=5, **extra)  # type: ignore[call-overload]


def outcome(server: Served, key: str) -> int | openai.APIStatusError:
    """200, or the refusal."""
    try:
        chat(server, key)
    except openai.APIStatusError as error:
        return error
    return 200


def refused(server: Served, key: str) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        chat(server, key)
    return caught.value


def in_one_minute(run: Callable[[], bool]) -> None:
    """Run a per-minute scenario; a run that crossed a minute boundary (whose counts restart
    there) does not count and is run again, a bounded number of times."""
    for _ in range(3):
        minute = int(time.time() // 60)
        try:
            passed = run()
        except AssertionError:
            # a check inside ``run`` failed: the scenario's fault only if its minute held (a
            # request after the boundary is counted in the next minute's window, as it should)
            if int(time.time() // 60) == minute:
                raise
            continue
        if int(time.time() // 60) == minute:
            assert passed
            return
    raise AssertionError("every attempt crossed a minute boundary")


def test_rpm_is_held_across_two_instances(
    cluster_of: Callable[..., Cluster], fake_provider: FakeProvider
) -> None:
    a, b = cluster_of().start(2)

    def run() -> bool:
        key = generate(a, rpm_limit=3)["key"]
        results = [outcome(s, key) for s in (a, b, a, b)]
        if results[:3] != [200, 200, 200]:
            return False
        error = results[3]
        assert isinstance(error, openai.RateLimitError), error
        assert error.status_code == 429 and 1 <= int(error.response.headers["retry-after"]) <= 60
        assert "rpm_limit: 3" in error.message and error.body["type"] == "rate_limit_error"  # type: ignore[index]
        return True

    in_one_minute(run)


def test_tpm_is_held_across_two_instances(cluster_of: Callable[..., Cluster]) -> None:
    a, b = cluster_of().start(2)

    def run() -> bool:
        key = generate(a, tpm_limit=20)["key"]  # each call uses 12 tokens
        results = [outcome(s, key) for s in (a, b, a)]
        if results[:2] != [200, 200]:
            return False
        error = results[2]
        assert isinstance(error, openai.RateLimitError) and "tpm_limit: 20, current tpm: 24" in error.message
        assert "retry-after" in error.response.headers
        return True

    in_one_minute(run)


def test_parallel_requests_are_held_across_two_instances(
    cluster_of: Callable[..., Cluster], fake_provider: FakeProvider
) -> None:
    a, b = cluster_of().start(2)
    key = generate(a, max_parallel_requests=2)["key"]
    gate = threading.Event()
    fake_provider.enqueue(Reply(delay_event=gate), Reply(delay_event=gate))
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(chat, s, key) for s in (a, b)]
        try:
            assert fake_provider.wait_for_requests(2, timeout=20)
            for server in (a, b):
                error = refused(server, key)
                assert error.status_code == 429 and error.response.headers["retry-after"] == "1"
                assert "max_parallel_requests: 2, requests in flight: 2" in error.message
        finally:
            gate.set()
        for future in held:
            assert future.result().choices[0].message.content
    # the slots are given back: at once on the instance that settles, within milliseconds on
    # the other (a settlement rides with its instance's next admission) — bounded polling
    for _ in range(200):
        if outcome(b, key) == 200:
            break
    else:
        raise AssertionError("the parallel slots were never given back")
    assert len(fake_provider.requests) == 3  # the refused ones never reached the provider


def logged_costs(receiver: LogReceiver, token: str) -> list[float]:
    return [
        r["response_cost"]
        for r in receiver.records
        if r["metadata"].get("user_api_key_hash") == token and r.get("status") == "success"
    ]


def ledger_spend(cluster: Cluster, token: str) -> tuple[float, int, float]:
    """(sum of the ledger's costs, its rows, the key row's spend) of one key."""
    [(total, rows)] = cluster.query(
        "SELECT COALESCE(SUM(cost), 0), COUNT(*) FROM lmgate_spend_ledger WHERE token = :t", t=token
    )
    [(spend,)] = cluster.query("SELECT spend FROM lmgate_keys WHERE token = :t", t=token)
    return float(total), int(rows), float(spend)


def test_a_nearly_spent_budget_is_never_overrun_by_concurrent_requests_on_two_instances(
    cluster_of: Callable[..., Cluster], log_receiver: LogReceiver, fake_provider: FakeProvider
) -> None:
    cluster = cluster_of()
    a, b = cluster.start(2)
    budget = 0.4
    made = generate(a, max_budget=budget)
    key, token = made["key"], made["token"]
    for _ in range(15):  # 15 × 0.017 = 0.255 spent: room for a few more calls, not for 30
        assert chat(a if _ % 2 else b, key).choices[0].message.content
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda i: outcome(a if i % 2 else b, key), range(30)))
    ok = results.count(200)
    refusals = [r for r in results if r != 200]
    assert ok >= 1 and refusals
    for error in refusals:
        assert isinstance(error, openai.BadRequestError) and error.body["type"] == "budget_exceeded"  # type: ignore[index]
    error = refused(a, key)  # and now it is spent: the worst case of one more call does not fit
    assert error.status_code == 400 and "Budget has been exceeded! Key=" in error.message
    assert len(fake_provider.requests) == 15 + ok
    assert log_receiver.wait_for_records(15 + ok, timeout=20)
    cluster.stop()
    total, rows, spend = ledger_spend(cluster, token)
    assert rows == 15 + ok and total <= budget and total == pytest.approx((15 + ok) * CALL_COST)
    assert budget - total < WORST  # refused only when one more worst case did not fit
    assert spend == pytest.approx(total) and total == pytest.approx(sum(logged_costs(log_receiver, token)))


def test_team_and_user_budgets_are_enforced(cluster_of: Callable[..., Cluster]) -> None:
    cluster = cluster_of(redis=False)  # the in-process counters: the same rules
    (a,) = cluster.start(1)
    team = admin(a, "POST", "/team/new", json={"team_id": "t-budget", "max_budget": WORST * 1.2}).json()
    key = generate(a, team_id=team["team_id"])["key"]
    assert chat(a, key).choices[0].message.content
    error = refused(a, key)
    assert error.status_code == 400 and error.body["type"] == "budget_exceeded"  # type: ignore[index]
    assert "Team=t-budget" in error.message
    # users are created by the user routes; a row is enough here
    cluster.execute(
        "INSERT INTO lmgate_users (user_id, max_budget, metadata, spend, created_at, updated_at)"
        " VALUES ('u-budget', :b, '{}', 0, 0, 0)",
        b=WORST * 1.2,
    )
    key = generate(a, user_id="u-budget")["key"]
    assert chat(a, key).choices[0].message.content
    other = generate(a, user_id="u-budget")["key"]  # the user's budget covers all its keys
    error = refused(a, other)
    assert error.status_code == 400 and "User=u-budget" in error.message
    # an end user (the request's "user") with a budget: every key's requests for it count
    made = admin(a, "POST", "/customer/new", json={"user_id": "cust-1", "max_budget": WORST * 1.2})
    assert made.status_code == 200, made.text
    first, second = generate(a)["key"], generate(a)["key"]
    assert chat(a, first, user="cust-1").choices[0].message.content
    with pytest.raises(openai.BadRequestError) as caught:
        chat(a, second, user="cust-1")
    assert caught.value.body["type"] == "budget_exceeded" and "EndUser=cust-1" in caught.value.message  # type: ignore[index]
    assert chat(a, second, user="cust-2").choices[0].message.content  # another end user: no budget


def test_a_key_changed_on_one_instance_is_refused_at_once_by_the_other(
    cluster_of: Callable[..., Cluster],
) -> None:
    a, b = cluster_of().start(2)
    key = generate(a)["key"]
    assert chat(b, key).choices[0].message.content  # b has the key in its cache now (60 s with Redis)
    assert admin(a, "POST", "/key/block", json={"key": key}).status_code == 200
    for _ in range(200):  # the invalidation travels over Redis pub/sub: bounded polling
        if outcome(b, key) != 200:
            break
    else:
        raise AssertionError("the other instance kept serving a blocked key")
    error = refused(b, key)
    assert error.status_code == 401 and "blocked" in error.message


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_spend_equals_the_logged_costs_after_a_stop(
    cluster_of: Callable[..., Cluster], log_receiver: LogReceiver, stop: str
) -> None:
    # the ledger is written only at shutdown or from the journal: the test sees which did it
    cluster = cluster_of(env={"LMGATE_SPEND_FLUSH_INTERVAL_S": "3600"})
    (server,) = cluster.start(1)
    made = generate(server, key_alias="spender")
    for _ in range(6):
        assert chat(server, made["key"]).choices[0].message.content
    assert log_receiver.wait_for_records(6, timeout=20)
    journal = cluster.data / "spend-journal"
    if stop == "SIGKILL":
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=20)
        assert ledger_spend(cluster, made["token"])[1] == 0  # nothing reached the database…
        assert (
            sum(p.read_bytes().count(b"\n") for p in journal.glob("journal-*.jsonl")) == 6
        )  # …the journal has it
        (server,) = cluster.start(1)  # the restart replays the journal
        assert "6 rows recovered" in server.stderr or "recovered" in server.stderr
    server.stop()
    total, rows, spend = ledger_spend(cluster, made["token"])
    logged = logged_costs(log_receiver, made["token"])
    assert rows == 6 and len(logged) == 6
    assert total == pytest.approx(sum(logged)) and spend == pytest.approx(total)
    assert not list(journal.glob("journal-*.jsonl"))  # everything written: no journal left
    ids = {r[0] for r in cluster.query("SELECT request_id FROM lmgate_spend_ledger")}
    mine = [r for r in log_receiver.records if r["metadata"].get("user_api_key_hash") == made["token"]]
    assert ids == {r["litellm_call_id"] for r in mine}  # a ledger row names the call its log record names


def test_a_stream_settles_at_its_end_and_when_its_client_leaves(
    cluster_of: Callable[..., Cluster], fake_provider: FakeProvider, log_receiver: LogReceiver
) -> None:
    cluster = cluster_of()
    (server,) = cluster.start(1)
    made = generate(server, max_parallel_requests=1, max_budget=10.0)
    key, token = made["key"], made["token"]
    with openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0) as client:
        stream = client.chat.completions.create(
            model="fast", messages=HI, max_tokens=5, stream=True, stream_options={"include_usage": True}
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        gate = threading.Event()
        fake_provider.enqueue(Reply(hold_after_chunks=1, delay_event=gate))
        try:
            leaving = client.chat.completions.create(model="fast", messages=HI, max_tokens=5, stream=True)
            next(iter(leaving))  # the first chunk, then the client goes away mid-stream
            assert refused(server, key).status_code == 429  # its slot is held while it streams
            leaving.response.close()
            for _ in range(400):  # bounded: the proxy notices the client left, settles, frees the slot
                if outcome(server, key) == 200:
                    break
            else:
                raise AssertionError("the parallel slot of a stream whose client left was never given back")
        finally:
            gate.set()
    assert log_receiver.wait_for_records(3, timeout=20)
    cluster.stop()
    total, rows, spend = ledger_spend(cluster, token)
    costs = [
        r["response_cost"] or 0.0
        for r in log_receiver.records
        if r["metadata"].get("user_api_key_hash") == token
    ]
    assert rows == 3 and total == pytest.approx(sum(costs)) and spend == pytest.approx(total)


def test_a_soft_budget_alerts_once_per_window_across_two_instances_and_never_refuses(
    cluster_of: Callable[..., Cluster],
) -> None:
    """Keys, teams and users take ``soft_budget`` (shown by /info); the request whose settled
    spend crosses it raises one alert — a WARNING line, a row in ``lmgate_budget_alerts`` — on
    whichever instance wrote it first, never a second for the same window, never a refusal."""
    cluster = cluster_of()
    a, b = cluster.start(2)
    team = admin(a, "POST", "/team/new", json={"team_id": "t-soft", "soft_budget": CALL_COST * 1.5}).json()
    assert team["soft_budget"] == CALL_COST * 1.5
    made = generate(a, team_id="t-soft", soft_budget=CALL_COST * 2.5, budget_duration="30d")
    key, token = made["key"], made["token"]
    info = admin(b, "GET", "/key/info", params={"key": key}).json()["info"]
    assert info["soft_budget"] == CALL_COST * 2.5
    assert admin(b, "POST", "/key/update", json={"key": key, "soft_budget": "lots"}).status_code == 400
    for server in (a, b, a, b, a):  # the team crosses at the 2nd call, the key at the 3rd
        assert chat(server, key).choices[0].message.content  # past a soft budget: still answered
    cluster.stop()  # each instance writes its last batch (and checks its soft budgets) at SIGTERM
    rows = cluster.query(
        "SELECT scope, scope_id, soft_budget, spend FROM lmgate_budget_alerts ORDER BY scope"
    )
    assert [(r[0], r[1]) for r in rows] == [("key", token), ("team", "t-soft")]
    assert rows[0][3] >= CALL_COST * 2.5 and rows[1][3] >= CALL_COST * 1.5
    logs = a.stderr + b.stderr
    assert logs.count("budget alert: Key=sk-...") == 1 and logs.count("budget alert: Team=t-soft") == 1
    assert key not in logs  # the key itself never: its masked form names it
    again = cluster.start(1)[0]  # the window's alert is recorded: no second one after a restart
    assert chat(again, key).choices[0].message.content
    cluster.stop()
    assert len(cluster.query("SELECT scope FROM lmgate_budget_alerts")) == 2
    assert "budget alert" not in again.stderr


def test_a_soft_budget_alert_is_counted_in_metrics(cluster_of: Callable[..., Cluster]) -> None:
    cluster = cluster_of(redis=False, env={"LMGATE_SPEND_FLUSH_INTERVAL_S": "0.05"})
    [server] = cluster.start(1)
    key = generate(server, soft_budget=CALL_COST / 2)["key"]
    assert chat(server, key).choices[0].message.content
    line = 'lmgate_soft_budget_alerts_total{scope="key"} 1.0'
    for _ in range(200):  # the writer's next batch (every 50 ms here) checks it: bounded polling
        if line in admin(server, "GET", "/metrics").text:
            break
        threading.Event().wait(0.05)
    assert line in admin(server, "GET", "/metrics").text
