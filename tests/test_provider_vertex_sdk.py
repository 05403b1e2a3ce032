"""Our Vertex AI requests against what Google's official ``google-genai`` SDK sends in Vertex mode.

Both authenticate at the fake's token endpoint with the same service account and call the fake
Vertex AI; the paths, queries, bearer scheme and JSON bodies are compared (the SDK names the
role of ``systemInstruction``; the comparison drops that and nothing else).
"""

from __future__ import annotations

import json

import pytest

genai = pytest.importorskip("google.genai")
from fakes import FakeVertex, make_service_account  # noqa: E402
from google.genai import types  # noqa: E402
from google.oauth2 import service_account  # noqa: E402

import lmgate  # noqa: E402

PROJECT = "sdk-project"
LOCATION = "us-central1"


@pytest.fixture(scope="module")
def server():
    with FakeVertex() as fv:
        yield fv


@pytest.fixture(scope="module")
def account(server):
    info, public = make_service_account(server.token_uri, PROJECT)
    server.register(info, public)
    return info


@pytest.fixture
def fv(server):
    server.reset()
    return server


@pytest.fixture
def sdk(fv, account):
    credentials = service_account.Credentials.from_service_account_info(
        account, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    client = genai.Client(
        vertexai=True,
        project=PROJECT,
        location=LOCATION,
        credentials=credentials,
        http_options=types.HttpOptions(base_url=fv.base_url, api_version="v1"),
    )
    yield client
    client.close()


def ours(fv, account, **kw):
    return {
        "api_base": fv.base_url,
        "vertex_credentials": json.dumps(account),
        "vertex_location": LOCATION,
        **kw,
    }


def without_system_role(body):
    body = json.loads(json.dumps(body))
    (body.get("systemInstruction") or {}).pop("role", None)
    return body


def test_generate_content_matches_the_sdk(fv, account, sdk):
    sdk.models.generate_content(
        model="gemini-2.5-flash",
        contents="Hi",
        config=types.GenerateContentConfig(
            system_instruction="Be brief.", temperature=0.2, max_output_tokens=10, stop_sequences=["END"]
        ),
    )
    theirs = fv.requests[-1]
    lmgate.completion(
        model="vertex_ai/gemini-2.5-flash",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        temperature=0.2,
        max_tokens=10,
        stop=["END"],
        **ours(fv, account),
    )
    mine = fv.requests[-1]
    assert (mine.path, mine.query) == (theirs.path, theirs.query)
    assert (
        mine.path
        == f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/gemini-2.5-flash:generateContent"
    )
    assert without_system_role(mine.json) == without_system_role(theirs.json)
    assert (
        mine.headers["authorization"].split(" ")[0]
        == theirs.headers["authorization"].split(" ")[0]
        == "Bearer"
    )


def test_stream_path_matches_the_sdk(fv, account, sdk):
    list(sdk.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi"))
    theirs = fv.requests[-1]
    list(
        lmgate.completion(
            model="vertex_ai/gemini-2.5-flash",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            **ours(fv, account),
        )
    )
    mine = fv.requests[-1]
    assert (mine.path, mine.query, mine.json) == (theirs.path, theirs.query, theirs.json)


def test_embeddings_match_the_sdk(fv, account, sdk):
    sdk.models.embed_content(
        model="text-embedding-005",
        contents=["a b", "c"],
        config=types.EmbedContentConfig(output_dimensionality=3, task_type="RETRIEVAL_QUERY"),
    )
    theirs = fv.requests[-1]
    lmgate.embedding(
        model="vertex_ai/text-embedding-005",
        input=["a b", "c"],
        dimensions=3,
        task_type="RETRIEVAL_QUERY",
        **ours(fv, account),
    )
    mine = fv.requests[-1]
    assert (mine.path, mine.json) == (theirs.path, theirs.json)
