"""A proxy config written for the reference starts on lmgate: ignored keys are named in one warning,
keys that would weaken security are refused, typos and unknown providers fail at start (issue 13 points 8, 9)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from test_proxy_server import Served

from lmgate.exceptions import ConfigError
from lmgate.proxy.config import load_config
from lmgate.proxy.loading import ignored_keys_warning

EXAMPLE = Path(__file__).parent / "proxy_configs" / "reference_example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    return str(info.value)


def test_reference_example_loads_and_names_every_ignored_key() -> None:
    """The reference-style example loads; the keys lmgate does not act on are listed, in config order."""
    config = load_config(EXAMPLE, environ={})
    assert config.ignored_keys == (
        "model_list[1].litellm_params.stream_timeout",
        "model_list[2].litellm_params.tags",
        "litellm_settings.set_verbose",
        "litellm_settings.json_logs",
        "litellm_settings.context_window_fallbacks",
        "general_settings.database_url",
        "general_settings.alerting",
        "general_settings.background_health_checks",
    )
    # the Router acts on the router settings (redis, allowed_fails, cooldown_time): none is ignored
    # ignored parameters never reach a provider; the ones lmgate uses do
    params = config.model_list[1].call_params
    assert "stream_timeout" not in params and params["temperature"] == 0.2 and params["max_tokens"] == 256
    assert "tags" not in config.model_list[2].call_params
    assert config.model_list[2].call_params["extra_headers"] == {
        "anthropic-beta": "prompt-caching-2024-07-31"
    }
    warning = ignored_keys_warning(config)
    assert warning is not None and "\n" not in warning
    assert "ignoring 8 key(s)" in warning and "general_settings.database_url" in warning


def test_reference_example_starts_a_real_proxy_with_one_warning_line(tmp_path: Path) -> None:
    """`lmgate serve` on the example answers requests, and logs exactly one line naming the ignored keys."""
    config = tmp_path / "config.yaml"
    shutil.copy(EXAMPLE, config)
    served = Served(config, tmp_path)
    try:
        served.wait_ready()
        response = httpx.post(
            f"{served.url}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": "Bearer sk-1234"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"].startswith("hello from")
    finally:
        served.stop()
    lines = [line for line in served.stderr.splitlines() if "ignoring 8 key(s)" in line]
    assert len(lines) == 1, served.stderr
    assert "general_settings.alerting" in lines[0] and "WARNING" in lines[0]
    assert "pass@" not in served.stderr  # the database URL's password is never printed (only its key)


@pytest.mark.parametrize(
    ("text", "key", "detail"),
    [
        (
            "general_settings: {master_kye: sk-1}\n",
            "general_settings.master_kye",
            "did you mean 'master_key'?",
        ),
        (
            "litellm_settings: {turn_off_message_loging: true}\n",
            "litellm_settings.turn_off_message_loging",
            "did you mean 'turn_off_message_logging'?",
        ),
        (
            "router_settings: {routing_stratgy: least-busy}\n",
            "router_settings.routing_stratgy",
            "did you mean 'routing_strategy'?",
        ),
        ("model_lists: []\n", "model_lists", "did you mean 'model_list'?"),
        (
            "model_list:\n  - model_name: a\n    litellm_params: {model: gpt-4o, temprature: 0.1}\n",
            "model_list[0].litellm_params.temprature",
            "did you mean 'temperature'?",
        ),
        (
            "model_list:\n  - model_name: a\n    litellm_params: {model: gpt-4o, api_bse: http://127.0.0.1:1}\n",
            "model_list[0].litellm_params.api_bse",
            "did you mean 'api_base'?",
        ),
        (
            "model_list:\n  - model_name: a\n    litellm_parms: {model: gpt-4o}\n    litellm_params: {model: gpt-4o}\n",
            "model_list[0].litellm_parms",
            "did you mean 'litellm_params'?",
        ),
    ],
)
def test_a_typo_fails_naming_the_nearest_known_key(tmp_path: Path, text: str, key: str, detail: str) -> None:
    """A key that is neither lmgate's nor the reference's is an error naming the nearest known key."""
    message = load_error(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'config.yaml'}: {key}: unknown ")
    assert detail in message


@pytest.mark.parametrize(
    ("text", "key", "detail"),
    [
        (
            "general_settings: {custom_auth: custom_auth.user_api_key_auth}\n",
            "general_settings.custom_auth",
            "no custom auth hook",
        ),
        (
            "general_settings: {allowed_routes: [/chat/completions]}\n",
            "general_settings.allowed_routes",
            "does not restrict routes",
        ),
        ("general_settings: {enable_jwt_auth: true}\n", "general_settings.enable_jwt_auth", "JWT"),
        (
            "general_settings: {key_management_system: google_kms}\n",
            "general_settings.key_management_system",
            "os.environ/NAME",
        ),
        (
            "litellm_settings: {redact_user_api_key_info: true}\n",
            "litellm_settings.redact_user_api_key_info",
            "cannot redact",
        ),
        ("guardrails:\n  - guardrail_name: pii\n", "guardrails", "PII"),
    ],
)
def test_a_security_setting_lmgate_lacks_refuses_to_start(
    tmp_path: Path, text: str, key: str, detail: str
) -> None:
    """A setting about auth or redaction that lmgate cannot honour refuses the start, saying why."""
    message = load_error(tmp_path, text)
    assert message.startswith(
        f"{tmp_path / 'config.yaml'}: {key}: not supported by lmgate, refusing to start: "
    )
    assert detail in message


def test_reference_only_routing_strategy_falls_back_with_the_warning(tmp_path: Path) -> None:
    """A routing strategy only the reference has is replaced by the default and named in the warning."""
    config = load_config(
        write(tmp_path, "router_settings: {routing_strategy: cost-based-routing}\n"), environ={}
    )
    assert config.routing_strategy == "round-robin"
    assert config.ignored_keys == ("router_settings.routing_strategy=cost-based-routing",)
    # the strategies lmgate.Router has are kept as written
    kept = load_config(
        write(tmp_path, "router_settings: {routing_strategy: latency-based-routing}\n"), environ={}
    )
    assert kept.routing_strategy == "latency-based-routing" and kept.ignored_keys == ()


@pytest.mark.parametrize(
    ("params", "key", "detail"),
    [
        ("{model: antropic/claude-3-5-sonnet}", "model", "did you mean 'anthropic'?"),
        ("{model: my-local-model}", "model", "no provider for 'my-local-model'"),
        (
            "{model: claude-3, custom_llm_provider: anthropc}",
            "custom_llm_provider",
            "did you mean 'anthropic'?",
        ),
    ],
)
def test_an_unknown_provider_fails_at_start(tmp_path: Path, params: str, key: str, detail: str) -> None:
    """A model no provider takes is a config error at start, naming the deployment, not a 400 later."""
    message = load_error(tmp_path, f"model_list:\n  - model_name: a\n    litellm_params: {params}\n")
    assert message.startswith(f"{tmp_path / 'config.yaml'}: model_list[0].litellm_params.{key}: ")
    assert detail in message


def test_models_every_provider_takes_still_load(tmp_path: Path) -> None:
    """Bare OpenAI and Anthropic names, any name with api_base, and mocks of any name load."""
    config = load_config(
        write(
            tmp_path,
            """
        model_list:
          - {model_name: a, litellm_params: {model: gpt-4o-mini}}
          - {model_name: b, litellm_params: {model: claude-3-haiku}}
          - {model_name: c, litellm_params: {model: org/any-model, api_base: "http://127.0.0.1:9/v1"}}
          - {model_name: d, litellm_params: {model: nowhere/model, mock_response: hi}}
          - {model_name: e, litellm_params: {model: groq/llama3, weight: 2, order: 1, max_parallel_requests: 4}}
    """,
        ),
        environ={},
    )
    assert [d.model_name for d in config.model_list] == ["a", "b", "c", "d", "e"]
    assert config.ignored_keys == ()


def test_an_unknown_parameter_points_to_extra_body(tmp_path: Path) -> None:
    """A parameter nobody knows fails with the way to send it anyway: extra_body."""
    message = load_error(
        tmp_path, "model_list:\n  - model_name: a\n    litellm_params: {model: gpt-4o, zzqx: 1}\n"
    )
    assert "model_list[0].litellm_params.zzqx: unknown key; not a parameter" in message
    assert "extra_body: {zzqx: ...}" in message
    config = load_config(
        write(
            tmp_path,
            "model_list:\n  - model_name: a\n    litellm_params: {model: gpt-4o, extra_body: {zzqx: 1}}\n",
        ),
        environ={},
    )
    assert config.model_list[0].call_params["extra_body"] == {"zzqx": 1}


def test_a_provider_only_param_is_known_and_a_common_config_loads_no_provider(tmp_path: Path) -> None:
    # Bedrock's own request fields are known (and their typos get a guess), while a config whose
    # keys are all common ones never imports a provider module (idle RSS of every proxy worker)
    bedrock = load_config(
        write(
            tmp_path,
            "model_list:\n  - model_name: a\n    litellm_params:\n"
            "      model: bedrock/anthropic.claude-3-haiku-20240307-v1:0\n"
            "      guardrailConfig: {guardrailIdentifier: g, guardrailVersion: '1'}\n",
        ),
        environ={},
    )
    assert bedrock.model_list[0].litellm_params["guardrailConfig"]["guardrailIdentifier"] == "g"
    with pytest.raises(ConfigError, match="did you mean 'guardrailConfig'"):
        load_config(
            write(
                tmp_path,
                "model_list:\n  - model_name: a\n    litellm_params: {model: gpt-4o, guardrailConfg: {}}\n",
            ),
            environ={},
        )
    common = write(
        tmp_path, "model_list:\n  - model_name: a\n    litellm_params: {model: gpt-4o, mock_response: hi, temperature: 0.1}\n"
    )
    probe = textwrap.dedent(
        f"""
        import sys
        from lmgate.proxy.config import load_config
        load_config({str(common)!r}, environ={{}})
        print(sorted(m for m in sys.modules if m.startswith("lmgate.providers.") and m != "lmgate.providers.base"))
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert "bedrock" not in out.stdout and "vertex" not in out.stdout, out.stdout
