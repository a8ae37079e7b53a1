"""The SSE decoder: the same events whatever the cut of the byte stream (httpx-sse's style)."""

from __future__ import annotations

import pytest

from lmstudio.sse import Event, SSEDecoder, encode_event


def decode(pieces: list[bytes]) -> list[Event]:
    decoder = SSEDecoder()
    return [event for piece in pieces for event in decoder.feed(piece)]


STREAM = (
    b": ping\r\n\r\n"
    b"data: {\"content\": \"h\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xe2\x80\xa8\"}\r\n\r\n"
    b"event: delta\nid: 7\ndata: line one\ndata: line two\n\n"
    b"retry: 1500\rdata:no space\r\r"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    Event('{"content": "héllo 日本 😀 \u2028"}'),
    Event("line one\nline two", event="delta", id="7"),
    Event("no space", retry=1500),
    Event("[DONE]"),
]


def test_whole_stream_in_one_piece():
    assert decode([STREAM]) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_every_split_point_gives_the_same_events(cut):
    assert decode([STREAM[:cut], STREAM[cut:]]) == EXPECTED


def test_one_byte_at_a_time():
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_crlf_cut_between_cr_and_lf_is_one_line_end():
    assert decode([b"data: a\r", b"\n\r", b"\n"]) == [Event("a")]


def test_u2028_inside_data_does_not_split_it():
    assert decode(["data: a\u2028b\u2029c\x85d\n\n".encode()]) == [Event("a\u2028b\u2029c\x85d")]


def test_comments_and_unknown_fields_are_skipped():
    assert decode([b": keep-alive\n\nfoo: bar\nnonsense\ndata: x\n\n"]) == [Event("x")]


def test_event_without_data_is_not_dispatched():
    assert decode([b"event: lonely\n\ndata: y\n\n"]) == [Event("y")]


def test_leading_bom_is_dropped():
    assert decode([b"\xef\xbb", b"\xbfdata: z\n\n"]) == [Event("z")]


def test_incomplete_event_waits_for_its_blank_line():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: part") == []
    assert decoder.feed(b"ial\n") == []
    assert decoder.feed(b"\n") == [Event("partial")]


def test_invalid_utf8_is_replaced_not_fatal():
    assert decode([b"data: \xff\n\n"]) == [Event("\ufffd")]


@pytest.mark.parametrize("event", EXPECTED)
def test_encode_then_decode_round_trips(event):
    assert decode([encode_event(event)]) == [event]
