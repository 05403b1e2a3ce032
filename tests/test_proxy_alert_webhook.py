"""Soft-budget alerts POSTed to a webhook (``general_settings.alerting: ["webhook"]`` and
``WEBHOOK_URL``, proxy/alerts.py) by real ``lmgate serve`` processes: the reference's
``WebhookEvent`` shape, one per budget window across two instances, a dead webhook retried
and counted; config errors name the file, the key and the fix."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import FakeProvider, LogReceiver, RedisServer
from test_proxy_limits import CALL_COST, Cluster, admin, chat, generate, write_config

from lmgate.exceptions import ConfigError
from lmgate.proxy.config import load_config


@pytest.fixture
def webhook() -> Iterator[LogReceiver]:
    with LogReceiver(path="/budget-alerts") as receiver:
        yield receiver


def _alerting_config(path: Path, alerting: str = '["webhook"]') -> Path:
    text = path.read_text().replace(
        "  virtual_keys: true\n", f"  virtual_keys: true\n  alerting: {alerting}\n"
    )
    path.write_text(text)
    return path


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_crossed_soft_budget_is_posted_once_per_window_across_two_instances(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    fake_provider: FakeProvider,
    log_receiver: LogReceiver,
    redis_server: RedisServer,
    webhook: LogReceiver,
    database: str,
) -> None:
    url = str(request.getfixturevalue("fresh_postgres_url")) if database == "postgresql" else None
    redis_server.flushall()
    config = _alerting_config(write_config(tmp_path, fake_provider, log_receiver, redis_server.url, url))
    webhook.fail_next(2, 503)  # the webhook is down at first: the alert is retried, not lost
    env = {"WEBHOOK_URL": webhook.url, "LMGATE_SPEND_FLUSH_INTERVAL_S": "0.05"}
    cluster = Cluster(tmp_path, config, env, url)
    try:
        a, b = cluster.start(2)
        team = {"team_id": "t-hook", "team_alias": "hooks", "soft_budget": CALL_COST * 1.5}
        assert admin(a, "POST", "/team/new", json=team).status_code == 200
        made = generate(
            a,
            team_id="t-hook",
            key_alias="alerted",
            soft_budget=CALL_COST * 2.5,
            max_budget=1.0,
            budget_duration="30d",
        )
        for server in (a, b, a, b, a):  # the team crosses at the 2nd call, the key at the 3rd
            assert chat(server, made["key"]).choices[0].message.content
        assert webhook.wait_for_records(2, timeout=30)
        stats = "\n".join(admin(s, "GET", "/metrics").text for s in (a, b))
        assert 'lmgate_logger_retried_total{logger="alerting_webhook"}' in stats  # counted in /metrics
    finally:
        cluster.stop()
    assert len(webhook.all_requests) == 4  # two refused (503), then each alert delivered once
    delivered = {r.headers["idempotency-key"] for r in webhook.requests}
    assert webhook.all_requests[0].headers["idempotency-key"] in delivered  # a retry keeps its key
    events = sorted(webhook.records, key=lambda e: e["event_group"])
    assert [e["event_group"] for e in events] == ["key", "team"]
    key_event, team_event = events
    assert key_event["event"] == team_event["event"] == "soft_budget_crossed"
    assert key_event["token"] == made["token"] and key_event["key_alias"] == "alerted"
    assert key_event["team_id"] == "t-hook" and key_event["soft_budget"] == CALL_COST * 2.5
    assert key_event["max_budget"] == 1.0 and key_event["spend"] >= CALL_COST * 2.5
    assert key_event["budget_window_end"] and "Soft Budget Crossed" in key_event["event_message"]
    assert (
        team_event["team_id"] == "t-hook"
        and team_event["team_alias"] == "hooks"
        and team_event["token"] is None
    )
    for request_ in webhook.all_requests:
        assert made["key"] not in request_.body.decode()  # the key itself never: its hash names it
        assert request_.headers["content-type"] == "application/json"


def _config(tmp_path: Path, general: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent("""
        model_list:
          - model_name: fast
            litellm_params: {model: openai/gpt-4o-mini, mock_response: hi}
        general_settings:
          master_key: sk-master-0123456789
          virtual_keys: true
        """)
        + general
    )
    return path


def test_alerting_config_errors_name_the_file_the_key_and_the_fix(tmp_path: Path) -> None:
    path = _config(tmp_path, '  alerting: ["webhook"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert str(path) in message and "general_settings.alerting" in message and "WEBHOOK_URL" in message
    assert "fix: export WEBHOOK_URL=" in message
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"WEBHOOK_URL": "hooks.example.com/secret-token"})
    assert "not an http(s) URL" in str(caught.value) and "secret-token" not in str(caught.value)
    path = _config(tmp_path, '  alerting: ["webhok"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"WEBHOOK_URL": "http://127.0.0.1:9/x"})
    assert (
        "unknown alerting type 'webhok'" in str(caught.value)
        and "webhook" in str(caught.value).split("fix:")[1]
    )
    # the reference's other types are accepted and named in the startup warning, as before
    path = _config(tmp_path, '  alerting: ["slack", "webhook"]\n')
    config = load_config(path, environ={"WEBHOOK_URL": "http://127.0.0.1:9/x"})
    assert (
        config.alert_webhook_url == "http://127.0.0.1:9/x"
        and "general_settings.alerting" in config.ignored_keys
    )
    path = _config(tmp_path, '  alerting: ["webhook"]\n')
    config = load_config(path, environ={"WEBHOOK_URL": "http://127.0.0.1:9/x"})
    assert "general_settings.alerting" not in config.ignored_keys
