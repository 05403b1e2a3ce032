"""One configuration object (issue 12 point 2): the module names are the face of
``lmgate.settings.DEFAULT``; a call can read another ``Settings``; tests reset with one call."""

from __future__ import annotations

import asyncio

import pytest
from fakes import Reply
from helpers import MESSAGES, flush

import lmgate
from lmgate.settings import DEFAULT, NAMES, Settings
from lmgate.testing import CapturingLogger


def test_module_names_read_and_write_the_default_instance():
    lmgate.num_retries = 3
    assert DEFAULT.num_retries == 3
    logger = CapturingLogger()
    lmgate.callbacks.append(logger)  # mutating the list the calls read
    assert DEFAULT.callbacks == [logger]
    DEFAULT.drop_params = True
    assert lmgate.drop_params is True
    from lmgate import drop_params

    assert drop_params is True


def test_appended_callback_hears_calls():
    logger = CapturingLogger()
    lmgate.callbacks.append(logger)
    lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hi")
    flush()
    assert logger.hooks()[-1] == "log_success_event"


def test_reset_settings_restores_every_default():
    lmgate.callbacks = [CapturingLogger()]
    lmgate.success_callback.append(print)
    lmgate.num_retries, lmgate.drop_params, lmgate.callback_settings["x"] = 4, True, {}
    old_list = lmgate.callbacks
    lmgate.reset_settings()
    assert {name: getattr(lmgate, name) for name in NAMES} == {
        name: Settings().__dict__[name] for name in NAMES
    }
    assert lmgate.callbacks is not old_list  # a fresh list, not the old one emptied


def test_unknown_setting_is_an_error():
    with pytest.raises(AttributeError, match="num_retires"):
        DEFAULT.num_retires = 2  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        DEFAULT.derive(nonsense=1)


def test_derived_settings_read_their_parent_unless_overridden():
    child = DEFAULT.derive(num_retries=5)
    lmgate.num_retries, lmgate.drop_params = 1, True
    assert (child.num_retries, child.drop_params) == (5, True)
    del child.num_retries
    assert child.num_retries == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_two_settings_with_their_own_callbacks_never_see_each_others_calls(mode):
    """A derived Settings' callbacks extend the module's: the global logger hears every call, each
    derived one hears only its own calls, never the other's."""
    a_logger, b_logger, module_logger = CapturingLogger(), CapturingLogger(), CapturingLogger()
    lmgate.callbacks = [module_logger]
    a, b = DEFAULT.derive(callbacks=[a_logger]), DEFAULT.derive(callbacks=[b_logger])

    def call(settings, text):
        kwargs = {"model": "gpt-4o-mini", "messages": MESSAGES, "mock_response": text, "_settings": settings}
        if mode == "async":
            return asyncio.run(lmgate.acompletion(**kwargs))
        return lmgate.completion(**kwargs)

    call(a, "for a")
    call(b, "for b")
    call(None, "for module")
    flush()

    def answers(logger):
        return [
            e.response_obj.choices[0].message.content for e in logger.events if e.response_obj is not None
        ]

    assert answers(a_logger) == ["for a"]
    assert answers(b_logger) == ["for b"]
    assert answers(module_logger) == ["for a", "for b", "for module"]


def test_call_arguments_beat_the_calls_settings(fake_provider):
    """Precedence: call arguments > the call's Settings > module defaults (here: retries)."""
    fake_provider.enqueue(Reply(status=500), Reply(status=500), Reply(status=500))
    lmgate.num_retries = 0
    settings = DEFAULT.derive(num_retries=2)
    with pytest.raises(lmgate.InternalServerError):
        lmgate.completion(
            model="openai/gpt-4o-mini",
            messages=MESSAGES,
            api_base=fake_provider.base_url + "/v1",
            api_key="k",
            _settings=settings,
            num_retries=1,
            retry_policy=lmgate.RetryPolicy(base_delay_s=0, max_delay_s=0),
        )
    assert len(fake_provider.requests) == 2


def test_repr_names_settings_but_never_shows_their_values():
    lmgate.generic_logger_headers = {"Authorization": "Bearer sk-secret-value"}
    child = DEFAULT.derive(generic_logger_headers={"Authorization": "Bearer sk-other-secret"})
    assert "secret" not in repr(DEFAULT) + repr(child)
    assert "generic_logger_headers" in repr(child)


def test_a_derived_settings_never_changes_its_parents_lists_or_dicts():
    """Appending to a child's callbacks changes only the child; an inherited dict is read-only."""
    child = DEFAULT.derive(num_retries=2)
    child.callbacks.append("x")
    assert lmgate.callbacks == [] and child.callbacks == ["x"]
    lmgate.callback_settings["mine"] = {"callback_type": "generic_api"}
    with pytest.raises(TypeError):
        child.callback_settings["theirs"] = {}  # type: ignore[index]
    assert dict(child.callback_settings) == {"mine": {"callback_type": "generic_api"}}  # live view
    assert "theirs" not in lmgate.callback_settings


def test_callback_lists_extend_while_other_settings_override():
    """Effective lists are the parent's entries then the child's; a scalar is the child's if set."""
    module_logger, router_logger = CapturingLogger(), CapturingLogger()
    lmgate.success_callback = [print]
    lmgate.callbacks = [module_logger]
    lmgate.num_retries = 1
    child = DEFAULT.derive(callbacks=[router_logger], num_retries=3)
    grandchild = child.derive(success_callback=[repr])
    assert grandchild.callback_lists == ([module_logger, router_logger], [], [print, repr], [])
    assert (child.num_retries, grandchild.num_retries) == (3, 3)


def test_every_named_resolver_takes_the_calls_settings() -> None:
    """Each built-in name resolver is called as ``resolver(name, settings)``: with a name it does
    not own it answers None (a resolver written for another signature would raise here)."""
    import importlib

    from lmgate._callbacks.registry import NAMED_RESOLVERS
    from lmgate.settings import DEFAULT

    child = DEFAULT.derive(callback_settings={})
    for spec in NAMED_RESOLVERS:
        module_name, _, func_name = spec.partition(":")
        resolver = getattr(importlib.import_module(module_name), func_name)
        assert resolver("no-such-callback-name", child) is None, spec
