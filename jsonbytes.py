"""JSON as UTF-8 bytes, for every value a chat can hold: the project's one JSON encoder.

orjson is fast (a 2,000-message chat in ~0.1 ms, where ``json.dumps(indent=2)`` runs the
pure-Python encoder for tens of milliseconds), but refuses what a chat can still contain:
a lone surrogate (a model may split an emoji's escape pair across chunks, and JSON input
may carry one) or an integer beyond 64 bits. Those go through the standard library with
``\\uXXXX`` escapes, which read back as they were.
"""

from __future__ import annotations

import json

import orjson

_INDENTED = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE


def loads(data: bytes) -> object:
    """What ``dumps`` wrote, including the ``\\uXXXX`` escapes orjson refuses to read; what
    orjson refuses is decided (and its error raised) by the standard library, which also
    reads NaN and Infinity as older files may hold them."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def dumps(value: object, indent: bool = False) -> bytes:
    try:
        return orjson.dumps(value, option=_INDENTED if indent else 0)
    except TypeError:
        text = json.dumps(value, indent=2 if indent else None, ensure_ascii=True)
        return (text + "\n" if indent else text).encode("ascii")
