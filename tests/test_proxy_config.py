"""The proxy's YAML: environment references, validation errors that name file and key, callback loading."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

import lmgate
from lmgate.proxy.config import ConfigError, load_config
from lmgate.proxy.loading import apply_config, describe


def write(tmp_path: Path, *parts: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(textwrap.dedent(p) for p in parts))
    return path


MINIMAL = """
model_list:
  - model_name: m
    litellm_params: {model: gpt-4o-mini, mock_response: hi}
"""


def test_env_references_resolve_everywhere(tmp_path: Path) -> None:
    """os.environ/VAR, ${VAR} and $VAR resolve in nested mappings and lists; $$ is a literal dollar."""
    path = write(tmp_path, """
        model_list:
          - model_name: m
            litellm_params:
              model: gpt-4o-mini
              api_key: os.environ/UPSTREAM_KEY
              api_base: http://${HOST}:$PORT/v1
              extra_headers: {X-Price: "costs $$5 for $PORT"}
        callback_settings:
          hook:
            callback_type: generic_api
            endpoint: http://127.0.0.1:9/logs
            headers: {Authorization: "Bearer ${TOKEN}"}
            event_types: [os.environ/EVENT]
    """)
    env = {"UPSTREAM_KEY": "sk-upstream-abcdefghijkl", "HOST": "127.0.0.1", "PORT": "8080", "TOKEN": "t0ken-123",
           "EVENT": "llm_api_success"}
    config = load_config(path, environ=env)
    params = config.model_list[0].litellm_params
    assert params["api_key"] == "sk-upstream-abcdefghijkl"
    assert params["api_base"] == "http://127.0.0.1:8080/v1"
    assert params["extra_headers"]["X-Price"] == "costs $5 for 8080"
    hook = config.callback_settings["hook"]
    assert hook["headers"]["Authorization"] == "Bearer t0ken-123"
    assert hook["event_types"] == ("llm_api_success",)


@pytest.mark.parametrize("reference", ["os.environ/NOPE_VAR", "Bearer ${NOPE_VAR}", "x-$NOPE_VAR"])
def test_missing_env_variable_names_key_and_variable(tmp_path: Path, reference: str) -> None:
    """A reference to an unset variable fails the load, naming the key path and the variable."""
    path = write(tmp_path, f"""
        model_list:
          - model_name: m
            litellm_params: {{model: gpt-4o-mini, api_key: "{reference}"}}
    """)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert message.startswith(f"{path}: model_list[0].litellm_params.api_key: ")
    assert "NOPE_VAR" in message


@pytest.mark.parametrize(
    ("yaml_text", "key", "detail"),
    [
        ("model_list:\n  - model_name: a\n    litellm_params: {model: gpt-4o}\n  - model_name: b\n    litellm_params: {api_key: x}\n",
         "model_list[1].litellm_params.model", "required"),
        ("model_list:\n  - litellm_params: {model: gpt-4o}\n", "model_list[0].model_name", "required"),
        ("model_list: {a: 1}\n", "model_list", "must be a list"),
        ("model_list:\n  - model_name: a\n    litellm_params: {model: gpt-4o, input_cost_per_token: cheap}\n",
         "model_list[0].litellm_params.input_cost_per_token", "must be a number"),
        ("litellm_settings: {callbacks: [3]}\n", "litellm_settings.callbacks[0]", "must be a callback name"),
        ("litellm_settings: {turn_off_message_logging: maybe}\n", "litellm_settings.turn_off_message_logging", "true or false"),
        ("litellm_settings: {colour: blue}\n", "litellm_settings.colour", "unknown key"),
        ("general_settings: {master_key: 12}\n", "general_settings.master_key", "non-empty string"),
        ("router_settings: {routing_strategy: fastest}\n", "router_settings.routing_strategy", "must be one of"),
        ("modle_list: []\n", "modle_list", "unknown section"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, yaml_text: str, key: str, detail: str) -> None:
    """Each bad value is a ConfigError whose message starts with the file and the key path."""
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value).startswith(f"{path}: {key}: ")
    assert detail in str(info.value)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    """A YAML syntax error names the file and the line."""
    path = write(tmp_path, "model_list:\n  - model_name: a\n   bad: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: not valid YAML: line ")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist fails with the path in the message."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_config_is_frozen_and_groups_share_model_name(tmp_path: Path) -> None:
    """The loaded config cannot be changed, entries with one model_name form a group, ids are stable."""
    path = write(tmp_path, """
        model_list:
          - model_name: g
            litellm_params: {model: gpt-4o-mini, mock_response: a, rpm: 10}
          - model_name: g
            litellm_params: {model: gpt-4o, mock_response: b}
            model_info: {id: second}
    """)
    config = load_config(path)
    assert config.model_names == ("g",)
    assert config.model_list[1].model_id == "second"
    assert load_config(path).model_list[0].model_id == config.model_list[0].model_id
    assert "rpm" not in config.model_list[0].call_params  # routing-only keys never reach the provider
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.master_key = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.model_list[0].litellm_params["model"] = "other"  # type: ignore[index]


HANDLER = """
from lmgate.integrations.custom_logger import CustomLogger

LOADS = globals().get("LOADS", 0) + 1

class Handler(CustomLogger):
    pass

proxy_handler_instance = Handler()
not_callable = 42
def plain_function(kwargs, response, start, end):
    pass
"""


def test_dotted_path_loads_file_beside_config_once(tmp_path: Path) -> None:
    """custom_callbacks.proxy_handler_instance loads the file beside the config once, however often it is named."""
    (tmp_path / "my_handlers.py").write_text(HANDLER)
    path = write(tmp_path, MINIMAL, """
        litellm_settings:
          callbacks: [my_handlers.proxy_handler_instance]
          success_callback: [my_handlers.plain_function, my_handlers.proxy_handler_instance]
    """)
    config = load_config(path)
    apply_config(config)
    first = lmgate.callbacks[-1]
    assert type(first).__name__ == "Handler"
    assert lmgate.success_callback[1] is first
    assert lmgate.success_callback[0].__name__ == "plain_function"
    apply_config(load_config(path))  # a second load of the same config
    module = type(first).__module__
    import sys

    assert sys.modules[module].LOADS == 1
    assert lmgate.callbacks.count(first) == 1


@pytest.mark.parametrize(
    ("target", "detail"),
    [
        ("my_handlers2.Handler", "is a class"),
        ("my_handlers2.not_callable", "neither a CustomLogger instance nor a function"),
        ("my_handlers2.missing_name", "defines no 'missing_name'"),
        ("no_such_module_xyz.instance", "no importable module"),
    ],
)
def test_bad_dotted_paths_are_rejected(tmp_path: Path, target: str, detail: str) -> None:
    """Classes, non-callables, missing attributes and missing modules fail at load, naming the list entry."""
    (tmp_path / "my_handlers2.py").write_text(HANDLER)
    path = write(tmp_path, MINIMAL, f"""
        litellm_settings:
          callbacks: ["{target}"]
    """)
    with pytest.raises(ConfigError) as info:
        apply_config(load_config(path))
    assert str(info.value).startswith(f"{path}: litellm_settings.callbacks[0]: ")
    assert detail in str(info.value)


def test_dotted_path_from_importable_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dotted path with no file beside the config is imported from sys.path."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "installed_handlers_pkg.py").write_text(HANDLER)
    monkeypatch.syspath_prepend(str(lib))
    conf = tmp_path / "conf"
    conf.mkdir()
    path = write(conf, MINIMAL, """
        litellm_settings:
          callbacks: [installed_handlers_pkg.proxy_handler_instance]
    """)
    applied = apply_config(load_config(path))
    assert type(applied.callbacks[0]).__name__ == "Handler"


def test_unknown_callback_name_is_a_config_error(tmp_path: Path) -> None:
    """A plain name that no resolver knows fails at load with the key path."""
    path = write(tmp_path, MINIMAL, "litellm_settings:\n  callbacks: [nobody_knows_me]\n")
    with pytest.raises(ConfigError, match=r"litellm_settings\.callbacks\[0\]: cannot set up callback 'nobody_knows_me'"):
        apply_config(load_config(path))


def test_settings_are_applied_to_lmgate(tmp_path: Path, log_receiver) -> None:
    """litellm_settings and callback_settings land on lmgate's module settings; a generic_api name becomes a logger."""
    pytest.importorskip("lmgate.loggers.generic_api", reason="the generic API logger is not built yet")
    path = write(tmp_path, f"""
        model_list:
          - model_name: m
            litellm_params: {{model: gpt-4o-mini, mock_response: hi}}
        litellm_settings:
          callbacks: [my_hook]
          turn_off_message_logging: true
          drop_params: true
          num_retries: 3
          request_timeout: 12.5
        callback_settings:
          my_hook:
            callback_type: generic_api
            endpoint: {log_receiver.url}
            headers: {{Authorization: Bearer secret-token-1234567}}
    """)
    apply_config(load_config(path))
    assert lmgate.turn_off_message_logging is True and lmgate.drop_params is True
    assert lmgate.num_retries == 3 and lmgate.request_timeout == 12.5
    assert lmgate.callback_settings["my_hook"]["endpoint"] == log_receiver.url
    assert type(lmgate.callbacks[-1]).__name__ == "GenericAPILogger"


def test_cache_settings_create_a_cache(tmp_path: Path, redis_server) -> None:
    """cache: true with cache_params builds lmgate.cache = lmgate.Cache(**cache_params) (redis here)."""
    from lmgate.caching import Cache

    try:
        Cache()
    except NotImplementedError:
        pytest.skip("lmgate.Cache is still a placeholder")
    path = write(tmp_path, MINIMAL, f"""
        litellm_settings:
          cache: true
          cache_params: {{type: redis, host: {redis_server.host}, port: {redis_server.port}, namespace: proxytest, ttl: 60}}
    """)
    applied = apply_config(load_config(path))
    assert isinstance(lmgate.cache, Cache)
    assert lmgate.cache.type == "redis"
    assert applied.cache == "redis"


def test_bad_cache_params_name_the_key(tmp_path: Path) -> None:
    """cache_params the Cache rejects fail the load at litellm_settings.cache_params."""
    path = write(tmp_path, MINIMAL, "litellm_settings:\n  cache: true\n  cache_params: {type: floppy}\n")
    with pytest.raises(ConfigError, match=r"litellm_settings\.cache_params: cannot create the cache"):
        apply_config(load_config(path))


def test_startup_line_masks_secrets(tmp_path: Path) -> None:
    """The startup description names models and callbacks and never shows a key."""
    upstream = "sk-upstream-0123456789abcdef"
    master = "sk-master-0123456789abcdef"
    path = write(tmp_path, f"""
        model_list:
          - model_name: g
            litellm_params: {{model: openai/gpt-4o-mini, api_key: {upstream}, api_base: http://127.0.0.1:9/v1}}
        general_settings: {{master_key: {master}}}
    """)
    config = load_config(path)
    line = describe(config, apply_config(config))
    assert "g -> [openai/gpt-4o-mini @ http://127.0.0.1:9/v1" in line
    assert upstream not in line and master not in line
    assert "cdef" in line  # the masked tail shows which key it is


def test_config_values_share_the_conf_grammar(tmp_path: Path) -> None:
    """The proxy reads references, durations and numbers with lmgate._conf: os.environ/ inside a value,
    the presets' {{environment_variables.X}}, "30s" timeouts and env-given cache numbers all work."""
    path = write(tmp_path, """
        model_list:
          - model_name: m
            litellm_params:
              model: gpt-4o-mini
              api_base: os.environ/BASE/v1
              api_key: "{{environment_variables.KEY}}"
        litellm_settings:
          request_timeout: 1500ms
          cache: true
          cache_params: {ttl: os.environ/TTL, max_items: $ITEMS}
        general_settings: {flush_timeout_s: 2m, graceful_shutdown_timeout_s: "5s", keep_alive_timeout_s: 500ms,
                           max_connections: os.environ/CONNS}
    """)
    config = load_config(path, environ={"BASE": "http://127.0.0.1:9", "KEY": "k-1", "TTL": "5m", "ITEMS": "7", "CONNS": "50"})
    assert config.model_list[0].litellm_params["api_base"] == "http://127.0.0.1:9/v1"
    assert config.model_list[0].litellm_params["api_key"] == "k-1"
    assert config.litellm_settings["request_timeout"] == 1.5
    assert (config.flush_timeout_s, config.graceful_shutdown_timeout_s) == (120.0, 5.0)
    assert (config.limits.keep_alive_timeout_s, config.limits.max_connections) == (0.5, 50)
    apply_config(config)
    assert lmgate.cache is not None and lmgate.cache.ttl == 300.0


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("general_settings: {max_request_size_mb: abc}\n",
         "general_settings.max_request_size_mb: must be a number, got 'abc' (fix: give a number >= 0.0001)"),
        ("general_settings: {flush_timeout_s: soon}\n",
         "general_settings.flush_timeout_s: must be a duration, got 'soon' "
         "(fix: give seconds (2.5) or a number with a unit: 250ms, 5s, 2m, 1h)"),
        ("router_settings: {num_retries: 1.5}\n", "router_settings.num_retries: must be a whole number, got 1.5"),
        ("litellm_settings: {drop_params: maybe}\n",
         "litellm_settings.drop_params: must be true or false, got 'maybe' (fix: write true or false)"),
        ("router_settings: {routing_strategy: fastest}\n",
         "router_settings.routing_strategy: Invalid routing_strategy 'fastest': must be one of round-robin, least-busy, "
         "simple-shuffle, latency-based-routing, usage-based-routing, usage-based-routing-v2"),
        ("router_settings: {fallbacks: [{a: [nope]}]}\n",
         "router_settings.fallbacks: names 'nope', which is not a model_name of model_list "
         "(fix: use one of: (no models configured))"),
        ("router_settings: {context_window_fallbacks: [{a: 3}]}\n",
         "router_settings.context_window_fallbacks[0].a: must be a list of model group names, got 3"),
        ("router_settings: {cooldown_time: soon}\n",
         "router_settings.cooldown_time: must be a duration, got 'soon' "
         "(fix: give seconds (2.5) or a number with a unit: 250ms, 5s, 2m, 1h)"),
    ],
)
def test_bad_value_messages_say_what_to_do(tmp_path: Path, yaml_text: str, message: str) -> None:
    """A bad value's whole message: file, key path, what is wrong, and (where it helps) the fix."""
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == f"{path}: {message}"


def test_logger_config_error_is_located_in_the_file(tmp_path: Path) -> None:
    """A logger that rejects its callback_settings fails the load naming the file and the callbacks entry."""
    path = write(tmp_path, MINIMAL, """
        litellm_settings:
          callbacks: [hook]
        callback_settings:
          hook: {callback_type: generic_api, endpoint: "http://127.0.0.1:9/logs", batch_size: lots}
    """)
    with pytest.raises(ConfigError) as info:
        apply_config(load_config(path, environ={}))
    assert str(info.value).startswith(f"{path}: litellm_settings.callbacks[0]: cannot set up callback 'hook': ")
    assert "batch_size" in str(info.value)
