"""The request parameters the proxy checks before any work, as one table of rules.

A malformed or oversized value gets a 400 in the OpenAI error shape naming the parameter
(``{"error": {"message", "type": "invalid_request_error", "param", "code"}}``), never a
500 from deep inside a provider or the mock. The bounds are OpenAI's own where it has them
(``n`` ≤ 128, at most 2048 embedding inputs, 8192 tokens per input); the rest bound what
multiplies work: a client sets how many answers, vectors and seconds it asks for, so each
of those has a ceiling here.

Parameters not in the table pass through unchecked: the provider answers for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import ProxyError
from .nesting import check_nesting

MAX_CHOICES = 128  # OpenAI's bound on `n`
MAX_TOKENS_LIMIT = 2**31 - 1  # an int every provider can hold
MAX_TIMEOUT_S = 3600.0
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's bound on the number of inputs
MAX_EMBEDDING_TOKENS = 8192  # OpenAI's bound on one input, in tokens
# a string input is measured in characters: 8 per token is twice an English token's length,
# so no input OpenAI would take is refused here
MAX_EMBEDDING_INPUT_CHARS = MAX_EMBEDDING_TOKENS * 8
MAX_EMBEDDING_DIMENSIONS = 8192
MAX_TOKEN_ID = 2**31 - 1


@dataclass(frozen=True)
class Rule:
    """What one parameter may be: JSON types (``integer``, ``number``, ``boolean``, ``string``,
    ``object``, ``array``) and, for numbers, an inclusive range (``above`` is exclusive)."""

    types: tuple[str, ...]
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    choices: tuple[str, ...] = ()


def _int(minimum: float | None = None, maximum: float | None = None) -> Rule:
    return Rule(("integer",), minimum, maximum)


def _num(minimum: float | None = None, maximum: float | None = None, above: float | None = None) -> Rule:
    return Rule(("number",), minimum, maximum, above)


_BOOL = Rule(("boolean",))
_STR = Rule(("string",))
_OBJ = Rule(("object",))
_ARR = Rule(("array",))

_COMMON: dict[str, Rule] = {
    "timeout": _num(above=0, maximum=MAX_TIMEOUT_S),
    "request_timeout": _num(above=0, maximum=MAX_TIMEOUT_S),
    "metadata": _OBJ,
    "user": _STR,
}

CHAT_RULES: dict[str, Rule] = {
    **_COMMON,
    "n": _int(1, MAX_CHOICES),
    "max_tokens": _int(1, MAX_TOKENS_LIMIT),
    "max_completion_tokens": _int(1, MAX_TOKENS_LIMIT),
    "temperature": _num(0, 2),
    "top_p": _num(0, 1),
    "presence_penalty": _num(-2, 2),
    "frequency_penalty": _num(-2, 2),
    "seed": _int(-(2**63), 2**63 - 1),
    "logprobs": _BOOL,
    "top_logprobs": _int(0, 20),
    "stream": _BOOL,
    "stream_options": _OBJ,
    "stop": Rule(("string", "array")),
    "tools": _ARR,
    "tool_choice": Rule(("string", "object")),
    "parallel_tool_calls": _BOOL,
    "functions": _ARR,
    "function_call": Rule(("string", "object")),
    "response_format": _OBJ,
    "logit_bias": _OBJ,
}

EMBEDDING_RULES: dict[str, Rule] = {
    **_COMMON,
    "dimensions": _int(1, MAX_EMBEDDING_DIMENSIONS),
    "encoding_format": Rule(("string",), choices=("float", "base64")),
}

_CHAT_ORDER = {param: i for i, param in enumerate(CHAT_RULES)}
_EMBEDDING_ORDER = {param: i for i, param in enumerate(EMBEDDING_RULES)}

_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "string": "a string",
    "object": "an object",
    "array": "an array",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _matches(kind: str, value: Any) -> bool:
    actual = _json_type(value)
    if kind == "number":  # an integer is a number; a float that is whole is not an integer
        return actual in ("number", "integer") and math.isfinite(value)
    return actual == kind


def _invalid(param: str, message: str, code: str = "invalid_value") -> ProxyError:
    return ProxyError(400, message, param=param, code=code)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_value(param: str, value: Any, rule: Rule) -> None:
    """Raise a 400 naming ``param`` unless ``value`` fits ``rule`` (null always fits: not given)."""
    if value is None:
        return
    if not any(_matches(kind, value) for kind in rule.types):
        expected = " or ".join(_TYPE_NAMES[k] for k in rule.types)
        raise _invalid(
            param, f"'{param}' must be {expected}, got {_json_type(value)} {_show(value)}", "invalid_type"
        )
    if rule.choices and value not in rule.choices:
        raise _invalid(param, f"'{param}' must be one of {', '.join(rule.choices)}, got {_show(value)}")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    low, high = rule.minimum, rule.maximum
    if (
        (low is not None and value < low)
        or (high is not None and value > high)
        or (rule.above is not None and value <= rule.above)
    ):
        raise _invalid(param, f"'{param}' must be {_range(rule)}, got {_show(value)}")


def _range(rule: Rule) -> str:
    low = (
        f"above {rule.above:g}"
        if rule.above is not None
        else f"at least {rule.minimum:g}"
        if rule.minimum is not None
        else ""
    )
    high = f"at most {rule.maximum:g}" if rule.maximum is not None else ""
    return " and ".join(part for part in (low, high) if part)


def check_request(data: dict[str, Any], kind: str, nesting_checked: bool = False) -> None:
    """Every check of a chat (``kind="chat"``) or embeddings request body; raises ``ProxyError``.
    ``nesting_checked``: the caller knows the body cannot nest too deep (its raw JSON has fewer
    brackets than the bound), so it is not walked for that."""
    if not nesting_checked:  # first: a body nested too deep is refused as such, before anything walks it
        check_nesting(data)
    if kind == "chat":
        _check_messages(data.get("messages"))
        rules = CHAT_RULES
    else:
        check_embedding_input(data.get("input"))
        rules = EMBEDDING_RULES
    # the body's few keys looked up in the table, checked in the table's order (the first bad
    # parameter of the table is the one named, as when the table was walked)
    present = []  # a loop, not a comprehension (its function object and frame): once a request
    for param in data:
        if param in rules:
            present.append(param)
    if len(present) > 1:
        order = _CHAT_ORDER if kind == "chat" else _EMBEDDING_ORDER
        present.sort(key=order.__getitem__)
    for param in present:
        check_value(param, data[param], rules[param])


def _check_messages(messages: Any) -> None:
    if messages is None:
        raise _invalid("messages", "'messages' is required: a list like [{'role': 'user', 'content': 'Hi'}]")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "'messages' must be a non-empty list of objects with a 'role'")
    i = -1  # counted by hand: no enumerate object for the usual one or two messages (issue 18)
    for message in messages:
        i += 1
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not message["role"]:
            raise _invalid("messages", f"'messages[{i}]' must be an object with a 'role' string")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _invalid(
                "messages",
                f"'messages[{i}].content' must be a string, a list of parts or null, "
                f"got {_json_type(content)}",
                "invalid_type",
            )


def check_embedding_input(value: Any) -> None:
    """``input``: a string, a list of strings, a token array or a list of token arrays, each
    within OpenAI's bounds (at most 2048 inputs; 8192 tokens, or 65,536 characters, each)."""
    if value is None:
        raise _invalid("input", "'input' is required: a string or a list of strings")
    if isinstance(value, str):
        _check_text(value, "input")
        return
    if not isinstance(value, list) or not value:
        raise _invalid(
            "input", "'input' must be a string, a non-empty list of strings or a token array", "invalid_type"
        )
    if len(value) > MAX_EMBEDDING_TOKENS:  # too long either way: said before any item is looked at
        raise _invalid(
            "input",
            f"'input' has {len(value)} items; at most {MAX_EMBEDDING_INPUTS} inputs "
            f"(or one token array of {MAX_EMBEDDING_TOKENS} ids) are allowed per request",
        )
    if all(_json_type(v) == "integer" for v in value):  # one token array
        _check_tokens(value, "input")
        return
    if len(value) > MAX_EMBEDDING_INPUTS:
        raise _invalid(
            "input", f"'input' has {len(value)} items; at most {MAX_EMBEDDING_INPUTS} are allowed per request"
        )
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if isinstance(item, str):
            _check_text(item, where)
        elif (
            isinstance(item, list)
            and item
            and (len(item) > MAX_EMBEDDING_TOKENS or all(_json_type(v) == "integer" for v in item))
        ):
            _check_tokens(item, where)
        else:
            raise _invalid(
                "input",
                f"'{where}' must be a string or a non-empty token array (a list of integers), "
                f"got {_json_type(item)}",
                "invalid_type",
            )


def _check_text(text: str, where: str) -> None:
    if len(text) > MAX_EMBEDDING_INPUT_CHARS:
        raise _invalid(
            "input",
            f"'{where}' is {len(text)} characters; at most {MAX_EMBEDDING_INPUT_CHARS} "
            f"({MAX_EMBEDDING_TOKENS} tokens) are allowed per input",
        )


def _check_tokens(tokens: list[int], where: str) -> None:
    if len(tokens) > MAX_EMBEDDING_TOKENS:
        raise _invalid(
            "input",
            f"'{where}' has {len(tokens)} tokens; at most {MAX_EMBEDDING_TOKENS} are allowed per input",
        )
    if any(t < 0 or t > MAX_TOKEN_ID for t in tokens):
        raise _invalid("input", f"'{where}' holds a token id outside 0..{MAX_TOKEN_ID}")


__all__ = [
    "CHAT_RULES",
    "EMBEDDING_RULES",
    "MAX_CHOICES",
    "MAX_EMBEDDING_INPUTS",
    "MAX_EMBEDDING_INPUT_CHARS",
    "Rule",
    "check_embedding_input",
    "check_request",
    "check_value",
]
