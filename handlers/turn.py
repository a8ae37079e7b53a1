"""PUT /chat: one turn of a conversation, streamed and then persisted.

The turn's single commit rule: the user's message is on disk before LM Studio is asked;
the assistant's reply (complete, or the part the client saw when the stream was cut) is
appended exactly once, in ``finally``, whatever ended the stream. Turns on one chat run one
after another in arrival order (ChatStore.turn), so none interleaves or is lost.
"""

from __future__ import annotations

import logging

import jsonbytes

from store import ChatNotFound

from lmstudio import UpstreamError
from lmstudio.sse import Event

from . import params
from .errors import ApiError
from .relay import RelayHandler, is_event_stream

log = logging.getLogger("chatproxy.turn")

COMPLETIONS_PATH = "/v1/chat/completions"


class ReplyCollector:
    """Accumulates ``choices[0].delta.content`` of chat.completion.chunk events.

    Keeps a list of pieces (joined once at the end), so a long reply costs no copy per
    event. Chunks without choices (usage) and reasoning deltas are relayed but not kept.
    """

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.error: str | None = None

    def __call__(self, event: Event) -> bool:
        """Keep the event's content; true when the event is LM Studio's last word."""
        try:
            chunk = jsonbytes.loads(event.data)  # a lone surrogate escape too: orjson refuses it
        except ValueError:
            raise UpstreamError(502, "LM Studio sent an event that is not JSON", "bad_stream") from None
        if not isinstance(chunk, dict):
            raise UpstreamError(502, "LM Studio sent an event that is not a JSON object", "bad_stream")
        if "error" in chunk:
            # OpenAI's in-stream error format (LM Studio 0.3.18+): relayed as it is, and
            # nothing comes after it.
            error = chunk["error"]
            self.error = str(error.get("message", error) if isinstance(error, dict) else error)
            return True
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            return False
        delta = choices[0].get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str):
                self.pieces.append(content)
        return False

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class ChatTurnHandler(RelayHandler):
    async def put(self) -> None:
        body = self.json_body()
        name = self.log_chat = params.text(body, "name")
        message = params.message(body, self.config.max_message_size)
        self.take_stream_slot()
        async with self.store.turn(name):
            if self.client_gone:
                return  # left while the previous turn ran: nothing to store or send
            if self._abort_reason is not None:
                raise ApiError(503, "chatproxy is shutting down", {"Retry-After": "5"})
            chat = await self.store.append(name, [message])
            reply = ReplyCollector()
            try:
                await self._ask(chat, reply)
            finally:
                await self._commit_reply(name, reply.text)

    async def _ask(self, chat: dict, reply: ReplyCollector) -> None:
        body = jsonbytes.dumps(_completion_request(chat))  # the whole history, every turn
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        opened = await self.open_upstream("POST", COMPLETIONS_PATH, body, headers)
        if opened is None:
            return
        call, status, upstream_headers = opened
        if status != 200 or not is_event_stream(upstream_headers):
            raise await self.refusal(call, status, upstream_headers)
        await self.relay_event_stream(call, reply)
        if reply.error is not None:
            self.note_failure(UpstreamError(502, f"LM Studio reported an error mid-reply: {reply.error}", "in_stream"))

    async def _commit_reply(self, name: str, text: str) -> None:
        if not text:
            return
        try:
            await self.store.add(name, [{"role": "assistant", "content": text}])
        except ChatNotFound:
            log.warning("Chat '%s' was deleted during its turn; the reply was not stored", name)


def _completion_request(chat: dict) -> dict:
    return {
        "model": chat.get("model"),
        "messages": chat["messages"],
        "temperature": chat.get("temperature", 0.7),
        "max_tokens": chat.get("max_tokens", -1),
        "stream": True,
    }
