"""ChunkedDecoder: the chunked framing LM Studio's replies come in, cut at every byte."""

from __future__ import annotations

import pytest
from tornado.httputil import HTTPInputError

from lmstudio.chunked import MAX_LINE, ChunkedDecoder

LIMIT = 1 << 20


def chunked(*payloads: bytes, trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in payloads)
    return body + b"0\r\n" + trailer + b"\r\n"


def decode(pieces: list[bytes], limit: int = LIMIT) -> tuple[bytes, bool]:
    decoder = ChunkedDecoder(limit)
    out = b"".join(decoder.feed(piece) for piece in pieces)
    return out, decoder.done


# Tokens as LM Studio sends them: SSE events, multi-byte UTF-8, a chunk over 15 bytes (two hex digits).
PAYLOADS = (b'data: {"c": "Hel"}\n\n', "data: é🙂\n\n".encode(), b"x" * 300)
BODY = chunked(*PAYLOADS)


def test_whole_body_in_one_read():
    assert decode([BODY]) == (b"".join(PAYLOADS), True)


@pytest.mark.parametrize("cut", range(1, len(BODY)))
def test_every_split_point(cut):
    assert decode([BODY[:cut], BODY[cut:]]) == (b"".join(PAYLOADS), True)


def test_one_byte_at_a_time():
    assert decode([BODY[i : i + 1] for i in range(len(BODY))]) == (b"".join(PAYLOADS), True)


def test_each_read_returns_what_it_completed():
    decoder = ChunkedDecoder(LIMIT)
    first = chunked(b"one")[: -len(b"0\r\n\r\n")]
    assert decoder.feed(first + b"3\r\nt") == b"onet"  # payload is not held back for the chunk end
    assert decoder.feed(b"wo\r\n") == b"wo"
    assert not decoder.done
    assert decoder.feed(b"0\r\n\r\n") == b""
    assert decoder.done


def test_upper_case_hex_extensions_and_trailer():
    body = b"A;name=value\r\n0123456789\r\n0\r\nExpires: never\r\n\r\n"
    assert decode([body]) == (b"0123456789", True)


def test_bytes_after_the_end_are_not_body():
    assert decode([chunked(b"abc") + b"HTTP/1.1 200 OK\r\n"]) == (b"abc", True)


def test_unfinished_body_is_not_done():
    assert decode([BODY[:-2]]) == (b"".join(PAYLOADS), False)


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nab\r\n0\r\n\r\n",  # not hex
        b"-1\r\n",  # a sign
        b"0x3\r\nabc\r\n0\r\n\r\n",  # a prefix
        b"\r\n",  # no size at all
        b"3\r\nabcXY0\r\n\r\n",  # the chunk is not followed by CRLF
        b"11111111111111111\r\n",  # more hex digits than any size
    ],
)
def test_malformed_framing_raises(body):
    with pytest.raises(HTTPInputError):
        decode([body])


def test_size_line_without_end_is_bounded():
    with pytest.raises(HTTPInputError, match="too long"):
        decode([b"1" + b" " * MAX_LINE])


def test_body_over_the_limit_raises():
    with pytest.raises(HTTPInputError, match="limit"):
        decode([chunked(b"a" * 10, b"b" * 10)], limit=15)
