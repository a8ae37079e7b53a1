"""jsonbytes: every value a chat can hold reads back as it was written, integers of any size too."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

import jsonbytes

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**100), 2**100) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(JSON_VALUES, st.booleans())
def test_any_value_reads_back_equal_with_the_same_types(value, indent):
    written = jsonbytes.dumps(value, indent=indent)
    read = jsonbytes.loads(written)
    assert read == value
    assert json.dumps(read) == json.dumps(value)  # an integer stays an integer: 1 is not 1.0


def test_integers_beyond_64_bits_keep_every_digit_from_bytes_and_text():
    text = '{"usage": {"tokens": 123456789012345678901234567890, "low": -9223372036854775809, "fits": 18446744073709551615}}'
    for data in (text, text.encode()):
        usage = jsonbytes.loads(data)["usage"]
        assert usage == {"tokens": 123456789012345678901234567890, "low": -9223372036854775809, "fits": 18446744073709551615}
        assert all(isinstance(number, int) for number in usage.values())


def test_long_digit_runs_inside_strings_read_as_they_are():
    assert jsonbytes.loads(b'{"content": "call 12345678901234567890123 now", "n": 1.5}') == {"content": "call 12345678901234567890123 now", "n": 1.5}
