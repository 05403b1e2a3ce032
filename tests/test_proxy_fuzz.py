"""A bounded property-based fuzz of request bodies against a real ``lmgate serve``: never a 5xx, still serving."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_proxy_server import Served

from lmgate.proxy.validation import CHAT_RULES, EMBEDDING_RULES

CONFIG = """
    model_list:
      - model_name: chat
        litellm_params: {model: gpt-4o-mini, mock_response: hello}
      - model_name: embed
        litellm_params: {model: text-embedding-3-small, mock_response: x}
"""

# every parameter the proxy checks, plus ones it must drop or pass through
KEYS = sorted(
    set(CHAT_RULES)
    | set(EMBEDDING_RULES)
    | {
        "mock_response",
        "api_base",
        "api_key",
        "extra_body",
        "num_retries",
        "caching",
        "extra_headers",
        "mock_tool_calls",
        "mock_delay",
        "litellm_call_id",
        "drop_params",
        "fallbacks",
        "tags",
        "custom_llm_provider",
    }
)
PATHS = ["/v1/chat/completions", "/v1/embeddings", "/chat/completions/", "/embeddings"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
message = st.fixed_dictionaries(
    {"role": st.one_of(st.sampled_from(["user", "system", "assistant", "tool"]), values)},
    optional={"content": values, "name": values, "tool_calls": values},
)
bodies = st.fixed_dictionaries(
    {
        "model": st.one_of(st.sampled_from(["chat", "embed"]), values),
        "messages": st.one_of(st.lists(message, min_size=1, max_size=3), values),
        "input": st.one_of(
            st.text(max_size=10),
            st.lists(st.text(max_size=5), max_size=3),
            st.lists(st.integers(-5, 2**40), max_size=4),
            values,
        ),
    },
    optional={key: values for key in KEYS},
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / "config.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    served = Served(path, tmp)
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def client(server: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    body=bodies, path=st.sampled_from(PATHS), drop=st.sets(st.sampled_from(["model", "messages", "input"]))
)
def test_no_generated_body_gets_a_5xx(
    server: Served, client: httpx.Client, body: dict[str, Any], path: str, drop: set[str]
) -> None:
    """Any JSON object posted to the LLM routes gets an answer below 500 (a 4xx in the OpenAI shape when refused)."""
    for key in drop:
        body.pop(key, None)
    r = client.post(
        path,
        content=orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        headers={"content-type": "application/json"},
    )
    assert r.status_code < 500, (body, r.text)
    if r.status_code >= 400:
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}


def test_server_still_serves_after_the_fuzz(server: Served, client: httpx.Client) -> None:
    """After the fuzz the server answers a normal request and logged no traceback."""
    r = client.post(
        "/v1/chat/completions", json={"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
    )
    assert r.status_code == 200
    assert server.proc.poll() is None
    assert "Traceback" not in server.stderr
