"""Turn: one reply being written, owned by the server rather than by a connection.

A turn holds its chat (store.hold: turns on one chat run one after another), makes its start
durable (store.begin_turn: the user's message, the chat marked running), asks LM Studio,
reads its event stream into the reply (lmstudio.ReplyCollector) and the event log
(turns/log.py) that its watchers read, journals the reply about once a second, and commits
it (store.end_turn) whatever ended it. Its last word, ``[DONE]`` or an error event, goes
into the log only after the commit, so a client that reads the chat when the stream ends
finds the reply there.

The request that started the turn is its first watcher; it learns through ``accepted``
whether LM Studio took the request (an event stream) or refused it (UpstreamError, a store
error), before any response header goes out. Watchers come and go; none of them can hold
the turn back. ``stop(reason)`` ends the turn at any point: LM Studio's request is closed at
once and the part written so far is stored.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from typing import Any, Awaitable

import jsonbytes
from lmstudio import ReplyCollector, UpstreamError
from lmstudio.sse import Event, SSEDecoder, encode_data, encode_event
from store import ChatNotFound, StoreError, chatfile

from .log import EventLog
from .request import fitted_request

log = logging.getLogger("chatproxy.turn")

DONE = b"data: [DONE]\n\n"
# How often the reply so far is journaled while it grows: what a kill -9 may lose.
JOURNAL_INTERVAL_S = 1.0

# Turn ids need to be unique, not secret: a per-process prefix and a counter.
_ids = itertools.count(1)
_ID_PREFIX = f"{os.getpid():x}-{int(time.time()):x}"


class Stopped(Exception):
    """POST /chat/stop ended the turn."""


class StarterLeft(Exception):
    """The client that started the turn left, and it had not asked to detach."""


def error_event(message: str, kind: str) -> bytes:
    return encode_data(jsonbytes.dumps({"error": {"message": message, "type": kind}}).decode())


class Turn:
    def __init__(self, name: str, plan: dict, *, detach: bool, owner: str | None, store, upstream, metrics, route: str, titles) -> None:
        self.id = f"{_ID_PREFIX}-{next(_ids)}"
        self.name = name
        self.plan = plan
        self.detach = detach
        self.owner = owner
        self.log = EventLog()
        self.reply = ReplyCollector()
        self.upstream_ms: float | None = None
        self._store = store
        self._upstream = upstream
        self._metrics = metrics
        self._route = route
        self._titles = titles  # a TitleWriter (turns/titles.py), told of the stored reply
        self._stored: dict | None = None  # the reply the commit stored
        self._created_at = time.monotonic()
        self._loop = asyncio.get_running_loop()
        # Resolved once LM Studio answered with an event stream (and the start is durable);
        # its exception is what the first watcher answers instead.
        self.accepted: asyncio.Future[None] = self._loop.create_future()
        self.finished = asyncio.Event()
        self._call = None
        self._stop_reason: BaseException | None = None
        self._decoder = SSEDecoder()
        self._last_word: bytes | None = None  # held back until the reply is stored
        self._complete = False  # the stream ended with [DONE]
        self._journaled_events = 0
        self._journal_timer: asyncio.TimerHandle | None = None
        self._truncation: dict | None = None  # what was left out to fit the model's context
        self._journaling: asyncio.Future | None = None

    # -- what handlers and the registry call ------------------------------------------------

    def stop(self, reason: BaseException) -> None:
        """End the turn as soon as possible: now if it is streaming, else at its next step."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._call is not None:
            self._call.abort(reason)
        elif not self.accepted.done():
            # Still waiting for the chat: the request that started it need not wait too.
            self.accepted.set_exception(reason)
            self.accepted.exception()

    abort_stream = stop  # the stream slots' name for it (shutdown ends every stream)

    def starter_left(self) -> None:
        if not self.detach:
            self.stop(StarterLeft())

    def snapshot(self) -> bytes:
        """One event with everything said so far, as the chunk a client accumulates into
        the reply; its id is the last event's, so the live events follow it without a gap."""
        delta: dict[str, Any] = {"role": "assistant", "content": "".join(self.reply.content)}
        if self.reply.reasoning:
            delta["reasoning_content"] = "".join(self.reply.reasoning)
        chunk = {
            "object": "chat.completion.chunk",
            "model": self.reply.model,
            "snapshot": True,
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
        return b"id: %d\ndata: %s\n\n" % (self.log.seq, jsonbytes.dumps(chunk))

    # -- the job ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with self._store.hold(self.name):
                if self._stop_reason is not None:
                    raise self._stop_reason  # stopped while it waited for the chat
                mark = {"id": self.id, "started_at": chatfile.now(), "owner": self.owner}
                chat, durable = await self._store.begin_turn(self.name, self.plan, mark)
                problem = None
                try:
                    await self._ask(chat, durable)
                except (UpstreamError, Stopped, StarterLeft, StoreError) as error:
                    self._fail(error)
                finally:
                    self._stop_journal()
                    await _settled(durable)  # a request that failed before it: the start's write ends first
                    problem = await self._commit()
                self._end(problem)
                if problem is None:
                    self._titles.after_reply(self.name, chat, self._stored)
        except asyncio.CancelledError as error:
            self._fail(Stopped())
            self._end(None)
            raise
        except BaseException as error:
            self._fail(error)
            self._end(None)
        finally:
            self.finished.set()

    async def _ask(self, chat: dict, durable: Awaitable[None]) -> None:
        """Ask LM Studio while the turn's start becomes durable (it hides behind prompt
        processing); nothing is relayed before it is."""
        body, self._truncation = await fitted_request(chat, self._upstream)
        call = self._upstream.open_chat(body["model"], body)
        self._call = call
        if self._stop_reason is not None:
            call.abort(self._stop_reason)
        try:
            await durable
        except StoreError as error:
            call.abort(error)
            raise
        status, headers = await call.head()
        self.upstream_ms = round(1000 * (call.head_at - call.started_at), 2)
        self.reply.answered_by(call)
        if status != 200 or not headers.get("Content-Type", "").startswith("text/event-stream"):
            raise await call.refusal(status, headers)
        self.accepted.set_result(None)
        self._journal_timer = self._loop.call_later(JOURNAL_INTERVAL_S, self._journal)
        await call.attach(self._on_piece)
        await call.finished()
        if self._last_word is None:
            raise UpstreamError(502, f"{call.who} ended the stream before it finished ([DONE] never came)", "dropped")

    def _on_piece(self, piece: bytes) -> None:
        """The events one upstream read completes: into the reply and the log, at once."""
        if self._last_word is not None:
            return
        out = []
        try:
            for event in self._decoder.feed(piece):
                if event.data == "[DONE]":
                    self._last_word, self._complete = DONE, True
                    break
                if self.reply(event):  # LM Studio's own error event: relayed as the last word
                    self._last_word = encode_event(Event(event.data, event.event))
                    log.warning("Turn on chat '%s': %s reported an error mid-reply: %s", self.name, self.reply.who, self.reply.error)
                    self._metrics.upstream_errors.labels("in_stream").inc()
                    break
                # The upstream's own ids would clash with the turn's sequence numbers.
                out.append(encode_event(event if event.id is None else Event(event.data, event.event, None, event.retry)))
        except UpstreamError as error:
            self._call.abort(error)  # the events before it still go out
        if out:
            if not self.log.seq:
                self._metrics.first_token.labels(self._route).observe(time.monotonic() - self._created_at)
            self.log.append(out)

    def _fail(self, error: BaseException) -> None:
        """Note how the turn ended when it was not [DONE]: the first watcher's answer if it
        has not started streaming, and the last word for everyone else."""
        if not self.accepted.done():
            self.accepted.set_exception(error)
            self.accepted.exception()  # a starter that already left never asks
        if self._last_word is not None and not isinstance(error, Stopped | StarterLeft):
            return  # LM Studio's own last word came first
        self._complete = False
        if isinstance(error, UpstreamError):
            log.warning("Turn on chat '%s': %s", self.name, error.message)
            self._metrics.upstream_errors.labels(error.kind).inc()
            self._last_word = error_event(error.message, error.kind)
        elif isinstance(error, Stopped):
            self._last_word = error_event("Stopped; the reply so far is stored", "stopped")
        elif isinstance(error, StarterLeft):
            self._last_word = error_event("The client that started this turn left; the reply so far is stored", "client_gone")
        elif isinstance(error, StoreError):
            self._last_word = error_event(str(error), "storage")
        else:
            log.exception("Turn on chat '%s' failed", self.name, exc_info=error)
            self._last_word = error_event("Internal server error; the details are in the server log", "internal")

    async def _commit(self) -> str | None:
        """Store the reply and clear the running mark; the sentence for the client when it
        could not be stored."""
        if self._journaling is not None:
            await asyncio.wait([self._journaling])  # its write must not land after the commit
        message = self.reply.message()
        if message is not None and self._truncation is not None:
            message["truncated"] = self._truncation
        try:
            await self._store.end_turn(self.name, self.id, message)
        except ChatNotFound:
            log.warning("Chat '%s' was deleted during its turn; the reply was not stored", self.name)
            return f"Chat '{self.name}' was deleted during its turn; the reply was not stored"
        except StoreError as error:
            log.error("The reply to chat '%s' could not be stored: %s", self.name, error)
            return f"The reply could not be stored: {error}"
        self._stored = message
        return None

    def _end(self, problem: str | None) -> None:
        if self.log.ended:
            return
        if problem is not None and (self._complete or self._last_word is None):
            # A finished reply that could not be stored must not end as if all were well.
            self._last_word = error_event(problem, "storage")
        self.log.end(self._last_word or error_event("The turn ended without an answer", "internal"))

    # -- the journal -----------------------------------------------------------------------

    def _journal(self) -> None:
        """About once a second: the reply so far, where a restart after kill -9 finds it."""
        self._journal_timer = self._loop.call_later(JOURNAL_INTERVAL_S, self._journal)
        if self.log.seq == self._journaled_events or (self._journaling is not None and not self._journaling.done()):
            return
        self._journaled_events = self.log.seq
        self._journaling = asyncio.ensure_future(self._write_journal(self.reply.message()))

    async def _write_journal(self, message: dict | None) -> None:
        try:
            await self._store.journal_turn(self.name, self.id, message)
        except StoreError as error:
            log.error("Journaling the reply to chat '%s' failed: %s", self.name, error)
            self.stop(error)

    def _stop_journal(self) -> None:
        if self._journal_timer is not None:
            self._journal_timer.cancel()


async def _settled(write: Awaitable[None]) -> None:
    """Once ``write`` has ended, however: its error, if any, was the turn's to report."""
    try:
        await asyncio.shield(write)
    except Exception:
        pass
