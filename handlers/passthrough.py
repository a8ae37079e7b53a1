"""/v1/...: the upstreams' OpenAI-compatible API through chatproxy, nothing stored.

Any method and path under /v1/ goes to ``{url}/v1/...`` of the upstream that offers the
body's ``model`` (Upstreams.open: routing, and failover before the answer starts), with its
body and the end-to-end headers; the answer comes back with its status, headers and body.
An event stream goes through the same relay as PUT /chat (whole events, keep-alive, abort
when the client leaves); anything else is passed on piece by piece as it arrives. The
upstream's own errors (including LM Studio's 200 with an ``error`` body for unknown routes)
are passed on as they are, so OpenAI clients see the error bodies they expect. With several
upstreams, ``GET /v1/models`` is answered here: every upstream's list in one.
"""

from __future__ import annotations

from tornado.httputil import HTTPHeaders

from lmstudio import ClientGone, UpstreamError

from .errors import ApiError
from .relay import RelayHandler, is_event_stream

# RFC 9110 section 7.6.1, plus what Tornado computes for us (Host, Content-Length) and what
# would make LM Studio compress what we must parse (Accept-Encoding).
HOP_BY_HOP = frozenset(
    name.lower()
    for name in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
        "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "Accept-Encoding",
    )
)
# Response headers Tornado sets itself, or that no longer hold for what we send (CORS is
# chatproxy's own policy, not LM Studio's).
NOT_PASSED_BACK = HOP_BY_HOP | {"content-encoding", "date", "server", "x-request-id"}


def passed_back(name: str) -> bool:
    lowered = name.lower()
    return lowered not in NOT_PASSED_BACK and not lowered.startswith("access-control-")


class PassthroughHandler(RelayHandler):
    route = "/v1/*"
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    async def forward(self, path: str) -> None:
        upstreams = self.services.upstreams
        if path == "models" and self.request.method == "GET" and len(upstreams) > 1:
            self.send_json(await upstreams.model_list())
            return
        self.take_stream_slot()
        upstream_path = "/v1/" + path + (f"?{self.request.query}" if self.request.query else "")
        body = self.body if self.request.method in ("POST", "PUT", "PATCH") else None
        call = self.start_upstream(upstreams.open(self.request.method, upstream_path, body, self._headers_to_send()))
        head = await self.upstream_head(call)
        if head is None:
            return
        status, headers = head
        if status == 200 and is_event_stream(headers):
            await self.relay_event_stream(call)
            return
        self.set_status(status)
        self.clear_header("Content-Type")  # Tornado's default (text/html); the upstream's own follows
        for name, value in headers.get_all():
            if passed_back(name):
                self.add_header(name, value)
        relayed = False

        def relay_piece(piece: bytes):
            nonlocal relayed
            relayed = True
            self._write_counted(piece)
            return self._flush_unless_keeping_up(call)

        try:
            await call.attach(relay_piece)
            await call.finished()
        except ClientGone:
            return
        except UpstreamError as error:
            self.note_failure(error)
            if not relayed:
                raise ApiError(error.status, error.message) from None
            self.request.connection.close()  # a cut body must not end like a whole one

    get = head = post = put = patch = delete = forward

    def _headers_to_send(self) -> HTTPHeaders:
        headers = HTTPHeaders()
        for name, value in self.request.headers.get_all():
            lowered = name.lower()
            if lowered in HOP_BY_HOP or lowered == "origin":
                continue
            if lowered == "authorization" and self.config.token is not None:
                continue  # chatproxy's own token is not LM Studio's business
            headers.add(name, value)
        return headers
