"""The SSE relay: LM Studio's event stream to the client, whole events, as they come.

RelayHandler.relay_events() is the streaming code of chatproxy; PUT /chat (turn.py) uses it.
Its promises:
- no response header goes out until LM Studio has answered 200 with an event stream; an
  upstream failure before that is an ordinary JSON error with the upstream's status;
- after that, every write is one or more whole events (a browser that parses each network
  read on its own never sees half an event), flushed as soon as its piece arrived;
- a failure after the headers is a final ``data: {"error": ...}`` event, then the end;
- the client leaving aborts the upstream request at once, so LM Studio stops generating;
- silence longer than ``stream.heartbeat`` seconds is filled with ``: keep-alive`` comments.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Awaitable, Callable

from tornado.iostream import StreamClosedError

from .base import ApiError, BaseHandler
from .sse import KEEP_ALIVE, Event, SSEDecoder, encode_data, encode_event
from .upstream import ClientGone, UpstreamCall, UpstreamError, error_message_from_body

log = logging.getLogger("chatproxy.stream")

SHUTTING_DOWN = UpstreamError(503, "chatproxy is shutting down; the reply was cut short", "shutdown")


class StreamRegistry:
    """The streaming requests in progress: for the concurrency limit and for shutdown."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.closing = False
        self._handlers: set[RelayHandler] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._handlers)

    def enter(self, handler: "RelayHandler") -> None:
        if self.closing:
            raise ApiError(503, "chatproxy is shutting down", {"Retry-After": "5"})
        if len(self._handlers) >= self.limit:
            raise ApiError(
                503, f"Too many concurrent streams ({self.limit}); try again shortly", {"Retry-After": "1"}
            )
        self._handlers.add(handler)
        self._idle.clear()

    def leave(self, handler: "RelayHandler") -> None:
        self._handlers.discard(handler)
        if not self._handlers:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def abort_all(self, reason: BaseException) -> None:
        for handler in list(self._handlers):
            handler.abort_stream(reason)


class RelayHandler(BaseHandler):
    _call: UpstreamCall | None = None
    _abort_reason: BaseException | None = None

    def on_connection_close(self) -> None:
        self.abort_stream(ClientGone())

    def abort_stream(self, reason: BaseException) -> None:
        """End this request's stream, now or as soon as it starts. Only signals: upstream.py closes."""
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

    async def relay_events(self, path: str, payload: dict, on_event: Callable[[Event], None]) -> None:
        """POST ``payload`` to LM Studio at ``path`` and relay its event stream.

        ``on_event`` sees each event before it is written; it may raise UpstreamError to
        end the stream (a reply that is not what LM Studio should send).
        """
        body = json.dumps(payload, ensure_ascii=False).encode()
        call = self.services.upstream.open(
            "POST", path, body, {"Content-Type": "application/json", "Accept": "text/event-stream"}
        )
        self._call = call
        if self._abort_reason is not None:
            call.abort(self._abort_reason)
        heartbeat = None
        try:
            try:
                status, headers = await call.head()
            except ClientGone:
                return
            except UpstreamError as error:
                log.warning("%s: %s", self.request.path, error.message)
                raise ApiError(error.status, error.message) from None
            content_type = headers.get("Content-Type", "")
            if status != 200 or not content_type.startswith("text/event-stream"):
                raise await self._upstream_refusal(call, status, content_type)
            self._start_event_stream()
            heartbeat = _Heartbeat(self, self.config.heartbeat)
            state = _RelayState()
            try:
                await call.attach(lambda piece: self._relay_piece(call, state, piece, on_event, heartbeat))
                await call.finished()
                if not state.done:
                    raise UpstreamError(502, "LM Studio ended the stream before it finished ([DONE] never came)", "dropped")
            except ClientGone:
                log.info("%s: client went away; upstream request closed", self.request.path)
            except UpstreamError as error:
                log.warning("%s: %s", self.request.path, error.message)
                self.write(encode_data(json.dumps({"error": {"message": error.message, "type": error.kind}})))
                await self._flush_quietly()
        finally:
            if heartbeat is not None:
                heartbeat.stop()

    async def _upstream_refusal(self, call: UpstreamCall, status: int, content_type: str) -> ApiError:
        detail = error_message_from_body(await call.read_body())
        if status == 200:
            # LM Studio answers unknown routes with 200 and an error body.
            message = f"LM Studio did not answer with an event stream ({content_type or 'no content type'}): {detail}"
            status = 502
        else:
            message = f"LM Studio answered {status}: {detail}"
        log.warning("%s: %s", self.request.path, message)
        return ApiError(status if status >= 400 else 502, message)

    def _start_event_stream(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # nginx: do not buffer this response
        self._flush_in_background()

    def _relay_piece(self, call, state, piece: bytes, on_event, heartbeat) -> Awaitable[None] | None:
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
                if event.data == "[DONE]":
                    state.done = True
                    out.append(encode_event(event))
                    break
                on_event(event)
                out.append(encode_event(event))
        except UpstreamError as error:
            call.abort(error)  # the events before it still go out
        if not out:
            return None
        self.write(b"".join(out))
        heartbeat.wrote()
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


class _RelayState:
    __slots__ = ("decoder", "done")

    def __init__(self) -> None:
        self.decoder = SSEDecoder()
        self.done = False


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
