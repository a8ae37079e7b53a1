"""When another chatproxy process runs the chat's turn: pass the request on to it.

Several processes may serve one set of chats (``--workers``, two instances on one folder or
one PostgreSQL). A turn lives in the process that started it, and the chat's running mark
names that process (``running_turn.owner``: the address it takes such requests at). GET
/chat/stream and POST /chat/stop that reach another process are passed on to the owner,
and its answer is passed back: the events whole, with their ids, the errors as they are.
"""

from __future__ import annotations

import logging

from lmstudio import ClientGone, Upstream, UpstreamError, UpstreamHTTPClient
from lmstudio.sse import KEEP_ALIVE, SSEDecoder, encode_event

from .errors import ApiError
from .watch import Heartbeat, retrieve, start_event_stream

log = logging.getLogger("chatproxy.stream")

# A peer is another chatproxy: it answers at once, and a stream from it has heartbeats.
PEER_CONNECT_TIMEOUT_S = 5.0
PEER_IDLE_TIMEOUT_S = 300.0
PASSED_ON_HEADERS = ("Last-Event-ID", "Authorization", "Content-Type")


class Peers:
    """Each peer address as an Upstream, all on one HTTP client made when first needed."""

    def __init__(self) -> None:
        self._clients: dict[str, Upstream] = {}
        self._http: UpstreamHTTPClient | None = None

    def client(self, address: str) -> Upstream:
        if address not in self._clients:
            if self._http is None:
                self._http = UpstreamHTTPClient(force_instance=True, max_clients=1000)
            who = f"The chatproxy process at {address}"
            self._clients[address] = Upstream(address, address, self._http, PEER_CONNECT_TIMEOUT_S, PEER_IDLE_TIMEOUT_S, who=who)
        return self._clients[address]

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


def owner_elsewhere(handler, chat: dict) -> str | None:
    """The address of the process that runs the chat's turn, if that is not this one."""
    running = chat.get("running_turn")
    owner = running.get("owner") if isinstance(running, dict) else None
    return owner if isinstance(owner, str) and owner != handler.services.owner else None


async def pass_on(handler, owner: str) -> None:
    """Send ``handler``'s request to ``owner`` and its answer back."""
    headers = {name: handler.request.headers[name] for name in PASSED_ON_HEADERS if name in handler.request.headers}
    path = handler.request.uri
    call = handler.services.peers.client(owner).open(handler.request.method, path, handler.body or None, headers)
    handler.when_client_leaves(lambda: call.abort(ClientGone()))
    try:
        status, answer_headers = await call.head()
    except UpstreamError as error:
        log.warning("The chatproxy that runs this turn (%s) did not answer: %s", owner, error.message)
        raise ApiError(502, f"The chatproxy process that runs this turn ({owner}) did not answer") from None
    except ClientGone:
        return
    if status == 200 and answer_headers.get("Content-Type", "").startswith("text/event-stream"):
        await _relay_events(handler, call)
        return
    handler.set_status(status)
    if "Content-Type" in answer_headers:
        handler.set_header("Content-Type", answer_headers["Content-Type"])
    handler.finish(await call.read_body(1 << 20))


async def _relay_events(handler, call) -> None:
    start_event_stream(handler)
    decoder = SSEDecoder()
    heartbeat = Heartbeat(lambda: send(KEEP_ALIVE), handler.config.heartbeat)

    def send(data: bytes) -> None:
        handler.write(data)
        handler.flush().add_done_callback(retrieve)
        heartbeat.wrote()

    def relay(piece: bytes) -> None:
        events = decoder.feed(piece)  # whole events only; the owner's keep-alives are its own
        if events:
            send(b"".join(encode_event(event) for event in events))

    try:
        await call.attach(relay)
        await call.finished()
    except (ClientGone, UpstreamError):
        handler.request.connection.close()  # a cut stream must not end like a whole one
        return
    finally:
        heartbeat.stop()
    handler.finish()
