"""``lmgate serve`` as a real process on a free port, driven by the official openai client and raw HTTP."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fakes import FakeProvider, LogReceiver

MASTER = "sk-master-serve-0123456789"
UPSTREAM = "sk-upstream-serve-0123456789"
READY_ATTEMPTS = 400  # × up to 50 ms each: a bounded wait for the server to listen

needs_generic_api = pytest.mark.skipif(
    importlib.util.find_spec("lmgate.loggers.generic_api") is None, reason="lmgate.loggers.generic_api is not built yet"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """A running ``lmgate serve`` process."""

    def __init__(self, config: Path, tmp: Path, env: dict[str, str] | None = None, host: str | None = "127.0.0.1",
                 args: Sequence[str] = (), preexec_fn: Callable[[], None] | None = None) -> None:
        """``host=None`` leaves ``--host`` out (the server picks its default); the client side uses 127.0.0.1 then."""
        self.port = free_port()
        self.host = host or "127.0.0.1"
        self.url = f"http://{self.host}:{self.port}"
        self.stderr_path = tmp / f"serve-{self.port}.log"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        host_args = ["--host", host] if host else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lmgate", "serve", "--config", str(config), *host_args, "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL, stderr=self._stderr, env={**os.environ, **(env or {})}, preexec_fn=preexec_fn,
        )

    def wait_ready(self) -> None:
        """Poll /health/liveliness until it answers (connection refused → try again), a bounded number of times."""
        for _ in range(READY_ATTEMPTS):
            try:
                if httpx.get(f"{self.url}/health/liveliness", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            try:
                self.proc.wait(timeout=0.05)  # waits, and notices a server that exited instead of starting
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(f"lmgate serve exited with {self.proc.returncode}: {self.stderr}")
        raise AssertionError(f"lmgate serve did not become ready: {self.stderr}")

    def wait_not_listening(self) -> None:
        """Poll until new connections are refused (the server has begun its graceful shutdown)."""
        for _ in range(READY_ATTEMPTS):
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    pass
            except OSError:
                return
            try:
                self.proc.wait(timeout=0.05)
                return
            except subprocess.TimeoutExpired:
                continue
        raise AssertionError("the server kept accepting connections after SIGTERM")

    @property
    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._stderr.close()
        return code


def write_config(tmp: Path, fake: FakeProvider, extra: str = "") -> Path:
    path = tmp / "config.yaml"
    path.write_text(textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params:
              model: openai/gpt-4o-mini
              api_base: {fake.base_url}/v1
              api_key: os.environ/SERVE_UPSTREAM_KEY
          - model_name: embed
            litellm_params: {{model: openai/text-embedding-3-small, api_base: {fake.base_url}/v1, api_key: os.environ/SERVE_UPSTREAM_KEY}}
        general_settings:
          master_key: os.environ/SERVE_MASTER_KEY
          max_request_size_mb: 0.01
    """) + textwrap.dedent(extra))
    return path


ENV = {"SERVE_UPSTREAM_KEY": UPSTREAM, "SERVE_MASTER_KEY": MASTER}


@pytest.fixture(scope="module")
def module_provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fp:
        yield fp


@pytest.fixture(scope="module")
def server(module_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve")
    served = Served(write_config(tmp, module_provider), tmp, ENV)
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


@pytest.fixture
def provider(module_provider: FakeProvider) -> FakeProvider:
    module_provider.reset()
    return module_provider


_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Every official client a test made is closed after it (its pooled sockets with it)."""
    yield
    while _clients:
        _clients.pop().close()


def oai(server: Served, key: str = MASTER) -> openai.OpenAI:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    _clients.append(client)
    return client


def test_help() -> None:
    """`lmgate serve --help` describes the options and exits 0."""
    out = subprocess.run([sys.executable, "-m", "lmgate", "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for option in ("--config", "--host", "--port", "--workers"):
        assert option in out.stdout


def test_bad_config_exits_non_zero_naming_file_and_key(tmp_path: Path) -> None:
    """A config with a missing model exits 2 with an error naming the file and the key path."""
    path = tmp_path / "config.yaml"
    path.write_text("model_list:\n  - model_name: a\n    litellm_params: {model: gpt-4o}\n  - model_name: b\n    litellm_params: {}\n")
    out = subprocess.run([sys.executable, "-m", "lmgate", "serve", "--config", str(path)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2
    assert f"{path}: model_list[1].litellm_params.model: required" in out.stderr


def test_startup_line_says_what_was_loaded_without_secrets(server: Served) -> None:
    """The startup line lists models and auth, with keys masked."""
    text = server.stderr
    assert "lmgate proxy: loaded" in text
    assert "fast -> [openai/gpt-4o-mini" in text and "embed -> [" in text
    assert UPSTREAM not in text and MASTER not in text


def test_openai_client_plain_call(server: Served, provider: FakeProvider) -> None:
    """The official client gets a completion through the proxy."""
    r = oai(server).chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}])
    assert r.choices[0].message.content == "Hello from fake"
    assert r.usage is not None and r.usage.total_tokens == 12
    assert provider.last_request.headers["authorization"] == f"Bearer {UPSTREAM}"


def test_openai_client_stream(server: Served, provider: FakeProvider) -> None:
    """The official client streams chunks through the proxy to the end."""
    stream = oai(server).chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}], stream=True)
    text = "".join((chunk.choices[0].delta.content or "") for chunk in stream if chunk.choices)
    assert text == "Hello from fake"


def test_openai_client_embeddings_and_models(server: Served, provider: FakeProvider) -> None:
    """Embeddings and the model list work through the official client."""
    client = oai(server)
    assert len(client.embeddings.create(model="embed", input=["a", "b"]).data) == 2
    assert [m.id for m in client.models.list()] == ["fast", "embed"]


def test_openai_client_errors(server: Served, provider: FakeProvider) -> None:
    """An unknown model is a BadRequestError listing the known ones; a wrong key is an AuthenticationError."""
    with pytest.raises(openai.BadRequestError) as bad:
        oai(server).chat.completions.create(model="nope", messages=[{"role": "user", "content": "Hi"}])
    assert "known models: fast, embed" in str(bad.value)
    with pytest.raises(openai.AuthenticationError):
        oai(server, key="sk-wrong-0123456789").chat.completions.create(model="fast", messages=[{"role": "user", "content": "x"}])


def test_raw_bad_input_then_serving_continues(server: Served, provider: FakeProvider) -> None:
    """Malformed JSON and an oversized body get 4xx error bodies over a real socket; the next request succeeds."""
    headers = {"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"}
    with httpx.Client(base_url=server.url, timeout=10) as c:
        malformed = c.post("/v1/chat/completions", headers=headers, content=b'{"model": "fast", "messages": [')
        huge = c.post("/chat/completions", headers=headers, content=b'{"model": "fast", "pad": "' + b"x" * 50_000 + b'"}')
        ok = c.post("/v1/chat/completions", headers=headers, json={"model": "fast", "messages": [{"role": "user", "content": "x"}]})
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]["message"]
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
    assert ok.status_code == 200


def generic_logger_extra(receiver: LogReceiver, tmp: Path, flush_interval: int) -> str:
    return f"""
    litellm_settings:
      callbacks: [team_webhook]
    callback_settings:
      team_webhook:
        callback_type: generic_api
        endpoint: os.environ/SERVE_RECEIVER_URL
        headers: {{Authorization: "Bearer ${{SERVE_WEBHOOK_TOKEN}}"}}
        flush_interval: {flush_interval}
        spool_dir: {tmp / "spool"}
    """


@needs_generic_api
def test_generic_api_logger_from_yaml_delivers(tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver) -> None:
    """A generic_api logger configured in the YAML delivers one record per call, with metadata and key hash, to the receiver."""
    config = write_config(tmp_path, fake_provider, generic_logger_extra(log_receiver, tmp_path, 60))
    served = Served(config, tmp_path, {**ENV, "SERVE_RECEIVER_URL": log_receiver.url, "SERVE_WEBHOOK_TOKEN": "tok-0123456789"})
    try:
        served.wait_ready()
        client = oai(served)
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}],
                                       extra_body={"metadata": {"team": "search"}})
        stream = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}], stream=True)
        for _ in stream:
            pass
    finally:
        code = served.stop()  # shutdown flushes the logger
    assert code == 0, served.stderr
    assert log_receiver.wait_for_records(2, timeout=10)
    records = log_receiver.records
    assert len(records) == 2
    assert records[0]["metadata"]["team"] == "search"
    assert records[0]["metadata"]["user_api_key_hash"] == hashlib.sha256(MASTER.encode()).hexdigest()
    assert records[0]["model_group"] == "fast"
    assert log_receiver.requests[0].headers["authorization"] == "Bearer tok-0123456789"
    assert "tok-0123456789" not in served.stderr


@needs_generic_api
def test_sigterm_under_load_loses_nothing(tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver) -> None:
    """SIGTERM with requests in flight: they all finish with 200, the server exits 0, and every call's record is delivered."""
    n = 12
    release = threading.Event()
    from fakes import Reply

    fake_provider.enqueue(*[Reply(delay_event=release) for _ in range(n)])
    config = write_config(tmp_path, fake_provider, generic_logger_extra(log_receiver, tmp_path, 3600))
    served = Served(config, tmp_path, {**ENV, "SERVE_RECEIVER_URL": log_receiver.url, "SERVE_WEBHOOK_TOKEN": "tok-0123456789"})
    results: list[Any] = []
    try:
        served.wait_ready()

        def one() -> None:
            with httpx.Client(timeout=30) as c:
                r = c.post(f"{served.url}/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                           json={"model": "fast", "messages": [{"role": "user", "content": "Hi"}]})
                results.append(r.status_code)

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        assert fake_provider.wait_for_requests(n, timeout=20), "the requests did not all reach the provider"
        served.proc.send_signal(signal.SIGTERM)
        served.wait_not_listening()
        release.set()
        for t in threads:
            t.join(30)
        code = served.proc.wait(timeout=30)
    finally:
        release.set()
        served.stop()
    assert results == [200] * n
    assert code == 0, served.stderr
    assert log_receiver.wait_for_records(n, timeout=10)
    assert len(log_receiver.records) == n
