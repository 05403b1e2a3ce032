"""Validate standard logging payloads against the shipped JSON Schema."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema
import orjson


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    raw = resources.files("lmgate").joinpath("schemas/standard_logging_payload.schema.json").read_bytes()
    schema = orjson.loads(raw)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def assert_valid_payload(payload: Any) -> None:
    """Raise with every schema violation listed."""
    errors = sorted(_validator().iter_errors(payload), key=lambda e: list(e.path))
    if errors:
        details = "\n".join(f"  {'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors)
        raise AssertionError(f"payload violates the schema:\n{details}")
