"""Starting, attaching to and stopping turns (turns/): the HTTP side of server-owned replies.

- ``run_turn``: what PUT /chat, POST /chat/regenerate and PUT /chat/message with ``rerun``
  do: start a turn and watch it from its first event; an LM Studio refusal or a storage
  error before it streams is an ordinary JSON error.
- GET /chat/stream: attach to the chat's running turn (a snapshot, or the events after
  ``Last-Event-ID`` / ``?after=``); 204 when none runs.
- POST /chat/stop: end the running turn; answers once the part written so far is stored.
Both are passed on to the process that runs the turn when it is another (handlers/peers.py).
"""

from __future__ import annotations

from lmstudio import UpstreamError
from turns import StarterLeft, Stopped

from . import params
from .base import BaseHandler
from .errors import ApiError
from .peers import owner_elsewhere, pass_on
from .watch import watch


async def run_turn(handler: BaseHandler, name: str, plan: dict, body: dict) -> None:
    """Start a turn on chat ``name`` and show it on ``handler``'s response. Unless the body
    says ``"detach": true`` (or ``stream.on_disconnect`` is ``continue``), the client
    leaving stops the turn, and the part written so far is stored."""
    detach = params.optional_flag(body, "detach")
    if detach is None:
        detach = handler.config.on_disconnect == "continue"
    handler.log_chat = name
    turn = handler.services.turns.start(name, plan, detach=detach, route=handler.route)
    handler.when_client_leaves(turn.starter_left)
    try:
        await turn.accepted
    except StarterLeft:
        return  # nobody to answer
    except Stopped:
        pass  # stopped before it streamed: the last word says so, as to every watcher
    except Exception as error:
        # Refused (LM Studio's error, a storage fault): answered once the turn has ended, so
        # that the chat read next is no longer marked running.
        await turn.finished.wait()
        if isinstance(error, UpstreamError):
            raise ApiError(error.status, error.message) from None
        raise
    handler.upstream_ms = turn.upstream_ms
    await watch(handler, turn)


class StreamHandler(BaseHandler):
    """GET /chat/stream?name=: the chat's running turn, from a snapshot of everything so far
    (or from the event after ``Last-Event-ID`` / ``?after=SEQ``) to its last word."""

    route = "/chat/stream"

    async def get(self) -> None:
        name = self.chat_name_argument()
        after = self._after()
        turn = self.services.turns.current(name)
        if turn is not None:
            await watch(self, turn, after or 0, snapshot=after is None)
            return
        owner = owner_elsewhere(self, await self.store.get(name))  # unknown chat: 404
        if owner is not None:
            await pass_on(self, owner)
            return
        self.set_status(204)
        self.finish()

    def _after(self) -> int | None:
        value = self.text_argument("after")
        source = "'after'"
        if value is None:
            value, source = self.request.headers.get("Last-Event-ID"), "The Last-Event-ID header"
        if value is None:
            return None
        value = value.strip()
        if not (value.isascii() and value.isdigit()):
            raise ApiError(400, f"{source} must be the number of an event (a whole number from 0)")
        return int(value)


class StopHandler(BaseHandler):
    """POST /chat/stop ``{name}``: end the chat's running turn. LM Studio's request is
    closed at once; the answer comes once the part written so far is stored."""

    route = "/chat/stop"

    async def post(self) -> None:
        name = self.chat_name(self.json_body())
        turn = self.services.turns.current(name)
        if turn is None:
            owner = owner_elsewhere(self, await self.store.get(name))
            if owner is None:
                raise ApiError(409, f"No turn is running on chat '{name}'")
            await pass_on(self, owner)
            return
        turn.stop(Stopped())
        await turn.finished.wait()
        self.success(message=f"The turn on chat '{name}' was stopped; the reply so far is stored")
