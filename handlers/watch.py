"""Watching a turn: one HTTP response that shows a turn's events as they come.

``watch(handler, turn, after, snapshot)`` is the whole of it: the event-stream headers, the
events after ``after`` (or one snapshot event with everything so far), then each new one,
until the turn's last word or the client leaving. Handlers compose it; none inherits it.

A watcher never holds the turn back: it pulls from the turn's log (turns/log.py) whenever
its previous write has gone out, at most ``WRITE_LIMIT`` bytes at a time, so a slow client
costs no copy of what it has not taken yet. One that falls more than ``LAG_LIMIT`` bytes
behind (it stopped reading) is cut off; it can attach again with ``Last-Event-ID``.
Silence longer than ``stream.heartbeat`` seconds is filled with ``: keep-alive`` comments.
"""

from __future__ import annotations

import asyncio
import logging

from tornado.iostream import StreamClosedError

from lmstudio.sse import KEEP_ALIVE

log = logging.getLogger("chatproxy.stream")

WRITE_LIMIT = 256 * 1024
# Far more than a reading client ever lags (a whole 20,000-token reply is ~4 MB), and the
# log holds it anyway: a lagging watcher costs no memory of its own.
LAG_LIMIT = 16 * 1024 * 1024
# A client whose last write has not gone out for this long (it neither reads nor closes)
# is let go, even after the turn: nothing more is coming to push it past LAG_LIMIT.
STALL_LIMIT_S = 60.0


def start_event_stream(handler) -> None:
    """The event-stream response headers, sent now."""
    handler.set_header("Content-Type", "text/event-stream; charset=utf-8")
    handler.set_header("Cache-Control", "no-cache")
    handler.set_header("X-Accel-Buffering", "no")  # nginx: do not buffer this response
    handler.flush().add_done_callback(retrieve)


class ResponseWatcher:
    """A turn's watcher (turns/log.py) writing to one HTTP response."""

    def __init__(self, handler, turn_log, after: int, first: bytes) -> None:
        self._handler = handler
        self._log = turn_log
        self._cursor = after  # the number of the last event written
        self._first = first
        self._writing = False
        self._loop = asyncio.get_running_loop()
        self._write_started = 0.0
        self.done = self._loop.create_future()  # all sent, or the client is gone
        self.gone = False
        self._relayed_bytes = handler.services.metrics.relayed_bytes.labels(handler.route)
        self.heartbeat = Heartbeat(self._keep_alive, handler.config.heartbeat)

    def wake(self) -> None:
        if self.gone:
            return
        if self._log.behind(self._cursor) > LAG_LIMIT:
            self._cut_off()
        elif not self._writing:
            self._pump()

    def _cut_off(self) -> None:
        log.info("%s: a client stopped reading; cut off (it may attach again)", self._handler.request.path)
        self._handler.request.connection.stream.close()  # its on_connection_close ends the rest
        self.client_gone()

    def client_gone(self) -> None:
        self.gone = True
        self._end()

    def _pump(self) -> None:
        data, self._cursor = self._log.read(self._cursor, WRITE_LIMIT)
        if self._first:
            data, self._first = self._first + data, b""
        if data:
            self._write(data)
            self._relayed_bytes.inc(len(data))
        elif self._log.ended:
            self._end()

    def _write(self, data: bytes) -> None:
        self._writing = True
        self._write_started = self._loop.time()
        self.heartbeat.wrote()
        try:
            self._handler.write(data)
            self._handler.flush().add_done_callback(self._written)
        except StreamClosedError:
            self.client_gone()

    def _written(self, flushed: asyncio.Future) -> None:
        self._writing = False
        if flushed.cancelled() or flushed.exception() is not None:
            self.client_gone()
        else:
            self.wake()

    def _keep_alive(self) -> None:
        """Every ``stream.heartbeat`` seconds of silence: a comment, or, for a client that has
        not taken the last write for STALL_LIMIT_S, the end."""
        if self.gone:
            return
        if not self._writing:
            self._write(KEEP_ALIVE)
        elif self._loop.time() - self._write_started > STALL_LIMIT_S:
            self._cut_off()

    def _end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def watch(handler, turn, after: int = 0, snapshot: bool = False) -> None:
    """Show ``turn`` on ``handler``'s response until its last word or the client leaving:
    the events after ``after``, or with ``snapshot`` one event holding everything so far."""
    start_event_stream(handler)
    if snapshot:  # everything so far in one event, then the events after it
        watcher = ResponseWatcher(handler, turn.log, turn.log.seq, turn.snapshot())
    else:
        watcher = ResponseWatcher(handler, turn.log, after, b"")
    handler.when_client_leaves(watcher.client_gone)
    turn.log.watch(watcher)
    try:
        await watcher.done
    finally:
        watcher.heartbeat.stop()
        turn.log.unwatch(watcher)
    handler.services.metrics.stream_duration.labels(handler.route).observe(handler.request.request_time())
    if not watcher.gone:
        handler.finish()


class Heartbeat:
    """Calls ``send`` whenever the client has been sent nothing for ``interval`` s."""

    def __init__(self, send, interval: float) -> None:
        self._send = send
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
            self._send()
            self._last_write = now
            due = now + self._interval
        self._timer = self._loop.call_later(due - now, self._tick)


def retrieve(future) -> None:
    """Mark a background flush's failure as seen; the client leaving is handled elsewhere."""
    if not future.cancelled():
        future.exception()
