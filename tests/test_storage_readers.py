"""Which hooks hand kwargs to a serialiser that reads a dict's storage (orjson): the forms user code
takes, found once from the hook's code; a hook without one keeps the lazy kwargs."""

from __future__ import annotations

import functools
import json

import orjson
import orjson as oj
from orjson import dumps as fast_dumps

from lmgate._callbacks.storage_readers import uses_storage_reader
from lmgate.integrations.custom_logger import CustomLogger


def ship(kwargs):
    return orjson.dumps(kwargs, default=str)


def prepare_and_ship(kwargs):
    return ship({**kwargs})


def log_json(kwargs):
    return json.dumps(kwargs, default=str)


class Shipper:
    def __call__(self, kwargs, *rest):
        return ship(kwargs)


def traced(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


class Direct(CustomLogger):
    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        orjson.dumps(kwargs)


class Aliased(CustomLogger):
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        oj.dumps(kwargs)


class FromImport(CustomLogger):
    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        fast_dumps(kwargs)


class ImportInside(CustomLogger):
    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        import orjson

        return [orjson.dumps(k) for k in (kwargs,)]


class ViaMethod(CustomLogger):
    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._send(kwargs)

    def _send(self, kwargs):
        self._encode(kwargs)

    @staticmethod
    def _encode(kwargs):
        return orjson.dumps(kwargs)


class TwoCallsDeep(CustomLogger):
    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        prepare_and_ship(kwargs)


class Decorated(CustomLogger):
    @traced
    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        ship(kwargs)


class WithJson(CustomLogger):
    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        log_json(kwargs)


class Counting(CustomLogger):
    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.count = getattr(self, "count", 0) + 1


def test_hooks_that_use_orjson_are_found_in_every_form() -> None:
    assert uses_storage_reader(Direct().log_success_event)
    assert uses_storage_reader(Aliased().async_log_success_event)
    assert uses_storage_reader(FromImport().log_failure_event)
    assert uses_storage_reader(ImportInside().log_success_event)
    assert uses_storage_reader(ViaMethod().log_success_event)
    assert uses_storage_reader(TwoCallsDeep().log_success_event)
    assert uses_storage_reader(Decorated().log_success_event)
    assert uses_storage_reader(lambda kwargs, *rest: orjson.dumps(kwargs))
    assert uses_storage_reader(functools.partial(ship))
    assert uses_storage_reader(Shipper())


def test_hooks_without_one_keep_the_lazy_kwargs() -> None:
    assert not uses_storage_reader(WithJson().log_success_event)  # json reads through the methods
    assert not uses_storage_reader(Counting().log_success_event)
    assert not uses_storage_reader(print)  # no Python code to look at
    assert not uses_storage_reader(None)
