"""Config values read one way everywhere: environment references, numbers, durations, booleans, choices, and their errors."""

from __future__ import annotations

import pickle
from enum import Enum
from typing import Any

import pytest

import lmgate
from lmgate import exceptions
from lmgate._conf import ConfigError, boolean, choice, duration_s, number, resolve_env

ENV = {"HOST": "db.local", "PORT": "6379", "TOKEN": "t0k", "EMPTY": ""}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("os.environ/HOST", "db.local"),
        ("os.environ/HOST/v1/logs", "db.local/v1/logs"),
        ("Bearer os.environ/TOKEN", "Bearer t0k"),
        ("${HOST}:${PORT}", "db.local:6379"),
        ("$HOST:$PORT", "db.local:6379"),
        ("{{environment_variables.TOKEN}}", "t0k"),
        ("{{ environment_variables.TOKEN }}", "t0k"),
        ("price $$5 and $$HOST", "price $5 and $HOST"),
        ("$$$HOST", "$db.local"),
        ("os.environ/EMPTY", ""),
        ("a $ alone, $5, {{x}}", "a $ alone, $5, {{x}}"),
        ("plain", "plain"),
        (3, 3),
        (None, None),
        (True, True),
        ({"a": ["${HOST}", {"b": "$PORT"}], "c": 1.5}, {"a": ["db.local", {"b": "6379"}], "c": 1.5}),
    ],
)
def test_resolve_env_grammar(value: Any, expected: Any) -> None:
    """Every reference form resolves, inside strings and nested lists and dicts; $$ is a literal dollar."""
    assert resolve_env(value, where="x", environ=ENV) == expected


@pytest.mark.parametrize(
    ("value", "where", "file", "message"),
    [
        (
            "os.environ/NOPE",
            "general_settings.master_key",
            "config.yaml",
            "config.yaml: general_settings.master_key: environment variable NOPE is not set (referenced as 'os.environ/NOPE')"
            " (fix: set NOPE, or write $$ for a literal $)",
        ),
        (
            {"a": [{"b": "x-${NOPE}"}]},
            "cache_params",
            None,
            "cache_params.a[0].b: environment variable NOPE is not set (referenced as '${NOPE}') (fix: set NOPE, or write $$ for a literal $)",
        ),
        (
            {"k": "$NOPE"},
            "",
            "f.yaml",
            "f.yaml: k: environment variable NOPE is not set (referenced as '$NOPE') (fix: set NOPE, or write $$ for a literal $)",
        ),
        (
            "{{environment_variables.NOPE}}",
            "endpoint",
            None,
            "endpoint: environment variable NOPE is not set (referenced as '{{environment_variables.NOPE}}')"
            " (fix: set NOPE, or write $$ for a literal $)",
        ),
    ],
)
def test_missing_variable_names_key_and_variable(
    value: Any, where: str, file: str | None, message: str
) -> None:
    """An unset variable is a ConfigError naming the file, the key path and the variable, never an empty string."""
    with pytest.raises(ConfigError) as info:
        resolve_env(value, where=where, file=file, environ=ENV)
    assert str(info.value) == message
    assert info.value.file == file
    assert "NOPE" in info.value.detail


def test_resolve_env_reports_each_resolved_value() -> None:
    """on_resolved sees every variable's value (the loggers mark them as secrets)."""
    seen: list[str] = []
    resolve_env(["$TOKEN", "os.environ/HOST", "$$TOKEN"], where="h", environ=ENV, on_resolved=seen.append)
    assert seen == ["t0k", "db.local"]


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        (3, {}, 3.0),
        (2.5, {"minimum": 0}, 2.5),
        ("7", {"integer": True}, 7),
        (" 0.25 ", {}, 0.25),
        (4.0, {"integer": True}, 4),
        (0, {"minimum": 0}, 0.0),
        (10, {"maximum": 10}, 10.0),
        (0.001, {"above": 0}, 0.001),
    ],
)
def test_number_good(value: Any, kwargs: dict[str, Any], expected: Any) -> None:
    """Numbers and numeric strings (what an env reference yields) pass, as int with integer=True."""
    result = number(value, name="n", **kwargs)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (
            "abc",
            {"above": 0},
            "config.yaml: general_settings.max_request_size_mb: must be a number, got 'abc' (fix: give a number > 0)",
        ),
        (
            True,
            {},
            "config.yaml: general_settings.max_request_size_mb: must be a number, got True (fix: give a number)",
        ),
        (
            None,
            {},
            "config.yaml: general_settings.max_request_size_mb: must be a number, got None (fix: give a number)",
        ),
        (
            "nan",
            {},
            "config.yaml: general_settings.max_request_size_mb: must be a number, got 'nan' (fix: give a number)",
        ),
        (
            float("inf"),
            {},
            "config.yaml: general_settings.max_request_size_mb: must be a number, got inf (fix: give a number)",
        ),
        (
            "x",
            {"integer": True, "minimum": 0},
            "config.yaml: general_settings.max_request_size_mb: must be a whole number, got 'x' (fix: give a whole number >= 0)",
        ),
        (
            1.5,
            {"integer": True},
            "config.yaml: general_settings.max_request_size_mb: must be a whole number, got 1.5",
        ),
        (-1, {"minimum": 0}, "config.yaml: general_settings.max_request_size_mb: must be at least 0, got -1"),
        (0, {"above": 0}, "config.yaml: general_settings.max_request_size_mb: must be greater than 0, got 0"),
        (
            11,
            {"maximum": 10},
            "config.yaml: general_settings.max_request_size_mb: must be at most 10, got 11",
        ),
    ],
)
def test_number_bad(value: Any, kwargs: dict[str, Any], message: str) -> None:
    """A bad number names where it came from, the parameter, the value and what to give instead."""
    with pytest.raises(ConfigError) as info:
        number(value, name="general_settings.max_request_size_mb", where="config.yaml", **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, 2.0),
        (0.5, 0.5),
        ("250ms", 0.25),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5", 1.5),
        (" 3 s ", 3.0),
        ("1e3ms", 1.0),
    ],
)
def test_duration_good(value: Any, expected: float) -> None:
    """Durations are seconds, or a number with ms, s, m or h."""
    assert duration_s(value, name="d") == expected


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (
            "5 minutes",
            {},
            "Cache: ttl: must be a duration, got '5 minutes' (fix: give seconds (2.5) or a number with a unit: 250ms, 5s, 2m, 1h)",
        ),
        (
            False,
            {},
            "Cache: ttl: must be a duration, got False (fix: give seconds (2.5) or a number with a unit: 250ms, 5s, 2m, 1h)",
        ),
        (-1, {}, "Cache: ttl: must be at least 0 seconds, got -1"),
        ("0s", {"above": 0}, "Cache: ttl: must be more than 0 seconds, got '0s'"),
        ("2h", {"maximum": 3600}, "Cache: ttl: must be at most 3600 seconds, got '2h'"),
    ],
)
def test_duration_bad(value: Any, kwargs: dict[str, Any], message: str) -> None:
    """A bad duration names the parameter and lists the units."""
    with pytest.raises(ConfigError) as info:
        duration_s(value, name="ttl", where="Cache", **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("False", False),
        ("yes", True),
        ("no", False),
        ("1", True),
        ("0", False),
        ("on", True),
        ("off", False),
    ],
)
def test_boolean_good(value: Any, expected: bool) -> None:
    """Booleans, and the words an environment variable carries, read as bool."""
    assert boolean(value, name="b") is expected


@pytest.mark.parametrize("value", ["maybe", 1, None, ""])
def test_boolean_bad(value: Any) -> None:
    """Anything else is an error naming the key."""
    with pytest.raises(ConfigError) as info:
        boolean(value, name="litellm_settings.drop_params", where="c.yaml")
    assert (
        str(info.value)
        == f"c.yaml: litellm_settings.drop_params: must be true or false, got {value!r} (fix: write true or false)"
    )


class Mode(str, Enum):
    on = "default_on"
    off = "default_off"


def test_choice() -> None:
    """A choice returns the option it matched (an Enum member for its value); else lists the options."""
    assert choice("least-busy", ("round-robin", "least-busy"), name="s") == "least-busy"
    assert choice("default_off", tuple(Mode), name="mode") is Mode.off
    assert choice(Mode.on, tuple(Mode), name="mode") is Mode.on
    with pytest.raises(ConfigError) as info:
        choice(
            "fastest", ("round-robin", "least-busy"), name="router_settings.routing_strategy", where="c.yaml"
        )
    assert (
        str(info.value)
        == "c.yaml: router_settings.routing_strategy: Invalid routing_strategy 'fastest': must be one of round-robin, least-busy"
    )


def test_config_error_is_in_the_tree() -> None:
    """ConfigError is an LmgateError and a ValueError, keeps its parts, masks secrets and survives pickling."""
    error = ConfigError("must be a number, got 'x'", "config.yaml", "a.b", "give a number")
    assert isinstance(error, exceptions.LmgateError) and isinstance(error, ValueError)
    assert (error.file, error.key, error.fix, error.detail) == (
        "config.yaml",
        "a.b",
        "give a number",
        "must be a number, got 'x'",
    )
    assert str(error) == "config.yaml: a.b: must be a number, got 'x' (fix: give a number)"
    assert str(ConfigError("bare")) == "bare"
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ConfigError and str(copy) == str(error) and copy.key == "a.b"
    leaked = ConfigError("got 'sk-abcdefghijklmnopqrstuvwxyz0123456789'", key="api_key")
    assert "abcdefghijklmnopqrstuvwxyz0123456789" not in str(leaked) + leaked.detail


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: lmgate.Cache(ttl="soon"),
            "Cache: ttl: must be a duration, got 'soon' (fix: give seconds (2.5) or a number with a unit: 250ms, 5s, 2m, 1h)",
        ),
        (
            lambda: lmgate.Cache(mode="sometimes"),
            "Cache: mode: Invalid mode 'sometimes': must be one of default_on, default_off",
        ),
        (
            lambda: lmgate.Cache(type="redis", host="127.0.0.1", port=70000),
            "Cache: port: must be at most 65535, got 70000",
        ),
        (
            lambda: lmgate.RetryPolicy(base_delay_s=-1),
            "RetryPolicy: base_delay_s: must be at least 0 seconds, got -1",
        ),
    ],
)
def test_library_settings_fail_with_the_one_config_error(make: Any, message: str) -> None:
    """Cache and RetryPolicy validate with _conf: a ConfigError (still a ValueError) naming owner and parameter."""
    with pytest.raises(ConfigError) as info:
        make()
    assert str(info.value) == message


def test_library_settings_take_durations_and_env_strings() -> None:
    """Durations and numeric strings (what an env reference yields) are accepted where a number of seconds is."""
    assert lmgate.Cache(ttl="2m", max_items="10").ttl == 120.0
    assert lmgate.RetryPolicy(base_delay_s="250ms").base_delay_s == 0.25


def test_logger_config_errors_are_the_same_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """LoggerConfigError and the proxy's ConfigError are the tree's ConfigError, so every except clause keeps working."""
    from lmgate.loggers import GenericAPILogger, LoggerConfigError
    from lmgate.loggers._env import env_number
    from lmgate.proxy.config import ConfigError as ProxyConfigError

    assert LoggerConfigError is ConfigError and ProxyConfigError is ConfigError
    with pytest.raises(LoggerConfigError) as info:
        GenericAPILogger(endpoint="http://127.0.0.1:9/logs", log_format="xml")
    # the reference's wording first (users match on it); the key is the error's key
    assert str(info.value) == "Invalid log_format 'xml': must be one of json_array, ndjson, single"
    assert info.value.key == "log_format"
    monkeypatch.setenv("DEFAULT_BATCH_SIZE", "0")
    with pytest.raises(LoggerConfigError) as info:
        env_number("DEFAULT_BATCH_SIZE", 100, integer=True)
    assert str(info.value) == "environment variable DEFAULT_BATCH_SIZE: must be greater than 0, got '0'"


def test_config_error_is_not_retried() -> None:
    """A ConfigError is an LmgateError (status 500) but retrying cannot fix a wrong setting."""
    assert not lmgate.RetryPolicy().is_retryable(ConfigError("must be a number", key="timeout"))
    assert lmgate.RetryPolicy().is_retryable(exceptions.InternalServerError("boom"))
