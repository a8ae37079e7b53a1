"""HTTP/1.1 chunked transfer coding, decoded incrementally: bytes in, payload out.

Pure code, no Tornado; lmstudio/client.py reads LM Studio's replies with it (RFC 9112, 7.1).

Why not Tornado's own reader: it awaits three reads per chunk (size line, data, CRLF), and
LM Studio sends one chunk per token, so at a thousand streams those awaits are a good part
of the event loop's time. This decoder takes whatever one network read brought (often
several chunks) and returns their payload at once. It also never holds payload back: Tornado
6.6 coalesces chunks and drops the held bytes when the connection closes in the same read.
"""

from __future__ import annotations

import re

from tornado.httputil import HTTPInputError

_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
MAX_LINE = 4096  # a size line with its extensions, or a trailer line


class ChunkedDecoder:
    """Feed it the bytes of a chunked body as they arrive; it returns the payload they carry.

    ``done`` turns true after the last chunk and its trailer section; bytes after that are
    not part of the body and are ignored. Malformed framing raises ``HTTPInputError``.
    """

    def __init__(self, max_body_size: int) -> None:
        self.done = False
        self._max_body_size = max_body_size
        self._total = 0
        self._in_chunk = 0  # payload bytes of the current chunk still to come
        self._crlf_due = False  # the current chunk's payload is complete; its CRLF is next
        self._in_trailer = False  # after the last (zero-size) chunk
        self._partial = b""  # the start of a line (or CRLF) cut by a network read

    def feed(self, data: bytes) -> bytes:
        if self._partial:
            data, self._partial = self._partial + data, b""
        payload = []
        position, end = 0, len(data)
        while position < end and not self.done:
            if self._in_chunk:
                take = min(self._in_chunk, end - position)
                payload.append(data[position : position + take])
                position += take
                self._in_chunk -= take
                self._crlf_due = not self._in_chunk
                continue
            line_end = data.find(b"\r\n", position)
            if line_end < 0:
                self._partial = data[position:]
                if len(self._partial) > MAX_LINE:
                    raise HTTPInputError("chunked body: a line is too long")
                break
            line = data[position:line_end]
            position = line_end + 2
            if self._crlf_due:
                if line:
                    raise HTTPInputError("chunked body: a chunk is not followed by CRLF")
                self._crlf_due = False
            elif self._in_trailer:
                self.done = not line  # trailer fields are not used; an empty line ends them
            else:
                self._start_chunk(line)
        return payload[0] if len(payload) == 1 else b"".join(payload)

    def _start_chunk(self, line: bytes) -> None:
        size_text = line.split(b";", 1)[0].strip(b" \t")  # chunk extensions are ignored
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise HTTPInputError(f"chunked body: invalid chunk size {line[:40]!r}")
        size = int(size_text, 16)
        if size == 0:
            self._in_trailer = True
            return
        self._total += size
        if self._total > self._max_body_size:
            raise HTTPInputError("chunked body: larger than the limit")
        self._in_chunk = size
