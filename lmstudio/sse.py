"""Server-Sent Events: an incremental decoder (bytes in, events out) and the encoder.

Pure code, no Tornado. The decoder follows the WHATWG "event stream interpretation" rules:
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

- Lines end with CRLF, LF or CR only. ``str.splitlines`` is not used: it also splits on
  U+2028 and friends, which may stand inside a JSON payload.
- The stream is UTF-8 whatever its Content-Type says. Lines are cut on bytes and decoded
  whole, so a multi-byte character cut across two network reads survives.
- Comment lines (``: ping``) are skipped; they only prove the upstream is alive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class Event:
    data: str
    event: str = ""
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed it byte pieces as they arrive; it returns the events each piece completes."""

    def __init__(self) -> None:
        self._partial = bytearray()  # an unfinished line
        self._after_cr = False  # the last piece ended in CR: a LF that follows belongs to it
        self._first_line = True
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, piece: bytes) -> list[Event]:
        if self._after_cr and piece[:1] == b"\n":
            piece = piece[1:]
        self._after_cr = False
        if not piece:
            return []
        if b"\n" not in piece and b"\r" not in piece:
            self._partial += piece
            return []
        if self._partial:  # usually empty: LM Studio writes whole events
            self._partial += piece
            piece = bytes(self._partial)
        lines = _LINE_END.split(piece)
        self._partial = bytearray(lines.pop())  # text after the last line end, maybe empty
        self._after_cr = piece.endswith(b"\r")
        events: list[Event] = []
        for raw in lines:
            event = self._line(raw.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Event | None:
        if self._first_line:
            self._first_line = False
            line = line.removeprefix(_BOM)
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id = value
        elif field == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        if not self._data:
            self._event = ""
            return None
        event = Event("\n".join(self._data), self._event, self._id, self._retry)
        # A relay re-sends each event as it came, so id and retry belong to the event that
        # carried them (the spec's browser keeps the last id; a relay must not repeat it).
        self._data = []
        self._event = ""
        self._id = None
        self._retry = None
        return event


def encode_event(event: Event) -> bytes:
    """One whole event on the wire, LF line ends, ready to write in a single piece."""
    if not (event.event or event.id is not None or event.retry is not None or "\n" in event.data):
        return b"data: " + event.data.encode() + b"\n\n"  # the common case, on the hot path
    lines = []
    if event.event:
        lines.append(f"event: {event.event}")
    if event.id is not None:
        lines.append(f"id: {event.id}")
    if event.retry is not None:
        lines.append(f"retry: {event.retry}")
    lines.extend(f"data: {line}" for line in event.data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def encode_data(data: str) -> bytes:
    return encode_event(Event(data))


KEEP_ALIVE = b": keep-alive\n\n"
