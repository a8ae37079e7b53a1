"""The HTTP client under every upstream call: Tornado's libcurl client, made to stream as chatproxy needs.

Why libcurl (``CurlAsyncHTTPClient``, through pycurl): it keeps the connections to each
upstream alive and parses HTTP in C. Measured (``python -m bench.upstreams --clients``), a
streamed one-token request costs about half the CPU of Tornado's own client, which opens a
new connection for every request.

What this subclass adds, all behind ``fetch()`` with a ``header_callback`` and a
``streaming_callback``:
- ``abort(request)`` ends a request at once. libcurl closes the connection of a transfer
  removed before its end, so LM Studio sees the close and stops generating.
- a ``streaming_callback`` may return an awaitable (a slow client): no further piece is
  delivered, and libcurl reads no more from the socket, until it is done. The response
  completes only after its last piece was delivered.
- header lines reach ``header_callback`` as libcurl parses them, so the status is known
  before any body piece.
- a failure is a TransferError with libcurl's code and the OS errno, for a sentence fit for
  the user (lmstudio/client.py writes it).
- curl handles are made as they are needed, up to ``max_clients`` (Tornado makes them all
  up front: about 12 KB each).
- the request setup covers what chatproxy sends (method, headers, body, connect timeout)
  and nothing else: Tornado's general one cost a quarter of a request's CPU.

It leans on CurlAsyncHTTPClient internals stable across Tornado 6.x (``_process_queue``,
``_finish``, ``curl.info``, ``_free_list``); the tests of abort, a drop mid-reply, the idle
timeout and a slow client catch a change.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Awaitable, Callable

import pycurl
from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.httpclient import HTTPRequest, HTTPResponse

# libcurl's smallest upload buffer: 48 KB less per open stream than its default of 64 KB,
# and a request body is sent in a few writes all the same.
UPLOAD_BUFFER = 16 * 1024
# Idle connections kept open for the next request (all upstreams together); after a burst
# the rest are closed.
IDLE_CONNECTIONS = 64
# Request headers libcurl would add on its own; an empty value tells it not to.
CURL_DEFAULT_HEADERS = ("Accept", "Content-Type", "Expect")


class TransferError(Exception):
    """A request that failed: libcurl's code and message, and the OS error behind it (0 if none)."""

    def __init__(self, code: int, os_errno: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.os_errno = os_errno
        self.message = message


class UpstreamHTTPClient(CurlAsyncHTTPClient):
    def initialize(self, max_clients: int = 10, defaults: dict[str, Any] | None = None, **_: Any) -> None:  # type: ignore[override]
        super().initialize(max_clients=0, defaults=defaults)
        self._max_handles = max_clients
        self._transfers: dict[HTTPRequest, pycurl.Curl] = {}
        self._multi.setopt(pycurl.M_MAXCONNECTS, IDLE_CONNECTIONS)

    def fetch_impl(self, request: HTTPRequest, callback: Callable[[HTTPResponse], None]) -> None:
        if not self._free_list and len(self._curls) < self._max_handles:
            curl = self._curl_create()
            self._curls.append(curl)
            self._free_list.append(curl)
        super().fetch_impl(request, callback)

    def abort(self, request: HTTPRequest, error: BaseException) -> None:
        """End ``request`` now (its connection is closed); its fetch fails with a TransferError."""
        if self._closed:
            return  # every connection is closed already
        curl = self._transfers.get(request)
        if curl is not None:
            self._finish(curl, pycurl.E_ABORTED_BY_CALLBACK, str(error) or type(error).__name__)
            if self._requests:
                self._process_queue()
                self._set_timeout(0)
            return
        for index, (queued, callback, _) in enumerate(self._requests):
            if queued.request is request:  # type: ignore[attr-defined]  # fetch() wraps it in a proxy
                del self._requests[index]
                callback(HTTPResponse(queued, 599, error=error))
                return

    # -- CurlAsyncHTTPClient's hooks -------------------------------------------------------

    def _curl_setup_request(self, curl: pycurl.Curl, request: Any, buffer: Any, headers: Any) -> None:
        original: HTTPRequest = request.request  # fetch() wraps it in a _RequestProxy
        lines = [f"{name}: {value}" for name, value in original.headers.get_all()]
        lines += [f"{name}:" for name in CURL_DEFAULT_HEADERS if name not in original.headers]
        if any("\r" in line or "\n" in line for line in lines):
            raise ValueError("a request header holds a line break")
        curl.setopt(pycurl.URL, original.url)
        curl.setopt(pycurl.HTTPHEADER, [line.encode("latin-1") for line in lines])
        curl.setopt(pycurl.NOSIGNAL, 1)  # chatproxy has threads (the store's); no SIGALRM timeouts
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, int(1000 * request.connect_timeout))  # the proxy applies defaults
        curl.setopt(pycurl.UPLOAD_BUFFERSIZE, UPLOAD_BUFFER)
        header_callback = original.header_callback
        if header_callback is not None:
            curl.setopt(pycurl.HEADERFUNCTION, lambda line: header_callback(line.decode("latin-1")))
        if original.streaming_callback is None:
            raise ValueError("chatproxy reads every upstream answer through a streaming_callback")
        pieces = _BodyPieces(self, curl, original.streaming_callback)
        curl.info["pieces"] = pieces
        curl.setopt(pycurl.WRITEFUNCTION, pieces.write)
        method, body = original.method, original.body
        if method == "GET":
            curl.setopt(pycurl.HTTPGET, 1)
        elif method == "HEAD":
            curl.setopt(pycurl.NOBODY, 1)
        elif method != "POST":
            curl.setopt(pycurl.CUSTOMREQUEST, method)
        if body is not None:
            curl.setopt(pycurl.POSTFIELDS, body)
        self._transfers[original] = curl

    def _finish(self, curl: pycurl.Curl, curl_error: int | None = None, curl_message: str | None = None) -> None:
        info = curl.info
        curl.info = None
        self._multi.remove_handle(curl)
        request = info["request"]
        self._transfers.pop(request.request, None)
        if curl_error:
            error = TransferError(curl_error, curl.getinfo(pycurl.OS_ERRNO), curl_message or "")
            response = HTTPResponse(request, 599, error=error)
        else:
            response = HTTPResponse(request, curl.getinfo(pycurl.RESPONSE_CODE))
        curl.reset()
        self._free_list.append(curl)
        info["pieces"].finish(lambda: info["callback"](response))


class _BodyPieces:
    """Hands libcurl's body pieces to the streaming callback, from the event loop.

    libcurl calls ``write`` from inside ``socket_action``, where application code must not
    run (it may abort this very transfer); the pieces are delivered on the next loop turn,
    all that one read brought together. A callback's awaitable holds delivery back, and the
    next ``write`` pauses the transfer until it is done.
    """

    __slots__ = ("client", "curl", "callback", "pieces", "scheduled", "holding", "paused", "on_drained")

    def __init__(self, client: UpstreamHTTPClient, curl: pycurl.Curl, callback: Callable[[bytes], Any]) -> None:
        self.client = client
        self.curl: pycurl.Curl | None = curl  # None once the transfer ended: the handle is reused
        self.callback = callback
        self.pieces: deque[bytes] = deque()
        self.scheduled = False
        self.holding = False
        self.paused = False
        self.on_drained: Callable[[], None] | None = None

    def write(self, piece: bytes) -> int | None:
        if self.holding:
            self.paused = True
            return pycurl.WRITEFUNC_PAUSE  # not consumed: libcurl hands it over again on resume
        self.pieces.append(piece)
        if not self.scheduled:
            self.scheduled = True
            self.client.io_loop.add_callback(self.deliver)
        return None

    def deliver(self) -> None:
        self.scheduled = False
        while self.pieces and not self.holding:
            if len(self.pieces) > 1:  # one read's pieces, in one callback
                self.pieces = deque([b"".join(self.pieces)])
            pending: Awaitable[None] | None = self.callback(self.pieces.popleft())
            if pending is not None:
                self.holding = True
                asyncio.ensure_future(pending).add_done_callback(self._resume)
        if not self.pieces and not self.holding and self.on_drained is not None:
            drained, self.on_drained = self.on_drained, None
            drained()

    def finish(self, then: Callable[[], None]) -> None:
        """The transfer has ended: ``then`` runs once every piece has been delivered."""
        self.curl = None
        self.on_drained = then
        if not self.scheduled:
            self.deliver()

    def _resume(self, future: asyncio.Future) -> None:
        if not future.cancelled():
            future.exception()  # the callback's own business; seen here so none is left unretrieved
        self.holding = False
        self.deliver()
        if self.holding or not self.paused or self.curl is None:
            return
        self.paused = False
        try:
            self.curl.pause(pycurl.PAUSE_CONT)  # may call write() at once with what libcurl kept
        except pycurl.error:
            return  # the transfer failed while paused; _finish reports it
        self.client._set_timeout(0)  # let libcurl go on reading
