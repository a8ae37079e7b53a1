"""The SSE relay of the /v1 pass-through: LM Studio's answers to the client, as they come.

(Turns, which store what they relay, are jobs of their own: turns/ and handlers/watch.py.)
Its promises:
- no response header goes out until LM Studio has answered; a failure to reach it is an
  ordinary JSON error (502/504);
- an event stream is relayed as whole events (a browser that parses each network read on
  its own never sees half an event), each piece flushed as soon as it arrived;
- a failure after the headers is a final ``data: {"error": ...}`` event, then the end;
- the client leaving aborts the upstream request at once, so LM Studio stops generating;
- silence longer than ``stream.heartbeat`` seconds is filled with ``: keep-alive`` comments.
"""

from __future__ import annotations

import logging
from typing import Awaitable

from tornado.httputil import HTTPHeaders
from tornado.iostream import StreamClosedError

from lmstudio import ClientGone, UpstreamCall, UpstreamError
from lmstudio.sse import KEEP_ALIVE, SSEDecoder, encode_event
from turns.turn import error_event

from .base import BaseHandler
from .errors import ApiError
from .watch import Heartbeat, start_event_stream

log = logging.getLogger("chatproxy.stream")


def is_event_stream(headers: HTTPHeaders) -> bool:
    return headers.get("Content-Type", "").startswith("text/event-stream")


class RelayHandler(BaseHandler):
    _call: UpstreamCall | None = None
    _abort_reason: BaseException | None = None
    _streamed = False
    _started = False
    _relayed_bytes = None

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self.abort_stream(ClientGone())

    def abort_stream(self, reason: BaseException) -> None:
        """End this request's stream, now or as soon as it starts. Only signals: lmstudio.client closes."""
        if self._abort_reason is None:
            self._abort_reason = reason
        if self._call is not None:
            self._call.abort(reason)

    @property
    def client_gone(self) -> bool:
        return isinstance(self._abort_reason, ClientGone)

    def take_stream_slot(self) -> None:
        """Hold one of the ``stream.max_concurrent`` places (503 if none) until the response
        has been finished, so shutdown waits for its last bytes too."""
        self.services.streams.enter(self)

    def on_finish(self) -> None:
        self.services.streams.leave(self)
        if self._streamed:
            self.services.metrics.stream_duration.labels(self.route).observe(self.request.request_time())
        super().on_finish()

    # -- the steps -------------------------------------------------------------------------

    def start_upstream(self, call: UpstreamCall) -> UpstreamCall:
        """Hold on to a call just opened (Upstreams.open_chat or open): the client leaving
        from here on aborts it."""
        self._call = call
        if self._abort_reason is not None:
            call.abort(self._abort_reason)
        return call

    async def upstream_head(self, call: UpstreamCall) -> tuple[int, HTTPHeaders] | None:
        """LM Studio's status and headers, once it has sent them.

        None when the client left meanwhile. A failure to reach LM Studio is an ApiError
        (nothing has been sent to the client yet).
        """
        try:
            status, upstream_headers = await call.head()
        except ClientGone:
            return None
        except UpstreamError as error:
            self.note_failure(error)
            raise ApiError(error.status, error.message) from None
        self.upstream_ms = round(1000 * (call.head_at - call.started_at), 2)
        return status, upstream_headers

    async def relay_event_stream(self, call: UpstreamCall) -> None:
        """Relay an event stream that LM Studio has started with 200, to its end. (No
        [DONE] rule: /v1/responses ends with an event of its own.)"""
        start_event_stream(self)
        self._streamed = True
        heartbeat = Heartbeat(lambda: self._write_and_flush(KEEP_ALIVE), self.config.heartbeat)
        decoder = SSEDecoder()
        try:
            await call.attach(lambda piece: self._relay_piece(call, decoder, piece, heartbeat))
            await call.finished()
        except ClientGone:
            log.info("%s: client went away; upstream request closed", self.request.path)
            return
        except UpstreamError as error:
            self.note_failure(error)
            self._write_counted(error_event(error.message, error.kind))
            await self._flush_quietly()
        finally:
            heartbeat.stop()

    # -- internals -------------------------------------------------------------------------

    def note_failure(self, error: UpstreamError) -> None:
        log.warning("%s: %s", self.request.path, error.message)
        self.services.metrics.upstream_errors.labels(error.kind).inc()

    def _write_counted(self, data: bytes) -> None:
        self.write(data)
        if self._relayed_bytes is None:  # looked up once: labels() is a locked dict lookup
            self._relayed_bytes = self.services.metrics.relayed_bytes.labels(self.route)
        self._relayed_bytes.inc(len(data))

    def _relay_piece(self, call: UpstreamCall, decoder: SSEDecoder, piece: bytes, heartbeat: Heartbeat) -> Awaitable[None] | None:
        """Write the whole events ``piece`` completes; the hot path of every stream.

        The flush is awaited only while the client is not keeping up (its socket still has
        unsent data); then Tornado stops reading the upstream until it drains. Otherwise
        awaiting would cost a loop turn per event for nothing.
        """
        events = decoder.feed(piece)
        if not events:
            return None
        if not self._started:
            self._started = True
            self.services.metrics.first_token.labels(self.route).observe(self.request.request_time())
        self._write_counted(b"".join(encode_event(event) for event in events))
        heartbeat.wrote()
        return self._flush_unless_keeping_up(call)

    def _flush_unless_keeping_up(self, call: UpstreamCall) -> Awaitable[None] | None:
        flushed = self.flush()
        if self.request.connection.stream.writing():
            return self._wait_for_client(flushed, call)
        flushed.add_done_callback(_retrieve)  # a client that left is seen by on_connection_close
        return None

    async def _wait_for_client(self, flushed, call: UpstreamCall) -> None:
        try:
            await flushed
        except StreamClosedError:
            call.abort(ClientGone())
        call.touch()

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except StreamClosedError:
            pass

    def _write_and_flush(self, data: bytes) -> None:
        self.write(data)
        self.flush().add_done_callback(_retrieve)


def _retrieve(future) -> None:
    """Mark a background flush's failure as seen; the client leaving is handled elsewhere."""
    if not future.cancelled():
        future.exception()
