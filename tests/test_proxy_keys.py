"""Virtual keys through a real ``lmgate serve`` with a real key store (SQLite; PostgreSQL for the
tests parametrized over ``served``), called with the official ``openai`` client: the management
API, key states, model access and identity."""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fakes import FakeProvider, LogReceiver
from test_proxy_server import Served

MASTER = "sk-master-keys-0123456789"
UPSTREAM = "sk-upstream-keys-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
HI = [{"role": "user", "content": "Hi"}]


def write_config(tmp: Path, fake: FakeProvider, receiver: LogReceiver, general: str = "") -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params: {{model: openai/gpt-4o-mini, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
          - model_name: smart
            litellm_params: {{model: openai/gpt-4o, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
        litellm_settings:
          callbacks: [sink]
        callback_settings:
          sink: {{callback_type: generic_api, endpoint: {receiver.url}, batch_size: 1, spool_dir: {tmp / "spool"}}}
        general_settings:
          master_key: {MASTER}
          virtual_keys: true
        """)
        + general
    )
    return path


#: run a test on both stores: ``@BOTH_STORES`` over a test that takes ``served``
BOTH_STORES = pytest.mark.parametrize("served", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def served(
    request: pytest.FixtureRequest, tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver
) -> Iterator[Served]:
    general = ""
    if getattr(request, "param", "sqlite") == "postgresql":
        general = f"  database_url: {request.getfixturevalue('fresh_postgres_url')}\n"
    server = Served(
        write_config(tmp_path, fake_provider, log_receiver, general),
        tmp_path,
        args=["--data-dir", str(tmp_path / "data")],
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def admin(server: Served, method: str, path: str, key: str = MASTER, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, f"{server.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10, **kwargs
    )


def generate(server: Served, **body: Any) -> dict[str, Any]:
    r = admin(server, "POST", "/key/generate", json=body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def served_database(request: pytest.FixtureRequest) -> str:
    """The name of the PostgreSQL database the ``served`` proxy of this test uses."""
    return str(request.getfixturevalue("fresh_postgres_url")).rsplit("/", 1)[1]


def chat(server: Served, key: str, model: str = "fast", **extra: Any) -> Any:
    with openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0) as client:
        return client.chat.completions.create(model=model, messages=HI, **extra)  # type: ignore[call-overload]


def refused(server: Served, key: str, model: str = "fast") -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        chat(server, key, model)
    return caught.value


@BOTH_STORES
def test_key_lifecycle_generate_use_info_block_unblock_delete(
    served: Served, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    made = generate(served, key_alias="search-bot", metadata={"owner": "search"}, tags=["prod"])
    key = made["key"]
    assert key.startswith("sk-") and made["token"] == hashlib.sha256(key.encode()).hexdigest()
    assert made["key_alias"] == "search-bot" and made["expires"] is None and made["blocked"] is False
    # only the hash is stored: the key's text is nowhere in the database
    if request.node.callspec.params["served"] == "sqlite":
        database = (tmp_path / "data" / "lmgate.db").read_bytes()
        assert key.encode() not in database and made["token"].encode() in database
    else:
        pg = request.getfixturevalue("postgres_server")
        dump = pg.psql("SELECT token, key_name FROM lmgate_keys", database=served_database(request))
        assert key not in dump and made["token"] in dump

    assert chat(served, key).choices[0].message.content == "Hello from fake"

    info = admin(served, "GET", "/key/info", params={"key": key})
    assert info.status_code == 200 and info.json()["key"] == made["token"]
    assert info.json()["info"]["key_alias"] == "search-bot" and "key" not in info.json()["info"]
    assert key not in info.text
    assert admin(served, "GET", "/key/list").json()["keys"] == [made["token"]]

    assert admin(served, "POST", "/key/block", json={"key": key}).json()["blocked"] is True
    error = refused(served, key)
    assert error.status_code == 401 and "blocked" in error.message
    assert admin(served, "POST", "/key/unblock", json={"key": made["token"]}).json()["blocked"] is False
    assert chat(served, key).choices[0].message.content == "Hello from fake"

    deleted = admin(served, "POST", "/key/delete", json={"keys": [key]})
    assert deleted.status_code == 200 and deleted.json() == {"deleted_keys": [made["token"]]}
    error = refused(served, key)
    assert error.status_code == 401
    assert error.body["type"] == "authentication_error"  # type: ignore[index]
    assert admin(served, "GET", "/key/info", params={"key": key}).status_code == 404
    # the master key still works
    assert chat(served, MASTER).choices[0].message.content == "Hello from fake"


@BOTH_STORES
def test_unknown_and_expired_keys_are_refused(served: Served) -> None:
    assert refused(served, "sk-never-generated-000000").status_code == 401
    key = generate(served, duration="1h")["key"]
    assert chat(served, key).choices[0].message.content == "Hello from fake"
    # a lifetime already over: "0s" from now
    updated = admin(served, "POST", "/key/update", json={"key": key, "duration": "0s"})
    assert updated.status_code == 200, updated.text
    error = refused(served, key)
    assert error.status_code == 401 and "expired" in error.message


@BOTH_STORES
def test_model_access_of_key_and_team(served: Served, fake_provider: FakeProvider) -> None:
    key = generate(served, models=["fast"])["key"]
    assert chat(served, key, "fast").choices[0].message.content == "Hello from fake"
    with openai.OpenAI(api_key=key, base_url=f"{served.url}/v1", max_retries=0) as client:
        assert [m.id for m in client.models.list()] == ["fast"]  # a key lists what it may call
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("smart")
    before = len(fake_provider.requests)
    error = refused(served, key, "smart")
    assert error.status_code == 401
    assert error.body["type"] == "key_model_access_denied" and "['fast']" in error.message  # type: ignore[index]
    assert len(fake_provider.requests) == before  # refused before any provider call

    team = admin(served, "POST", "/team/new", json={"team_alias": "search", "models": ["smart"]})
    assert team.status_code == 200, team.text
    team_id = team.json()["team_id"]
    team_key = generate(served, team_id=team_id)["key"]
    assert chat(served, team_key, "smart").choices[0].message.content == "Hello from fake"
    error = refused(served, team_key, "fast")
    assert error.status_code == 401 and error.body["type"] == "team_model_access_denied"  # type: ignore[index]
    # a team's models change at once on this instance
    assert (
        admin(served, "POST", "/team/update", json={"team_id": team_id, "models": ["fast"]}).status_code
        == 200
    )
    assert chat(served, team_key, "fast").choices[0].message.content == "Hello from fake"

    info = admin(served, "GET", "/team/info", params={"team_id": team_id}).json()
    assert info["team_info"]["team_alias"] == "search" and len(info["keys"]) == 1
    assert [t["team_id"] for t in admin(served, "GET", "/team/list").json()] == [team_id]
    gone = admin(served, "POST", "/team/delete", json={"team_ids": [team_id]})
    assert gone.status_code == 200 and gone.json()["deleted_teams"] == [team_id]
    assert refused(served, team_key).status_code == 401
    unknown_team = admin(served, "POST", "/key/generate", json={"team_id": "nope"})
    assert unknown_team.status_code == 400 and unknown_team.json()["error"]["param"] == "team_id"


def test_identity_of_the_key_reaches_the_log_payload(served: Served, log_receiver: LogReceiver) -> None:
    team_id = admin(served, "POST", "/team/new", json={"team_id": "t-1", "team_alias": "search"}).json()[
        "team_id"
    ]
    made = generate(served, key_alias="bot", team_id=team_id, user_id="u-7")
    spoof = {"user_api_key_alias": "admin", "user_api_key_team_id": "other", "user_api_key_user_id": "root"}
    chat(served, made["key"], metadata=spoof)
    assert log_receiver.wait_for_records(1, timeout=10)
    [record] = log_receiver.records
    metadata = record["metadata"]
    assert metadata["user_api_key_hash"] == made["token"]
    assert metadata["user_api_key_alias"] == "bot"
    assert (metadata["user_api_key_team_id"], metadata["user_api_key_team_alias"]) == ("t-1", "search")
    assert metadata["user_api_key_user_id"] == "u-7"
    assert made["key"] not in str(record)


def test_keyed_caller_cannot_set_control_params(served: Served, fake_provider: FakeProvider) -> None:
    key = generate(served, models=["fast"])["key"]
    response = chat(
        served,
        key,
        extra_body={
            "api_base": "http://10.0.0.1:1/v1",
            "api_key": "sk-evil-000000000000",
            "mock_response": "mocked",
            "callbacks": ["generic_api"],
            "success_callback": ["generic_api"],
        },
    )
    assert response.choices[0].message.content == "Hello from fake"
    sent = fake_provider.last_request
    assert sent is not None and sent.headers["authorization"] == f"Bearer {UPSTREAM}"
    assert not {"api_base", "mock_response", "callbacks", "success_callback"} & set(sent.json)


def test_management_routes_are_the_admins(served: Served) -> None:
    key = generate(served)["key"]
    for method, path, body in [
        ("POST", "/key/generate", {}),
        ("GET", "/key/list", None),
        ("POST", "/key/delete", {"keys": [key]}),
        ("POST", "/team/new", {}),
    ]:
        r = admin(served, method, path, key=key, json=body)
        assert r.status_code == 401, (path, r.text)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert admin(served, "GET", "/key/list", key="sk-unknown-000000000").status_code == 401
    assert httpx.get(f"{served.url}/key/list").status_code == 401
    # the key is still there: the refused delete did nothing
    assert chat(served, key).choices[0].message.content == "Hello from fake"


def test_bad_management_bodies_name_the_field(served: Served) -> None:
    for body, field in [
        ({"models": "fast"}, "models"),
        ({"max_budget": -1}, "max_budget"),
        ({"duration": "soon"}, "duration"),
        ({"budget_duration": "5 parsecs"}, "budget_duration"),
        ({"rpm_limt": 5}, "rpm_limt"),
    ]:
        r = admin(served, "POST", "/key/generate", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == field
    assert admin(served, "POST", "/key/delete", json={}).status_code == 400
    assert admin(served, "POST", "/key/update", json={"key": "sk-nope-00000000"}).status_code == 404


def test_the_store_survives_a_restart(
    tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver
) -> None:
    config = write_config(tmp_path, fake_provider, log_receiver, f"  data_dir: {tmp_path / 'configured'}\n")
    no_env_dir = {"LMGATE_DATA_DIR": ""}  # the suite sets one for every process; it would win over the config
    first = Served(config, tmp_path, no_env_dir)
    try:
        first.wait_ready()
        key = generate(first, key_alias="kept")["key"]
    finally:
        first.stop()
    assert (tmp_path / "configured" / "lmgate.db").exists()
    second = Served(config, tmp_path, no_env_dir)
    try:
        second.wait_ready()
        assert chat(second, key).choices[0].message.content == "Hello from fake"
    finally:
        second.stop()


@pytest.mark.parametrize(
    ("general", "named"),
    [
        ("general_settings: {virtual_keys: true}", "general_settings.virtual_keys"),
        (
            "general_settings: {master_key: sk-m-0000000, virtual_keys: true, database_url: 'mysql://u:pw-secret@h/db'}",
            "general_settings.database_url",
        ),
        (
            "general_settings: {master_key: sk-m-0000000, virtual_keys: maybe}",
            "general_settings.virtual_keys",
        ),
    ],
)
def test_key_store_config_errors_name_the_key(tmp_path: Path, general: str, named: str) -> None:
    from lmgate.proxy.config import ConfigError, load_config

    path = tmp_path / "config.yaml"
    path.write_text(
        f"model_list: [{{model_name: m, litellm_params: {{model: openai/gpt-4o-mini, mock_response: hi}}}}]\n{general}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert named in str(caught.value) and "pw-secret" not in str(caught.value)


def test_a_database_url_without_virtual_keys_changes_nothing(tmp_path: Path) -> None:
    from lmgate.proxy.app import create_app
    from lmgate.proxy.config import load_config

    path = tmp_path / "config.yaml"
    path.write_text(
        "model_list: [{model_name: m, litellm_params: {model: openai/gpt-4o-mini, mock_response: hi}}]\n"
        "general_settings: {master_key: sk-m-0000000, database_url: 'postgresql://u:p@127.0.0.1:1/db'}\n"
    )
    config = load_config(path, environ={})
    assert not config.virtual_keys and "general_settings.database_url" in config.ignored_keys
    app = create_app(config, apply=False)
    assert app.state.proxy.key_store is None
    assert not any(getattr(r, "path", "") == "/key/generate" for r in app.routes)
