"""Vertex AI behind a real ``lmgate serve``, driven by the official openai client.

The deployment's service account comes from the environment (``os.environ/…``); the server
exchanges it at the fake's token endpoint and calls the fake Vertex AI with the bearer token.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from fakes import FakeVertex, GeminiReply, make_service_account
from test_proxy_server import Served

MASTER = "sk-master-vertex-0123456789"
PROJECT = "proxy-project"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeVertex]:
    with FakeVertex() as fv:
        yield fv


@pytest.fixture(scope="module")
def account(fake):
    info, public = make_service_account(fake.token_uri, PROJECT)
    fake.register(info, public)
    return info


@pytest.fixture(scope="module")
def server(fake, account, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve-vertex")
    config = Path(tmp) / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: flash
            litellm_params:
              model: vertex_ai/gemini-2.5-flash
              api_base: {fake.base_url}
              vertex_credentials: os.environ/SERVE_VERTEX_SA
              vertex_location: us-east5
          - model_name: sonnet
            litellm_params:
              model: vertex_ai/claude-3-5-sonnet-v2@20241022
              api_base: {fake.base_url}
              vertex_credentials: os.environ/SERVE_VERTEX_SA
              vertex_location: us-east5
          - model_name: embed
            litellm_params:
              model: vertex_ai/text-embedding-005
              api_base: {fake.base_url}
              vertex_credentials: os.environ/SERVE_VERTEX_SA
        general_settings:
          master_key: os.environ/SERVE_MASTER_KEY
        """)
    )
    served = Served(config, tmp, {"SERVE_VERTEX_SA": json.dumps(account), "SERVE_MASTER_KEY": MASTER})
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


@pytest.fixture
def fv(fake) -> FakeVertex:
    fake.reset()
    return fake


@pytest.fixture
def client(server: Served) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=f"{server.url}/v1", api_key=MASTER, max_retries=0)
    yield c
    c.close()


HI = [{"role": "user", "content": "Hi"}]


def test_gemini_plain_and_stream(client, fv):
    r = client.chat.completions.create(model="flash", messages=HI, temperature=0.1)
    assert r.choices[0].message.content == "Hello from fake"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (7, 5)
    req = fv.requests[-1]
    assert req.path == (
        f"/v1/projects/{PROJECT}/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent"
    )
    assert req.headers["authorization"].removeprefix("Bearer ") in fv.issued()
    chunks = list(
        client.chat.completions.create(
            model="flash", messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from fake"
    assert fv.requests[-1].query == {"alt": "sse"}


def test_claude_plain_and_stream(client, fv):
    r = client.chat.completions.create(model="sonnet", messages=HI, max_tokens=64)
    assert r.choices[0].message.content == "Hello from fake"
    req = fv.requests[-1]
    assert req.path.endswith("/publishers/anthropic/models/claude-3-5-sonnet-v2@20241022:rawPredict")
    assert req.json == {"anthropic_version": "vertex-2023-10-16", "messages": HI, "max_tokens": 64}
    chunks = list(client.chat.completions.create(model="sonnet", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from fake"
    assert fv.requests[-1].path.endswith(":streamRawPredict")


def test_embeddings(client, fv):
    r = client.embeddings.create(model="embed", input=["a", "b"])
    assert [d.index for d in r.data] == [0, 1]
    assert fv.requests[-1].path.endswith("/publishers/google/models/text-embedding-005:predict")


def test_errors_keep_their_status_and_the_token_is_never_shown(client, fv, server):
    client.chat.completions.create(model="flash", messages=HI)
    token = fv.requests[-1].headers["authorization"].removeprefix("Bearer ")
    fv.enqueue_error(429, FakeVertex.error_body(429, "Quota exceeded", "RESOURCE_EXHAUSTED"))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="flash", messages=HI)
    fv.enqueue_error(400, FakeVertex.error_body(400, f"token {token} is odd", "INVALID_ARGUMENT"))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="flash", messages=HI)
    assert token not in str(info.value.body) and token not in info.value.response.text


def test_the_private_key_never_reaches_the_server_log(client, fv, server, account):
    fv.gemini.enqueue(GeminiReply(status=500, error_message="Internal error"))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="flash", messages=HI)
    log = server.stderr
    body = "".join(x for x in account["private_key"].splitlines() if not x.startswith("-----"))
    for line in account["private_key"].splitlines()[1:-1]:
        assert line not in log
    assert body not in log


def test_a_client_cannot_move_the_call_to_another_project_or_credentials(client, fv):
    """vertex_project / vertex_location / vertex_credentials in a request body are dropped: the config decides."""
    client.chat.completions.create(
        model="flash",
        messages=HI,
        extra_body={
            "vertex_project": "evil",
            "vertex_location": "evil-1",
            "vertex_credentials": "/etc/passwd",
        },
    )
    assert fv.requests[-1].path.startswith(f"/v1/projects/{PROJECT}/locations/us-east5/")
