"""Which callbacks need every ``kwargs`` value in the dict's own storage, found once, at registration.

``CallbackKwargs`` makes its costlier values (``messages``, ``standard_logging_object``, …) on
first read, and every way Python reads a dict goes through its methods and sees every key.
orjson does not: it reads a ``dict`` subclass's storage directly, in C, calling no method of it,
so a key not made yet is missing from what it writes (ormsgpack, msgpack and ujson do the same).
Nothing can make that storage fill itself lazily: orjson offers no hook, an ``orjson.Fragment``
needs its bytes up front (the payload's encoding, the costly part), and orjson's dataclass path
crashed (orjson 3.13) on a class posing as a dataclass with values made on access.

So the full layout (every value in the storage, the larger ones as pre-encoded JSON) is given to
the callbacks that use such a serialiser, and only to them: this module looks at a hook's code,
once, for a name of one of those modules or a function imported from one (``orjson.dumps``,
``from orjson import dumps``, ``import orjson as oj``, an ``import orjson`` inside the hook),
following the Python functions it calls by name (module functions, the logger's own methods) a
few levels deep. What it cannot see (a serialiser reached through ``getattr``, a C extension, a
hook swapped in after registration) needs ``CustomLogger(full_kwargs=True)``.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Iterator
from typing import Any

STORAGE_READERS = frozenset({"orjson", "ormsgpack", "msgpack", "ujson"})
DEPTH = 3  # a hook, the helpers it calls, theirs, and theirs

_MISSING = object()


_answers: dict[tuple[types.CodeType, type | None], bool] = {}  # per-call callbacks are looked at once too


def uses_storage_reader(hook: Any) -> bool:
    """Whether ``hook`` (a function, bound method, ``functools.partial`` or callable object)
    or a Python function it calls by name uses a serialiser that reads a dict's storage."""
    try:
        fn, owner = _function(hook, None)
        if fn is None:
            return False
        key = (fn.__code__, owner)
        known = _answers.get(key)
        if known is None:
            if len(_answers) > 1024:
                _answers.clear()
            known = _answers[key] = _uses(fn, owner, DEPTH, set())
        return known
    except Exception:  # never let the look fail a registration: the lazy layout is still correct for Python
        return False


def _function(hook: Any, owner: type | None) -> tuple[types.FunctionType | None, type | None]:
    while isinstance(hook, functools.partial):
        hook = hook.func
    if isinstance(hook, (staticmethod, classmethod)):
        hook = hook.__func__
    if isinstance(hook, types.MethodType):
        owner, hook = (
            (hook.__self__ if isinstance(hook.__self__, type) else type(hook.__self__)),
            hook.__func__,
        )
    hook = inspect.unwrap(hook) if isinstance(hook, types.FunctionType) else hook
    if isinstance(hook, types.FunctionType):
        return hook, owner
    call = inspect.getattr_static(type(hook), "__call__", None)  # a callable object
    if isinstance(call, types.FunctionType):
        return call, type(hook)
    return None, owner


def _names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:  # nested functions, lambdas, comprehensions
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _is_reader(value: Any) -> bool:
    if isinstance(value, types.ModuleType):
        return value.__name__.partition(".")[0] in STORAGE_READERS
    module = getattr(value, "__module__", None) if callable(value) else None
    return isinstance(module, str) and module.partition(".")[0] in STORAGE_READERS


def _uses(hook: Any, owner: type | None, depth: int, seen: set[types.CodeType]) -> bool:
    fn, owner = _function(hook, owner)
    if fn is None or fn.__code__ in seen:
        return False
    seen.add(fn.__code__)
    called: list[Any] = []
    for name in set(_names(fn.__code__)):
        if name in STORAGE_READERS:  # import orjson (anywhere in the hook), orjson.dumps
            return True
        value = fn.__globals__.get(name, _MISSING)
        if value is _MISSING and owner is not None:  # self.helper(...)
            value = inspect.getattr_static(owner, name, _MISSING)
        if value is _MISSING:
            continue
        if _is_reader(value):
            return True
        if isinstance(value, (types.FunctionType, staticmethod, classmethod, functools.partial)):
            called.append(value)
    return depth > 0 and any(_uses(value, owner, depth - 1, seen) for value in called)
