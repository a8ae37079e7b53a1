"""The LM Studio client: the only module that knows AsyncHTTPClient.

It owns what a request to LM Studio can do: the status gate (headers are parsed as they
arrive, so a caller learns 200 or error before any body byte), the timeouts (connect, and
idle: no byte for ``idle_timeout`` seconds; never a total one, since a reply may be long),
abort, and turning every failure into an UpstreamError with a sentence fit for the user.

Abort: Tornado's AsyncHTTPClient has no public cancel, and cancelling the future of
``fetch()`` leaves the socket open, so LM Studio keeps generating. AbortableHTTPClient keeps
hold of each request's connection and ends it through the connection's own error path,
which closes the socket (or, while still connecting, closes it as soon as it connects).

Reading: the body's chunked framing is decoded by chunked.py, one await per network read,
instead of Tornado's reader (three awaits per chunk, and it loses the chunks that arrive
together with the connection's close).

Both lean on SimpleAsyncHTTPClient and HTTP1Connection internals that are stable across
Tornado 6.x; the tests "abort closes the upstream" and "drop mid-reply" catch a change.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections import deque
from typing import Awaitable, Callable
from urllib.parse import urlsplit

from tornado import httputil
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.httputil import HTTPHeaders
from tornado.iostream import IOStream
from tornado.netutil import DefaultLoopResolver, Resolver
from tornado.simple_httpclient import (
    HTTPStreamClosedError,
    HTTPTimeoutError,
    SimpleAsyncHTTPClient,
    _HTTPConnection,
)

from .chunked import ChunkedDecoder

NO_LIMIT = 2**62
ERROR_BODY_LIMIT = 64 * 1024
MODEL_LIST_LIMIT = 1024 * 1024


class UpstreamError(Exception):
    """A failed call to LM Studio: ``status`` to answer with, ``kind`` for logs and metrics."""

    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


class ClientGone(Exception):
    """The client hung up; the upstream request was ended so LM Studio stops generating."""


class _ChunkedReadingHTTP1Connection(HTTP1Connection):
    """Tornado's HTTP/1.1 connection, reading a chunked body with ChunkedDecoder: one await
    per network read instead of three per chunk, and nothing held back (chunked.py)."""

    async def _read_chunked_body(self, delegate: httputil.HTTPMessageDelegate) -> None:
        decoder = ChunkedDecoder(self._max_body_size)
        while not decoder.done:
            payload = decoder.feed(await self.stream.read_bytes(self.params.chunk_size, partial=True))
            if payload:
                await self._deliver_body(delegate, payload)


class _AbortableConnection(_HTTPConnection):
    def _create_connection(self, stream: IOStream) -> HTTP1Connection:
        # As SimpleAsyncHTTPClient's own, with the chunked-body reader above.
        stream.set_nodelay(True)
        return _ChunkedReadingHTTP1Connection(
            stream,
            True,
            HTTP1ConnectionParameters(
                no_keep_alive=True,
                max_header_size=self.max_header_size,
                max_body_size=self.max_body_size,
                decompress=bool(self.request.decompress_response),
            ),
            self._sockaddr,
        )

    def abort(self, error: BaseException) -> None:
        if self.final_callback is None:
            return  # already finished
        try:
            raise error
        except BaseException:
            # Runs the final callback with this error and closes the socket if it is open;
            # while connecting, run() sees final_callback cleared and closes on connect.
            self._handle_exception(*sys.exc_info())


class AbortableHTTPClient(SimpleAsyncHTTPClient):
    def initialize(self, **kwargs) -> None:  # type: ignore[override]
        super().initialize(**kwargs)
        self._connections: dict[HTTPRequest, _AbortableConnection] = {}

    def _handle_request(self, request, release_callback, final_callback) -> None:
        original = request.request  # fetch() wraps each request in a _RequestProxy

        def release() -> None:
            self._connections.pop(original, None)
            release_callback()

        self._connections[original] = _AbortableConnection(
            self,
            request,
            release,
            final_callback,
            self.max_buffer_size,
            self.tcp_client,
            self.max_header_size,
            self.max_body_size,
        )

    def abort(self, request: HTTPRequest, error: BaseException) -> None:
        connection = self._connections.get(request)
        if connection is not None:
            connection.abort(error)
            return
        for key, (queued, callback, _) in list(self.waiting.items()):
            if queued.request is request:
                self._remove_timeout(key)  # also forgets it: the queue skips unknown keys
                self.io_loop.add_callback(callback, HTTPResponse(queued, 599, error=error))


class CachingResolver(Resolver):
    """Tornado's resolver, remembering each answer for ``ttl`` seconds.

    Tornado's client opens a connection per request and resolves the host each time on a
    thread; that hop is a tenth of a millisecond of every time to first token, and LM
    Studio's address does not change between turns.
    """

    def initialize(self, ttl: float = 60.0) -> None:  # type: ignore[override]
        self._resolver = DefaultLoopResolver()
        self._ttl = ttl
        self._answers: dict[tuple, tuple[float, list]] = {}

    async def resolve(self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC) -> list:
        key = (host, port, family)
        now = time.monotonic()
        cached = self._answers.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        addresses = await self._resolver.resolve(host, port, family)
        self._answers[key] = (now + self._ttl, addresses)
        return addresses

    def close(self) -> None:
        self._resolver.close()


class Upstream:
    """LM Studio at ``base_url``; one shared HTTP client for every request."""

    def __init__(self, base_url: str, connect_timeout: float, idle_timeout: float, max_requests: int) -> None:
        self.base_url = base_url
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        # Tornado's default max_clients=10 would queue the eleventh concurrent stream.
        self._client = AbortableHTTPClient(
            force_instance=True,
            max_clients=max_requests,
            max_body_size=NO_LIMIT,
            resolver=CachingResolver(),
        )

    def open(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> "UpstreamCall":
        return UpstreamCall(self, method, self.base_url + path, body, headers or {})

    async def list_models(self, timeout: float) -> list[str]:
        """The model ids LM Studio offers (GET /v1/models), answered within ``timeout`` seconds."""
        call = self.open("GET", "/v1/models")

        async def answer() -> tuple[int, bytes]:
            status, _ = await call.head()
            return status, await call.read_body(MODEL_LIST_LIMIT)

        try:
            status, body = await asyncio.wait_for(answer(), timeout)
        except asyncio.TimeoutError:
            error = UpstreamError(504, f"LM Studio at {self.base_url} did not answer within {timeout:g} s", "health_timeout")
            call.abort(error)
            raise error from None
        if status != 200:
            raise UpstreamError(502, f"LM Studio answered {status}: {error_message_from_body(body)}", "http_error")
        try:
            return [model["id"] for model in json.loads(body)["data"]]
        except (ValueError, KeyError, TypeError):
            raise UpstreamError(502, "LM Studio's model list is not what OpenAI's API describes", "bad_answer") from None

    def close(self) -> None:
        self._client.close()
        self._client.resolver.close()


class UpstreamCall:
    """One request to LM Studio, started at construction.

    Use: ``await head()`` for (status, headers); then either ``await attach(consumer)`` and
    ``await finished()`` to receive the body piece by piece, or ``await read_body()``.
    ``abort(reason)`` ends it at any moment; ``finished()`` then raises ``reason``.
    """

    def __init__(self, upstream: Upstream, method: str, url: str, body: bytes | None, headers: dict) -> None:
        self._upstream = upstream
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
        self._request = HTTPRequest(
            url,
            method=method,
            headers=headers,
            body=body,
            allow_nonstandard_methods=True,
            connect_timeout=upstream.connect_timeout,
            request_timeout=0,  # no limit on the whole reply; the idle timer guards silence
            follow_redirects=False,
            decompress_response=False,  # we relay what we read; no Accept-Encoding is sent
            header_callback=self._on_header_line,
            streaming_callback=self._on_body_piece,
        )
        self._response = upstream._client.fetch(self._request, raise_error=False)
        self._response.add_done_callback(self._on_done)
        self._idle_timer = self._loop.call_later(upstream.idle_timeout, self._check_idle)

    # -- the caller's side -----------------------------------------------------------------

    async def head(self) -> tuple[int, HTTPHeaders]:
        return await self._head

    async def attach(self, consumer: Callable[[bytes], Awaitable[None] | None]) -> None:
        """Send the body to ``consumer``, starting with the pieces that came before this call.

        ``consumer`` returns None, or an awaitable when it must hold the upstream back (a
        slow client): Tornado then reads no more until it is done.
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
        """End the call; ``finished()`` raises ``reason``, also when the whole response had
        already arrived but was not consumed yet (a bad event among the buffered pieces)."""
        if self._abort_reason is None:
            self._abort_reason = reason
        if not self._response.done():
            self._upstream._client.abort(self._request, reason)

    # -- Tornado's side --------------------------------------------------------------------

    def _on_header_line(self, line: str) -> None:
        self.last_byte_at = self._loop.time()
        if line.startswith("HTTP/"):
            self._status = int(line.split(" ", 2)[1])
            self._headers = HTTPHeaders()
        elif line == "\r\n":
            self.head_at = self.last_byte_at
            if not self._head.done():
                self._head.set_result((self._status, self._headers))
        else:
            self._headers.parse_line(line)

    def _on_body_piece(self, piece: bytes) -> Awaitable[None] | None:
        # Not a coroutine: on the hot path the consumer finishes at once, and Tornado only
        # awaits what is returned.
        self.last_byte_at = self._loop.time()
        if self._consumer is None:
            self._early.append(piece)
            return None
        if self._abort_reason is not None:
            return None
        return self._consumer(piece)

    def _on_done(self, future: asyncio.Future) -> None:
        self._idle_timer.cancel()
        if not future.cancelled():
            future.exception()  # seen here: a call aborted before anyone awaits finished()
        if self._head.done():
            return
        error = self._abort_reason or self._failure(future.exception())
        self._head.set_exception(error)
        self._head.exception()  # retrieved here: a caller that never asks is no bug

    def _check_idle(self) -> None:
        timeout = self._upstream.idle_timeout
        silent_for = self._loop.time() - self.last_byte_at
        if silent_for >= timeout:
            self.abort(UpstreamError(504, f"LM Studio sent nothing for {timeout:g} s (idle timeout)", "idle_timeout"))
        else:
            self._idle_timer = self._loop.call_later(timeout - silent_for, self._check_idle)

    def _failure(self, error: BaseException | None) -> UpstreamError:
        base = self._upstream.base_url
        where = f"LM Studio is not reachable at {base}"
        if isinstance(error, UpstreamError):
            return error
        if isinstance(error, (HTTPTimeoutError, TimeoutError)):
            return UpstreamError(
                504,
                f"LM Studio at {base} did not accept the connection within "
                f"{self._upstream.connect_timeout:g} s (connect timeout)",
                "connect_timeout",
            )
        if isinstance(error, ConnectionRefusedError):
            return UpstreamError(502, f"{where}: connection refused", "unreachable")
        if isinstance(error, socket.gaierror):
            host = urlsplit(base).hostname
            return UpstreamError(502, f"{where}: cannot resolve host '{host}'", "unreachable")
        if isinstance(error, HTTPStreamClosedError):
            if self._head.done():
                return UpstreamError(502, "LM Studio closed the connection in the middle of the reply", "dropped")
            return UpstreamError(502, f"LM Studio at {base} closed the connection before answering", "dropped")
        if isinstance(error, OSError):
            return UpstreamError(502, f"{where}: {error.strerror or error}", "unreachable")
        return UpstreamError(502, f"LM Studio request failed: {error}", "upstream")


def error_message_from_body(body: bytes) -> str:
    """The sentence inside an upstream error body (OpenAI style, LM Studio's plain string, or text)."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:500] or "(empty body)"
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed)
        if isinstance(error, dict):
            error = error.get("message", error)
        if isinstance(error, str):
            return error
        return json.dumps(error)[:500]
    return text[:500]
