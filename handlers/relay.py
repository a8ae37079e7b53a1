"""The SSE relay: LM Studio's answers to the client, as they come.

RelayHandler is the streaming code of chatproxy; PUT /chat (turn.py) and the /v1/
pass-through (passthrough.py) use it. Its promises:
- no response header goes out until LM Studio has answered; a failure to reach it is an
  ordinary JSON error (502/504);
- an event stream is relayed as whole events (a browser that parses each network read on
  its own never sees half an event), each piece flushed as soon as it arrived;
- a failure after the headers is a final ``data: {"error": ...}`` event, then the end;
- the client leaving aborts the upstream request at once, so LM Studio stops generating;
- silence longer than ``stream.heartbeat`` seconds is filled with ``: keep-alive`` comments.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from tornado.httputil import HTTPHeaders
from tornado.iostream import StreamClosedError

from lmstudio import ClientGone, UpstreamCall, UpstreamError, error_message_from_body
from lmstudio.sse import KEEP_ALIVE, Event, SSEDecoder, encode_data, encode_event

from .base import BaseHandler
from .errors import ApiError

log = logging.getLogger("chatproxy.stream")


def is_event_stream(headers: HTTPHeaders) -> bool:
    return headers.get("Content-Type", "").startswith("text/event-stream")


class RelayHandler(BaseHandler):
    # A turn writes the stream's last word ([DONE] or an error event) itself, once the reply
    # is stored: a client that reads the chat again when the stream ends must find it there.
    holds_last_word = False
    _call: UpstreamCall | None = None
    _abort_reason: BaseException | None = None
    _streamed = False
    _relayed_bytes = None

    def on_connection_close(self) -> None:
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

    def start_upstream(self, method: str, path: str, body: bytes | None, headers: dict) -> UpstreamCall:
        """Send the request to LM Studio now; the client leaving from here on aborts it."""
        call = self.services.upstream.open(method, path, body, headers)
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

    async def relay_event_stream(
        self, call: UpstreamCall, on_event: Callable[[Event], bool] | None = None, require_done: bool = True
    ) -> LastWord | None:
        """Relay an event stream that LM Studio has started with 200.

        ``on_event`` sees each event before it is written; it returns true for an event
        that ends the stream as ``[DONE]`` does, and raises UpstreamError to end it with an
        error (a reply that is not what LM Studio should send). With ``require_done``, a
        stream that ends without ``data: [DONE]`` is a failure. The stream's last word
        (``[DONE]``, LM Studio's error event, or ours) is written here, or, with
        ``holds_last_word``, returned for the caller to write; None if the client left.
        """
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # nginx: do not buffer this response
        self._flush_in_background()
        self._streamed = True
        heartbeat = _Heartbeat(self, self.config.heartbeat)
        state = _RelayState(on_event)
        try:
            await call.attach(lambda piece: self._relay_piece(call, state, piece, heartbeat))
            await call.finished()
            if require_done and not state.done:
                raise UpstreamError(502, "LM Studio ended the stream before it finished ([DONE] never came)", "dropped")
        except ClientGone:
            log.info("%s: client went away; upstream request closed", self.request.path)
            return None
        except UpstreamError as error:
            self.note_failure(error)
            state.last_word = LastWord(error_event(error.message, error.kind), complete=False)
        finally:
            heartbeat.stop()
        if self.holds_last_word or state.last_word is None:
            return state.last_word
        await self.write_last_word(state.last_word.data)
        return None

    async def write_last_word(self, data: bytes) -> None:
        self._write_counted(data)
        await self._flush_quietly()

    async def refusal(self, call: UpstreamCall, status: int, headers: HTTPHeaders) -> ApiError:
        """The error to answer when LM Studio did not start an event stream."""
        detail = error_message_from_body(await call.read_body())
        if status == 200:
            # LM Studio answers unknown routes with 200 and an error body.
            content_type = headers.get("Content-Type") or "no content type"
            error = UpstreamError(502, f"LM Studio did not answer with an event stream ({content_type}): {detail}", "not_a_stream")
        else:
            error = UpstreamError(status if status >= 400 else 502, f"LM Studio answered {status}: {detail}", "http_error")
        self.note_failure(error)
        return ApiError(error.status, error.message)

    # -- internals -------------------------------------------------------------------------

    def note_failure(self, error: UpstreamError) -> None:
        log.warning("%s: %s", self.request.path, error.message)
        self.services.metrics.upstream_errors.labels(error.kind).inc()

    def _write_counted(self, data: bytes) -> None:
        self.write(data)
        if self._relayed_bytes is None:  # looked up once: labels() is a locked dict lookup
            self._relayed_bytes = self.services.metrics.relayed_bytes.labels(self.route)
        self._relayed_bytes.inc(len(data))

    def _relay_piece(self, call: UpstreamCall, state: "_RelayState", piece: bytes, heartbeat: "_Heartbeat") -> Awaitable[None] | None:
        """Write the whole events ``piece`` completes; the hot path of every stream.

        The flush is awaited only while the client is not keeping up (its socket still has
        unsent data); then Tornado stops reading the upstream until it drains. Otherwise
        awaiting would cost a loop turn per event for nothing.
        """
        if state.done:
            return None
        out = []
        try:
            for event in state.decoder.feed(piece):
                # [DONE], or an event on_event calls final (LM Studio's own in-stream error):
                # nothing follows it, and it is the stream's last word.
                complete = event.data == "[DONE]"
                if complete or (state.on_event is not None and state.on_event(event)):
                    state.done = True
                    if self.holds_last_word:
                        state.last_word = LastWord(encode_event(event), complete)
                    else:
                        out.append(encode_event(event))
                    break
                out.append(encode_event(event))
        except UpstreamError as error:
            call.abort(error)  # the events before it still go out
        if not out:
            return None
        if not state.started:
            state.started = True
            self.services.metrics.first_token.labels(self.route).observe(self.request.request_time())
        self._write_counted(b"".join(out))
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

    def _flush_in_background(self) -> None:
        self.flush().add_done_callback(_retrieve)


def _retrieve(future) -> None:
    """Mark a background flush's failure as seen; the client leaving is handled elsewhere."""
    if not future.cancelled():
        future.exception()


def error_event(message: str, kind: str) -> bytes:
    return encode_data(json.dumps({"error": {"message": message, "type": kind}}))


@dataclass(frozen=True, slots=True)
class LastWord:
    """How a stream ends: its last event, and whether that is ``[DONE]`` (a reply LM Studio
    finished) rather than an error."""

    data: bytes
    complete: bool


class _RelayState:
    __slots__ = ("decoder", "done", "last_word", "on_event", "started")

    def __init__(self, on_event: Callable[[Event], bool] | None) -> None:
        self.decoder = SSEDecoder()
        self.done = False
        self.last_word: LastWord | None = None
        self.started = False
        self.on_event = on_event


class _Heartbeat:
    """Writes a comment line whenever the client has been sent nothing for ``interval`` s."""

    def __init__(self, handler: RelayHandler, interval: float) -> None:
        self._handler = handler
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._last_write = self._loop.time()
        self._timer = self._loop.call_later(interval, self._tick)

    def wrote(self) -> None:
        self._last_write = self._loop.time()

    def stop(self) -> None:
        self._timer.cancel()

    def _tick(self) -> None:
        due = self._last_write + self._interval
        now = self._loop.time()
        if now >= due:
            self._handler.write(KEEP_ALIVE)
            self._handler._flush_in_background()
            self._last_write = now
            due = now + self._interval
        self._timer = self._loop.call_later(due - now, self._tick)
