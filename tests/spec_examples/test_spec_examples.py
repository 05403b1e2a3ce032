"""Every code sample of the spec documents runs with only its import line changed, and does what its text says.

Each sample runs as its own process (module-level code, exit included) against the fake provider,
found through the usual environment variables, so the samples are byte-for-byte the docs' code.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import Reply

HERE = Path(__file__).parent
SAMPLES = HERE / "samples"


@pytest.fixture
def run_sample(fake_provider, tmp_path):
    def run(name: str, **extra_env: str) -> tuple[str, list[dict]]:
        record_file = tmp_path / "stub_records.jsonl"
        env = dict(os.environ)
        env.update(
            {
                "OPENAI_API_BASE": fake_provider.base_url + "/v1",
                "OPENAI_API_KEY": "sk-sample-test-key-000000000000",
                "ANTHROPIC_BASE_URL": fake_provider.base_url,
                "ANTHROPIC_API_KEY": "sk-ant-sample-test-key-0000000000",
                "AZURE_API_BASE": fake_provider.base_url,
                "AZURE_API_KEY": "azure-sample-test-key-000000000",
                "PYTHONPATH": os.pathsep.join([str(HERE / "stubs"), env.get("PYTHONPATH", "")]),
                "STUB_RECORD_FILE": str(record_file),
                "PYTHONIOENCODING": "utf-8",
                **extra_env,
            }
        )
        proc = subprocess.run(
            [sys.executable, str(SAMPLES / name)], env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        records = [json.loads(line) for line in record_file.read_text().splitlines()] if record_file.exists() else []
        return proc.stdout, records

    return run


def test_callback_class_sample(run_sample, fake_provider):
    """The CustomLogger sample: sync stream hits the sync hooks, async stream the async ones."""
    out, _ = run_sample("callback_class.py")
    lines = out.splitlines()
    sync_part, async_part = lines[: lines.index("On Success") + 1], lines[lines.index("On Success") + 1 :]
    assert sync_part[:2] == ["Pre-API Call", "Post-API Call"]
    assert sync_part.count("On Stream") >= 3 and sync_part[-1] == "On Success"
    assert async_part[:2] == ["Pre-API Call", "Post-API Call"]
    assert async_part.count("On Async Streaming") >= 3 and async_part[-1] == "On Async Success"
    assert "On Failure" not in out and "On Async Failure" not in out
    assert all(r.json["stream"] is True for r in fake_provider.requests)


def test_callback_functions_sample(run_sample):
    """A success function receives kwargs, the response and both times."""
    out, _ = run_sample("callback_functions.py")
    assert "LITELLM: in custom callback function" in out
    assert "completion_response ModelResponse(" in out
    assert "start_time 20" in out and "end_time 20" in out


def test_async_callback_class_sample(run_sample):
    """The async-only CustomLogger hears the async stream chunk by chunk and its success."""
    out, _ = run_sample("async_callback_class.py")
    lines = out.splitlines()
    assert lines.count("On Async Streaming") >= 3 and lines[-1] == "On Async Success"


def test_async_function_sample(run_sample):
    """An async function in success_callback runs for an async stream (and only once)."""
    out, _ = run_sample("async_function.py")
    assert out.splitlines() == ["On Async Success!"]


def test_complete_streaming_response_sample(run_sample, fake_provider):
    """A success function on an Anthropic stream gets the assembled response in kwargs."""
    out, _ = run_sample("complete_streaming_response.py")
    assert "Complete Streaming Response: ModelResponse(" in out
    assert "Hello from fake" in out
    assert fake_provider.requests[0].path == "/v1/messages"


def test_metadata_sample(run_sample):
    """Metadata passed to completion shows up in kwargs['litellm_params']['metadata']."""
    out, _ = run_sample("metadata.py")
    assert out.strip() == "{'hello': 'world'}"


def test_track_cost_sample(run_sample):
    """response_cost is computed for gpt-3.5-turbo from the fake's usage (7 prompt, 5 completion tokens)."""
    out, _ = run_sample("track_cost.py")
    # callbacks print from lmgate's callback thread, concurrently with the sample's own print()
    match = re.search(r"regular response_cost ([0-9.e-]+)", out)
    assert match, out
    assert float(match.group(1)) == pytest.approx(7 * 0.5e-6 + 5 * 1.5e-6)


def test_transformed_input_sample(run_sample, fake_provider):
    """The input callback sees the exact body sent to Anthropic (max_tokens added, messages translated)."""
    out, _ = run_sample("transformed_input.py")
    match = re.search(r"params to model (\{.*?'max_tokens': \d+\})", out)
    assert match, out
    assert "'model': 'claude-2'" in match.group(1) and "'max_tokens': 4096" in match.group(1)
    sent = fake_provider.requests[0].json
    assert sent["max_tokens"] == 4096 and sent["messages"][0]["role"] == "user"


def test_mixpanel_sample(run_sample):
    """The Mixpanel sample's success callback calls mixpanel.track with the response."""
    _, records = run_sample("mixpanel_sample.py")
    assert records == [{"mixpanel.track": "LLM Response", "keys": ["llm_response"]}]


def test_v2_kwargs_fields_sample(run_sample):
    """The v2 page's kwargs fields, cost and input callbacks, and the external-service post all work."""
    out, records = run_sample("v2_kwargs_fields.py")
    assert "fields gpt-3.5-turbo [{'role': 'user', 'content': 'Hello'}]" in out
    assert "{'k': 'v'}" in out
    assert out.count("Request cost: $") == 2
    assert out.count("params to model") == 2
    assert [r["requests.post"] for r in records] == ["https://your-analytics.com/api"] * 2
    assert all(r["json"]["duration"] >= 0 for r in records)


def test_v2_safe_handler_sample(run_sample):
    """The SafeHandler's own except clause catches its error; the call is unaffected."""
    out, _ = run_sample("v2_safe_handler.py")
    assert "call returned" in out and "Hello from fake" in out  # the two prints may interleave
    assert "Callback error: name 'external_service' is not defined" in out


def test_v2_post_call_header_sample(run_sample):
    """The page's async_post_call_success_hook adds a header through _hidden_params."""
    out, _ = run_sample("v2_post_call_header.py")
    assert out.strip() == "header my-value"


def test_sample_can_fail(run_sample, fake_provider):
    """The harness notices a failing provider: the transformed-input sample prints the mapped error."""
    fake_provider.enqueue(Reply(status=401, error_type="authentication_error", error_message="bad key"))
    out, _ = run_sample("transformed_input.py")
    assert "AuthenticationError" in out


def test_cache_hits_sample(run_sample, fake_provider, redis_server_with_password):
    """The Redis cache sample: the second identical call is a hit, seen by the success hook as cache_hit True."""
    redis_server_with_password.flushall()
    out, _ = run_sample(
        "cache_hits.py",
        REDIS_HOST=redis_server_with_password.host,
        REDIS_PORT=str(redis_server_with_password.port),
        REDIS_PASSWORD=redis_server_with_password.password,
    )
    assert "Value of Cache hit: False" in out and "Value of Cache hit: True" in out
    assert out.index("Value of Cache hit: False") < out.index("Value of Cache hit: True")
    assert len([r for r in fake_provider.requests if "chatgpt-v-2" in r.path]) == 1  # the second call never left
