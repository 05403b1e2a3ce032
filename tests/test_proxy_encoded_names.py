"""``EncodedJSON`` decides once per set of header names whether its answer may be written whole
(issue 18); the decision must be the one made from the names themselves every time."""

from __future__ import annotations

import pytest

from lmgate.proxy.responses import EncodedJSON


def _whole(headers: dict[str, str]) -> bool:
    return EncodedJSON(b"{}", headers)._lines is not None


def test_a_special_name_is_never_taken_for_a_cached_set_that_joins_the_same() -> None:
    # both join to "x-acontent-length": the first has no special name, the second does
    assert _whole({"x-acontent-": "1", "length": "2"})
    assert not _whole({"x-a": "1", "content-length": "2"})
    assert _whole({"x-acontent-": "1", "length": "2"})  # still, from the cache


def test_names_not_in_lower_case_or_not_latin1_are_not_written_whole() -> None:
    for _ in range(2):  # decided, then read back
        assert not _whole({"X-Upper": "1"})
        assert _whole({"x-lower": "1"})
        with pytest.raises(UnicodeEncodeError):  # the header list's own encoding refuses it, as before
            EncodedJSON(b"{}", {"x-\u0100": "1"})


def test_the_head_lines_are_the_headers_then_length_and_type() -> None:
    answer = EncodedJSON(b'{"a":1}', {"x-litellm-model-id": "m1", "x-litellm-response-cost": "1e-06"})
    assert answer._lines == (
        b"x-litellm-model-id: m1\r\nx-litellm-response-cost: 1e-06\r\n"
        b"content-length: 7\r\ncontent-type: application/json\r\n",
        b"x-litellm-model-idx-litellm-response-cost",
        b"m11e-06",
    )
