"""One HTTP request to one upstream: the only module that drives the HTTP client (http.py).

An Attempt owns what a request can do: the status gate (headers are parsed as they arrive,
so the caller learns 200 or error before any body byte), the timeouts (connect, and idle:
no byte for ``idle_timeout`` seconds; never a total one, since a reply may be long), abort,
and turning every failure into an UpstreamError with a sentence that names the upstream.
UpstreamCall (call.py) strings attempts together for failover.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections import deque
from typing import TYPE_CHECKING, Awaitable, Callable

import pycurl
from tornado.httpclient import HTTPRequest
from tornado.httputil import HTTPHeaders

from .errors import UpstreamError
from .http import TransferError

if TYPE_CHECKING:
    from .upstream import Upstream

ERROR_BODY_LIMIT = 64 * 1024
# libcurl's codes for a connection that ended before the answer did.
_CLOSED = (pycurl.E_GOT_NOTHING, pycurl.E_PARTIAL_FILE, pycurl.E_RECV_ERROR, pycurl.E_SEND_ERROR)


class Attempt:
    """One request to ``upstream``, started at construction.

    Use: ``await head()`` for (status, headers); then either ``await attach(consumer)`` and
    ``await finished()`` to receive the body piece by piece, or ``await read_body()``.
    ``abort(reason)`` ends it at any moment; ``finished()`` then raises ``reason``.
    """

    def __init__(self, upstream: "Upstream", method: str, path: str, body: bytes | None, headers: dict) -> None:
        self.upstream = upstream
        self._loop = asyncio.get_running_loop()
        self._head: asyncio.Future[tuple[int, HTTPHeaders]] = self._loop.create_future()
        self._consumer: Callable[[bytes], Awaitable[None] | None] | None = None
        # Pieces that arrive before the caller has looked at the head (the first piece often
        # comes with the headers, and a dropped connection ends the fetch before attach).
        self._early: deque[bytes] = deque()
        self._abort_reason: BaseException | None = None
        self._status = 0
        self._headers = HTTPHeaders()
        self.last_byte_at = self._loop.time()
        self.started_at = self.head_at = self.last_byte_at
        if upstream.auth is not None:  # the configured key wins over whatever a client sent
            headers = {name: value for name, value in headers.items() if name.lower() != "authorization"}
            headers["Authorization"] = upstream.auth
        self._request = HTTPRequest(
            upstream.base_url + path,
            method=method,
            headers=headers,
            body=body,
            allow_nonstandard_methods=True,
            connect_timeout=upstream.connect_timeout,
            request_timeout=0,  # no limit on the whole reply; the idle timer guards silence
            follow_redirects=False,
            header_callback=self._on_header_line,
            streaming_callback=self._on_body_piece,
        )
        upstream.open_requests += 1
        self._response = upstream.client.fetch(self._request, raise_error=False)
        self._response.add_done_callback(self._on_done)
        self._idle_timer = self._loop.call_later(upstream.idle_timeout, self._check_idle)

    # -- the caller's side -----------------------------------------------------------------

    async def head(self) -> tuple[int, HTTPHeaders]:
        return await self._head

    def on_head(self, callback: Callable[["Attempt", asyncio.Future], None]) -> None:
        """``callback(self, future)`` once the head has come, or the request failed before it."""
        self._head.add_done_callback(lambda future: callback(self, future))

    async def attach(self, consumer: Callable[[bytes], Awaitable[None] | None]) -> None:
        """Send the body to ``consumer``, starting with the pieces that came before this call.

        ``consumer`` returns None, or an awaitable when it must hold the upstream back (a
        slow client): no more is read from the upstream until it is done.
        """
        while self._early and self._abort_reason is None:
            pending = consumer(self._early.popleft())
            if pending is not None:
                await pending
        self._early.clear()
        self._consumer = consumer

    def touch(self) -> None:
        """Time spent waiting for a slow client is not upstream silence."""
        self.last_byte_at = self._loop.time()

    async def finished(self) -> None:
        try:
            await self._response  # an HTTP error status is a response; other failures raise
        except Exception as error:
            raise self._abort_reason or self._failure(error) from None
        if self._abort_reason is not None:
            raise self._abort_reason

    async def read_body(self, limit: int = ERROR_BODY_LIMIT) -> bytes:
        body = bytearray()

        def collect(piece: bytes) -> None:
            if len(body) < limit:
                body.extend(piece[: limit - len(body)])

        await self.attach(collect)
        try:
            await self.finished()
        except UpstreamError:
            pass  # a cut body is still worth showing
        return bytes(body)

    def abort(self, reason: BaseException) -> None:
        """End the request; ``finished()`` raises ``reason``, also when the whole response had
        already arrived but was not consumed yet (a bad event among the buffered pieces)."""
        if self._abort_reason is None:
            self._abort_reason = reason
        if not self._response.done():
            self.upstream.client.abort(self._request, reason)

    # -- the HTTP client's side ------------------------------------------------------------

    def _on_header_line(self, line: str) -> None:
        self.last_byte_at = self._loop.time()
        if line.startswith("HTTP/"):
            self._status = int(line.split(" ", 2)[1])
            self._headers = HTTPHeaders()
        elif line == "\r\n":
            if 100 <= self._status < 200:
                return  # an interim answer (100 Continue); the real one follows
            self.head_at = self.last_byte_at
            if not self._head.done():
                self._head.set_result((self._status, self._headers))
        else:
            self._headers.parse_line(line)

    def _on_body_piece(self, piece: bytes) -> Awaitable[None] | None:
        # Not a coroutine: on the hot path the consumer finishes at once, and the HTTP
        # client only waits for what is returned.
        self.last_byte_at = self._loop.time()
        if self._consumer is None:
            self._early.append(piece)
            return None
        if self._abort_reason is not None:
            return None
        return self._consumer(piece)

    def _on_done(self, future: asyncio.Future) -> None:
        self.upstream.open_requests -= 1
        self._idle_timer.cancel()
        if not future.cancelled():
            future.exception()  # seen here: a request aborted before anyone awaits finished()
        if self._head.done():
            return
        error = self._abort_reason or self._failure(future.exception())
        self._head.set_exception(error)
        self._head.exception()  # retrieved here: a caller that never asks is no bug

    def _check_idle(self) -> None:
        timeout = self.upstream.idle_timeout
        silent_for = self._loop.time() - self.last_byte_at
        if silent_for >= timeout:
            self.abort(UpstreamError(504, f"{self.upstream.who} sent nothing for {timeout:g} s (idle timeout)", "idle_timeout"))
        else:
            self._idle_timer = self._loop.call_later(timeout - silent_for, self._check_idle)

    def _failure(self, error: BaseException | None) -> UpstreamError:
        if isinstance(error, UpstreamError):
            return error
        who, url = self.upstream.who, self.upstream.base_url
        if not isinstance(error, TransferError):
            return UpstreamError(502, f"The request to {who} at {url} failed: {error}", "upstream")
        if error.code == pycurl.E_OPERATION_TIMEDOUT:
            return UpstreamError(
                504,
                f"{who} at {url} did not accept the connection within "
                f"{self.upstream.connect_timeout:g} s (connect timeout)",
                "connect_timeout",
            )
        if error.code == pycurl.E_COULDNT_CONNECT:
            reason = "connection refused" if error.os_errno == errno.ECONNREFUSED else _reason(error)
            return UpstreamError(502, f"{who} is not reachable at {url}: {reason}", "unreachable")
        if error.code == pycurl.E_COULDNT_RESOLVE_HOST:
            return UpstreamError(502, f"{who} is not reachable at {url}: cannot resolve its host", "unreachable")
        if error.code in _CLOSED:
            if self._head.done():
                return UpstreamError(502, f"{who} closed the connection in the middle of the reply", "dropped")
            return UpstreamError(502, f"{who} at {url} closed the connection before answering", "dropped")
        return UpstreamError(502, f"The request to {who} at {url} failed: {error.message}", "upstream")


def _reason(error: TransferError) -> str:
    return os.strerror(error.os_errno).lower() if error.os_errno else error.message
