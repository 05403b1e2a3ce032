"""The settings a call reads, on one explicit object.

``DEFAULT`` is the instance behind the package's module-level names: ``lmgate.callbacks = [...]``
writes ``DEFAULT.callbacks`` (the package root forwards those names here), so code written for
the reference implementation keeps working. A call reads the ``Settings`` it is given — an
internal ``_settings=`` keyword of ``completion``/``acompletion``/``embedding``/``aembedding``,
meant for a Router (or, later, a proxy key or team) — and ``DEFAULT`` otherwise. Lower layers
take the settings they are handed (``call.settings``) or read ``DEFAULT``; none reads the
package root.

Precedence: call arguments > the call's ``Settings`` (a Router's, made by ``DEFAULT.derive``)
> module defaults. A derived ``Settings`` holds only what it sets and reads everything else
from its parent when asked, so ``lmgate.num_retries = 2`` still reaches a Router that did not
set its own. Two rules, as the reference behaves:

* **The four callback lists extend** (``callbacks``, ``input_callback``, ``success_callback``,
  ``failure_callback``): what a call hears is its parent's list plus the child's own
  (``callback_lists``), so module-level (global) callbacks hear every call, a Router's own
  callbacks hear only its calls, and two derived ``Settings`` never hear each other's calls.
  ``child.callbacks`` is the child's own list (empty until it adds one), safe to append to.
* **Every other setting overrides**: the child's value if it set one, else the parent's. An
  inherited dict is handed out as a read-only view (``MappingProxyType``) of the parent's, so
  ``child.callback_settings["x"] = ...`` cannot change the parent behind its back; set the
  child's own (``child.callback_settings = {...}``) instead.

This module is a leaf: it imports nothing from lmgate.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

# name -> factory of its default value (a factory: lists and dicts are fresh per reset)
_DEFAULTS: dict[str, Any] = {
    "callbacks": list,  # CustomLogger instances, functions, logger names
    "input_callback": list,  # fn(kwargs) before the request is sent
    "success_callback": list,  # fn(kwargs, response, start_time, end_time)
    "failure_callback": list,
    "cache": lambda: None,  # an lmgate.Cache
    "drop_params": lambda: False,  # drop parameters a provider cannot take
    "strict_callbacks": lambda: False,  # flush_callbacks() raises what a callback raised
    "turn_off_message_logging": lambda: False,
    # kwargs["litellm_params"]["metadata"]["raw_request"]: the request as sent (masked), as the reference's flag
    "log_raw_request_response": lambda: False,
    "num_retries": lambda: 0,
    "request_timeout": lambda: None,
    "retry_policy": lambda: None,
    "callback_settings": dict,
    "generic_logger_headers": lambda: None,
    # the reference's library setting for the "s3" callback (callback_settings["s3"] wins over it)
    "s3_callback_params": lambda: None,
    "client_session": lambda: None,  # an httpx.Client to use instead of lmgate's pooled one
    "aclient_session": lambda: None,  # an httpx.AsyncClient (bound to one event loop) for async calls
}

#: every setting name, in a stable order
NAMES: tuple[str, ...] = tuple(_DEFAULTS)
#: the lists a child extends rather than overrides, in the order ``callback_lists`` gives them
CALLBACK_LISTS: tuple[str, ...] = ("callbacks", "input_callback", "success_callback", "failure_callback")


class Settings:
    """Every setting a call reads; see the module docstring.

    Attributes are plain: ``s.callbacks.append(x)`` mutates the list the calls read (a derived
    one's own list). An unknown name is an error (``s.num_retires = 2`` would otherwise do
    nothing, silently).
    """

    callbacks: list[Any]
    input_callback: list[Any]
    success_callback: list[Any]
    failure_callback: list[Any]
    cache: Any
    drop_params: bool
    strict_callbacks: bool
    turn_off_message_logging: bool
    log_raw_request_response: bool
    num_retries: int
    request_timeout: float | None
    retry_policy: Any
    callback_settings: dict[str, Any]
    generic_logger_headers: dict[str, str] | None
    client_session: Any
    aclient_session: Any

    #: the four callback lists (``CALLBACK_LISTS``) as a call with these settings hears them: for
    #: a root its own lists (kept current on assignment: one attribute read per call), for a
    #: derived one its parent's entries then its own (made when read)
    callback_lists: tuple[Any, Any, Any, Any]

    def __init__(self, *, _parent: Settings | None = None, **values: Any) -> None:
        object.__setattr__(self, "_parent", _parent)
        if _parent is None:  # a root holds every name
            for name, factory in _DEFAULTS.items():
                object.__setattr__(self, name, factory())
            self._refresh_lists()
        for name, value in values.items():
            setattr(self, name, value)

    def _refresh_lists(self) -> None:
        d = self.__dict__
        object.__setattr__(self, "callback_lists", tuple(d[name] for name in CALLBACK_LISTS))

    def __getattr__(self, name: str) -> Any:
        # only names this instance does not hold itself get here: a derived one asks its parent
        parent = self.__dict__.get("_parent")
        if name == "callback_lists" and parent is not None:
            inherited = parent.callback_lists
            held = self.__dict__
            if not (
                held.get("callbacks")
                or held.get("input_callback")
                or held.get("success_callback")
                or held.get("failure_callback")
            ):  # a Router without callbacks of its own (the proxy's): the parent's tuple, as it is
                return inherited
            return tuple(_joined(got, held.get(n)) for got, n in zip(inherited, CALLBACK_LISTS, strict=True))
        if parent is None or name not in _DEFAULTS:
            raise AttributeError(f"Settings has no setting {name!r}")
        if name in CALLBACK_LISTS:  # the child's own list (the parent's is added by callback_lists)
            own: list[Any] = []
            object.__setattr__(self, name, own)
            return own
        value = getattr(parent, name)
        if isinstance(value, (dict, MappingProxyType)):
            return MappingProxyType(value)  # live and read-only: the parent's stays the parent's
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _DEFAULTS:
            raise AttributeError(f"Settings has no setting {name!r}; the settings are: {', '.join(NAMES)}")
        object.__setattr__(self, name, value)
        if name in CALLBACK_LISTS and self.__dict__["_parent"] is None:
            self._refresh_lists()

    def __delattr__(self, name: str) -> None:
        # a derived Settings forgets its override (reads the parent again); a root goes back to the default
        if name not in _DEFAULTS:
            raise AttributeError(f"Settings has no setting {name!r}")
        if self.__dict__.get("_parent") is None:
            object.__setattr__(self, name, _DEFAULTS[name]())
            if name in CALLBACK_LISTS:
                self._refresh_lists()
        else:
            self.__dict__.pop(name, None)

    def named_callbacks_owner(self) -> Settings:
        """The nearest Settings (this one or an ancestor) that sets ``callback_settings``,
        ``generic_logger_headers`` or ``s3_callback_params``: a callback *name* resolves the same
        for every Settings below it, so they share one logger per name (``_callbacks.registry``)."""
        owner = self
        held = owner.__dict__
        while held["_parent"] is not None and not (
            "callback_settings" in held or "generic_logger_headers" in held or "s3_callback_params" in held
        ):
            owner = held["_parent"]
            held = owner.__dict__
        return owner

    def derive(self, **overrides: Any) -> Settings:
        """A child: ``overrides`` are its own, every other setting is read from this one when asked."""
        return Settings(_parent=self, **overrides)

    def overrides(self) -> dict[str, Any]:
        """The settings this instance holds itself (all of them for a root)."""
        return {k: v for k, v in self.__dict__.items() if k in _DEFAULTS}

    def reset(self) -> None:
        """Back to the defaults (a derived one drops its overrides). Lists are replaced, not emptied."""
        for name in NAMES:
            delattr(self, name)

    def __repr__(self) -> str:
        # names only: values can hold secrets (callback_settings, generic_logger_headers, clients)
        if self.__dict__.get("_parent") is None:
            return "<lmgate Settings>"
        return f"<lmgate derived Settings overriding {', '.join(self.overrides()) or 'nothing'}>"


def _as_list(items: Any) -> list[Any]:
    if not items:
        return []
    return list(items) if isinstance(items, (list, tuple)) else [items]  # one callback instead of a list


def _joined(inherited: Any, own: Any) -> Any:
    if not own:
        return inherited
    return _as_list(inherited) + _as_list(own)


#: the instance behind ``lmgate.callbacks``, ``lmgate.cache``, … (never rebound: reset in place)
DEFAULT = Settings()


# what else a reset forgets (the registry's named loggers, built from the old settings);
# registered by those modules, so this one imports nothing from lmgate
_reset_steps: list[Callable[[], Any]] = []


def on_reset(step: Callable[[], Any]) -> None:
    """Run ``step`` on every ``reset_settings()`` (once per step)."""
    if step not in _reset_steps:
        _reset_steps.append(step)


def reset_settings() -> None:
    """Every module-level setting back to its default, and every logger built from a callback
    name forgotten (closed: what it holds is delivered first) — one call, for tests and notebooks."""
    DEFAULT.reset()
    for step in list(_reset_steps):
        step()


__all__ = ["CALLBACK_LISTS", "DEFAULT", "NAMES", "Settings", "reset_settings"]
