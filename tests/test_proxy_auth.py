"""Auth modes, key headers, probes and the small operator conveniences, against a real ``lmgate serve``.

The module's server takes its master key from ``LITELLM_MASTER_KEY`` (the config has no
general_settings), so every test on it also shows that the environment sets the key. Keys are
sent by the official openai clients (``OpenAI``, ``AzureOpenAI``) and by raw httpx the way the
other clients send them (the anthropic SDK's ``x-api-key``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fakes import FakeProvider, LogReceiver
from test_proxy_server import Served

import lmgate
from lmgate.proxy.app import create_app
from lmgate.proxy.config import ConfigError, load_config
from lmgate.proxy.server import bind_address

MASTER = "sk-master-auth-0123456789"
UPSTREAM = "sk-upstream-auth-0123456789"
HI = [{"role": "user", "content": "Hi"}]
MASTER_ENV = ("LITELLM_MASTER_KEY", "LMGATE_MASTER_KEY")
POLLS = 500  # bound on polls of a state that changes within a few requests


def config_text(fake: FakeProvider, extra: str = "") -> str:
    return textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params: {{model: openai/gpt-4o-mini, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
          - model_name: team/embed
            litellm_params: {{model: openai/text-embedding-3-small, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
    """) + textwrap.dedent(extra)


def start(
    config: Path, tmp: Path, env: dict[str, str] | None = None, host: str | None = "127.0.0.1"
) -> Served:
    """A server that sees exactly the master-key variables in ``env`` (none inherited from the test run)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in MASTER_ENV:
            mp.delenv(name, raising=False)
        served = Served(config, tmp, env, host=host)
    try:
        served.wait_ready()
    except BaseException:
        served.stop()
        raise
    return served


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fp:
        yield fp


@pytest.fixture(scope="module")
def receiver() -> Iterator[LogReceiver]:
    with LogReceiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def server(
    provider: FakeProvider, receiver: LogReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """Master key from LITELLM_MASTER_KEY; a generic_api logger that sends every record at once."""
    tmp = tmp_path_factory.mktemp("auth")
    path = tmp / "config.yaml"
    path.write_text(
        config_text(
            provider,
            f"""
        litellm_settings:
          callbacks: [team_webhook]
        callback_settings:
          team_webhook:
            callback_type: generic_api
            endpoint: {receiver.url}
            batch_size: 1
            spool_dir: {tmp / "spool"}
    """,
        )
    )
    served = start(path, tmp, {"LITELLM_MASTER_KEY": MASTER})
    try:
        yield served
    finally:
        served.stop()


def chat(served: Served, headers: dict[str, str], prefix: str = "/v1") -> httpx.Response:
    return httpx.post(
        f"{served.url}{prefix}/chat/completions",
        headers=headers,
        json={"model": "fast", "messages": HI},
        timeout=10,
    )


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]  # type: ignore[no-any-return]


def refused(host: str, port: int) -> bool:
    """True when nothing listens on host:port (a connect is refused)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


# ---------------------------------------------------------------------- 1. where the master key comes from


def test_litellm_master_key_in_the_environment_sets_the_key(server: Served) -> None:
    """LITELLM_MASTER_KEY sets the master key: no key is a 401, the key works, and the startup line names the source, masked."""
    assert chat(server, {}).status_code == 401
    assert chat(server, {"Authorization": f"Bearer {MASTER}"}).status_code == 200
    line = server.stderr.splitlines()[0] if server.stderr else ""
    assert "auth: master_key sk-****6789 (from LITELLM_MASTER_KEY)" in line, server.stderr
    assert MASTER not in server.stderr


def test_master_key_sources_in_order(tmp_path: Path) -> None:
    """general_settings.master_key wins over the environment; LMGATE_MASTER_KEY wins over LITELLM_MASTER_KEY."""
    plain = tmp_path / "plain.yaml"
    plain.write_text("model_list: []\n")
    keyed = tmp_path / "keyed.yaml"
    keyed.write_text("general_settings: {master_key: sk-from-config}\n")
    both = {"LMGATE_MASTER_KEY": "sk-lmgate", "LITELLM_MASTER_KEY": "sk-litellm"}
    got = [
        (c.master_key, c.master_key_source)
        for c in (
            load_config(keyed, environ=both),
            load_config(plain, environ=both),
            load_config(plain, environ={"LITELLM_MASTER_KEY": "sk-litellm"}),
            load_config(plain, environ={}),
        )
    ]
    assert got == [
        ("sk-from-config", "general_settings.master_key"),
        ("sk-lmgate", "LMGATE_MASTER_KEY"),
        ("sk-litellm", "LITELLM_MASTER_KEY"),
        (None, None),
    ]


def test_an_empty_master_key_variable_is_a_config_error(tmp_path: Path) -> None:
    """LITELLM_MASTER_KEY set but empty stops the start with a message naming it, instead of serving without auth."""
    path = tmp_path / "config.yaml"
    path.write_text("model_list: []\n")
    with pytest.raises(ConfigError, match="LITELLM_MASTER_KEY is set but empty"):
        load_config(path, environ={"LITELLM_MASTER_KEY": ""})
    env = {k: v for k, v in os.environ.items() if k not in MASTER_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "lmgate", "serve", "--config", str(path), "--port", "9"],
        env={**env, "LMGATE_MASTER_KEY": " "},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "LMGATE_MASTER_KEY is set but empty" in done.stderr


def test_whitespace_around_the_master_key_is_not_part_of_it(tmp_path: Path, provider: FakeProvider) -> None:
    """A key from an environment variable with a trailing newline (a Kubernetes secret) works as the key,
    and the startup line stays one line; a whitespace-only key in the YAML is a config error naming the key."""
    path = tmp_path / "config.yaml"
    path.write_text(config_text(provider))
    served = start(path, tmp_path, {"LITELLM_MASTER_KEY": f"  {MASTER}\n"})
    try:
        assert chat(served, {"Authorization": f"Bearer {MASTER}"}).status_code == 200
        assert chat(served, {"x-api-key": MASTER}).status_code == 200
        assert chat(served, {}).status_code == 401
    finally:
        served.stop()
    first = served.stderr.splitlines()[0]
    assert "auth: master_key sk-****6789 (from LITELLM_MASTER_KEY)" in first, served.stderr
    blank = tmp_path / "blank.yaml"
    blank.write_text('general_settings: {master_key: "  "}\nmodel_list: []\n')
    with pytest.raises(ConfigError, match="general_settings.master_key") as raised:
        load_config(blank, environ={})
    assert "non-empty" in str(raised.value)
    padded = tmp_path / "padded.yaml"
    padded.write_text('general_settings: {master_key: " sk-padded-0123456789 "}\nmodel_list: []\n')
    assert load_config(padded, environ={}).master_key == "sk-padded-0123456789"


# ---------------------------------------------------------------------- 1. binding without a key


def test_without_a_key_the_server_listens_on_loopback_only(provider: FakeProvider, tmp_path: Path) -> None:
    """No master key and no --host: the server listens on 127.0.0.1 only and says every request is accepted without a key."""
    path = tmp_path / "config.yaml"
    path.write_text(config_text(provider))
    served = start(path, tmp_path, host=None)
    try:
        line = served.stderr.splitlines()[0]
        assert "auth: NONE - every request is accepted without a key" in line
        assert (
            f"listening on http://127.0.0.1:{served.port} (loopback only, because there is no master key"
            in line
        )
        assert chat(served, {}).status_code == 200
        # another loopback address reaches a server bound to 0.0.0.0, not one bound to 127.0.0.1
        assert refused("127.0.0.2", served.port)
    finally:
        served.stop()


def test_an_explicit_host_is_honoured_without_a_key(provider: FakeProvider, tmp_path: Path) -> None:
    """--host given explicitly binds there even without a master key, and the startup line says who can use it."""
    path = tmp_path / "config.yaml"
    path.write_text(config_text(provider))
    served = start(path, tmp_path, host="127.0.0.2")
    try:
        line = served.stderr.splitlines()[0]
        assert (
            f"listening on http://127.0.0.2:{served.port} (no master key: anyone who can reach this address"
            in line
        )
        assert chat(served, {}).status_code == 200
        assert refused("127.0.0.1", served.port)
    finally:
        served.stop()


def test_bind_address_defaults(tmp_path: Path) -> None:
    """0.0.0.0 by default with a master key, 127.0.0.1 without; an explicit --host always wins."""
    path = tmp_path / "config.yaml"
    path.write_text("model_list: []\n")
    keyed = load_config(path, environ={"LMGATE_MASTER_KEY": MASTER})
    open_ = load_config(path, environ={})
    assert [
        bind_address(keyed, None)[0],
        bind_address(open_, None)[0],
        bind_address(open_, "0.0.0.0")[0],
        bind_address(keyed, "127.0.0.1")[0],
    ] == ["0.0.0.0", "127.0.0.1", "0.0.0.0", "127.0.0.1"]
    assert "anyone who can reach" in bind_address(open_, "0.0.0.0")[1]
    assert bind_address(keyed, None)[1] == bind_address(open_, "localhost")[1] == ""


# ---------------------------------------------------------------------- 2. how keys arrive


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {MASTER}"},
        {"Authorization": f"bearer  {MASTER}"},
        {"Authorization": MASTER},  # a bare key
        {"x-api-key": MASTER},  # the anthropic SDK
        {"api-key": MASTER},  # Azure clients
    ],
    ids=["bearer", "bearer-lowercase", "bare", "x-api-key", "api-key"],
)
def test_keys_arrive_the_ways_clients_send_them(server: Served, headers: dict[str, str]) -> None:
    """The master key works in every header official clients use; a wrong key in the same header is a 401."""
    assert chat(server, headers).status_code == 200
    wrong = {name: value.replace(MASTER, MASTER + "x") for name, value in headers.items()}
    r = chat(server, wrong, prefix="")
    assert r.status_code == 401
    assert error_of(r)["type"] == "authentication_error" and error_of(r)["code"] == "invalid_api_key"
    assert MASTER not in r.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic abc", "x-api-key": MASTER},
        {"Authorization": "Bearer", "api-key": MASTER},
        {"Authorization": f"Token {MASTER}"},
    ],
    ids=["basic-then-x-api-key", "bearer-without-key", "other-scheme"],
)
def test_authorization_is_read_first_and_never_looked_past(server: Served, headers: dict[str, str]) -> None:
    """An Authorization header that holds no key is a 401 saying how to send one, even with a good key in another header."""
    r = chat(server, headers)
    assert r.status_code == 401
    message = error_of(r)["message"]
    assert "send it as 'Authorization: Bearer <key>', or in an 'api-key' or 'x-api-key' header" in message
    assert MASTER not in r.text and "Token" not in message


def test_openai_client_with_the_key(server: Served) -> None:
    """The openai SDK (Authorization: Bearer) gets answers; with a wrong key it raises AuthenticationError."""
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=MASTER, max_retries=0)
    answer = client.chat.completions.create(model="fast", messages=HI)  # type: ignore[arg-type]
    assert answer.choices[0].message.content
    bad = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-wrong-0123456789", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_azure_client_sends_api_key(server: Served) -> None:
    """AzureOpenAI sends the key as ``api-key``: listing and retrieving models work, a wrong key raises AuthenticationError."""
    client = openai.AzureOpenAI(
        base_url=f"{server.url}/v1", api_key=MASTER, api_version="2024-06-01", max_retries=0
    )
    assert [m.id for m in client.models.list()] == ["fast", "team/embed"]
    assert client.models.retrieve("fast").id == "fast"
    bad = openai.AzureOpenAI(
        base_url=f"{server.url}/v1", api_key="sk-wrong-0123456789", api_version="2024-06-01", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        bad.models.retrieve("fast")


# ---------------------------------------------------------------------- 3. probes


def test_probes_answer_without_a_key_and_reveal_only_health(server: Served) -> None:
    """Liveliness and readiness answer a keyless probe: readiness says healthy per part and nothing else."""
    for prefix in ("", "/v1"):
        live = httpx.get(f"{server.url}{prefix}/health/liveliness", timeout=10)
        ready = httpx.get(f"{server.url}{prefix}/health/readiness", timeout=10)
        assert (live.status_code, live.json()) == (200, "I'm alive!")
        assert ready.status_code == 200
        assert ready.json() == {"status": "healthy", "parts": {"models": "healthy", "loggers": "healthy"}}
        for detail in ("fast", "team_webhook", "gpt-4o", "127.0.0.1", lmgate.__version__, MASTER, "sk-"):
            assert detail not in ready.text


def test_readiness_with_the_key_gives_details_and_a_wrong_key_is_refused(server: Served) -> None:
    """With the master key readiness adds models, loggers and their stats; a request with a wrong key gets a 401."""
    r = httpx.get(f"{server.url}/health/readiness", headers={"x-api-key": MASTER}, timeout=10)
    body = r.json()
    assert r.status_code == 200
    assert body["status"] == "healthy" and body["parts"] == {"models": "healthy", "loggers": "healthy"}
    assert body["models"] == ["fast", "team/embed"]
    assert [(entry["name"], entry["healthy"]) for entry in body["loggers"]] == [("team_webhook", True)]
    wrong = httpx.get(
        f"{server.url}/health/readiness", headers={"Authorization": "Bearer sk-wrong-0123456789"}, timeout=10
    )
    assert wrong.status_code == 401 and error_of(wrong)["type"] == "authentication_error"


def wait_until_delivered(served: Served) -> None:
    """Poll readiness (with the key: it shows the logger's stats) until the logger holds no record."""
    for _ in range(POLLS):
        r = httpx.get(f"{served.url}/health/readiness", headers={"x-api-key": MASTER}, timeout=10)
        if all(entry["stats"]["pending"] == 0 for entry in r.json()["loggers"]):
            return
    raise AssertionError("the logger kept records pending")


def keyless_readiness(served: Served) -> httpx.Response:
    return httpx.get(f"{served.url}/health/readiness", timeout=10)


def test_readiness_degrades_while_the_log_receiver_fails(server: Served, receiver: LogReceiver) -> None:
    """While the log receiver fails the logger is unhealthy and readiness says degraded, still 200; it recovers after."""
    wait_until_delivered(server)  # records of earlier tests must not answer for this one's
    receiver.reset()
    receiver.set_status(503)
    try:
        assert chat(server, {"Authorization": f"Bearer {MASTER}"}).status_code == 200
        # the second request is the logger's first retry: it is counted as retrying by then
        assert receiver.wait_for_requests(2, timeout=30)
        r = keyless_readiness(server)
        assert (r.status_code, r.json()) == (
            200,
            {"status": "degraded", "parts": {"models": "healthy", "loggers": "unhealthy"}},
        )
    finally:
        receiver.set_status(200)
    assert receiver.wait_for_records(1, timeout=30)
    for _ in range(POLLS):
        if keyless_readiness(server).json()["status"] == "healthy":
            break
    else:
        raise AssertionError("readiness did not become healthy again after the receiver recovered")


async def test_readiness_is_503_with_nothing_to_serve(tmp_path: Path) -> None:
    """A proxy without a single model cannot answer any request: readiness is 503 so no traffic is sent to it."""
    path = tmp_path / "config.yaml"
    path.write_text("model_list: []\n")
    app = create_app(load_config(path, environ={}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as c:
        r = await c.get("/health/readiness")
    assert (r.status_code, r.json()) == (503, {"status": "unhealthy", "parts": {"models": "unhealthy"}})


# ---------------------------------------------------------------------- 14. models.retrieve, --version


def test_models_retrieve(server: Served) -> None:
    """client.models.retrieve gives the model (names with a slash too, with and without /v1); an unknown one is a 404."""
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=MASTER, max_retries=0)
    model = client.models.retrieve("fast")
    assert (model.id, model.object, model.owned_by) == ("fast", "model", "lmgate")
    assert client.models.retrieve("team/embed").id == "team/embed"
    raw = httpx.get(
        f"{server.url}/models/team/embed", headers={"Authorization": f"Bearer {MASTER}"}, timeout=10
    )
    assert raw.status_code == 200 and raw.json()["id"] == "team/embed"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4o")
    error = caught.value.response.json()["error"]
    assert {k: error[k] for k in ("type", "param", "code")} == {
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert "'gpt-4o' does not exist" in error["message"]
    listed = httpx.get(f"{server.url}/v1/models/", headers={"Authorization": f"Bearer {MASTER}"}, timeout=10)
    assert [m["id"] for m in listed.json()["data"]] == ["fast", "team/embed"]
    slash = httpx.get(
        f"{server.url}/v1/models/fast/", headers={"Authorization": f"Bearer {MASTER}"}, timeout=10
    )
    assert (slash.status_code, slash.json()["id"]) == (200, "fast")


def test_models_retrieve_needs_the_key(server: Served) -> None:
    """GET /v1/models/{id} without the key is a 401, whether the model exists or not."""
    for name in ("fast", "nope"):
        r = httpx.get(f"{server.url}/v1/models/{name}", timeout=10)
        assert r.status_code == 401


def test_version() -> None:
    """``lmgate --version`` prints the version and exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "lmgate", "--version"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, f"lmgate {lmgate.__version__}")
