"""The streamed turn: PUT /chat, POST /chat/regenerate, PUT /chat/message with ``rerun``.

The turn's commit rules:
- the chat's change (the user's message, or the reply set aside as an alternative) is
  durable (ChatStore.begin_turn) before LM Studio is asked. If it fails, the client gets
  the storage error.
- the assistant's reply (complete, or the part the client saw when the stream was cut) is
  stored exactly once (ChatStore.end_turn), in ``finally``, whatever ended the stream; the
  stream's last word (``[DONE]`` or an error event) reaches the client only after that, so a
  client that reads the chat again when the stream ends finds the reply there. If the reply
  could not be stored, the last word says so instead of ``[DONE]``.
Turns on one chat run one after another, in every process (ChatStore.hold), so none
interleaves or is lost.
"""

from __future__ import annotations

import logging
import secrets

import jsonbytes
from lmstudio import ReplyCollector, UpstreamError
from store import ChatNotFound, StoreError
from store.chatfile import now

from .errors import ApiError
from .relay import LastWord, RelayHandler, error_event, is_event_stream

log = logging.getLogger("chatproxy.turn")

COMPLETIONS_PATH = "/v1/chat/completions"
REQUEST_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}
# What of a stored message LM Studio is sent: never our own keys (reasoning, timings...).
UPSTREAM_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


class TurnHandler(RelayHandler):
    holds_last_word = True

    async def stream_turn(self, name: str, plan: dict) -> None:
        """Change the chat as ``plan`` says (ChatStore.begin_turn), stream LM Studio's reply
        to it and store the reply."""
        self.log_chat = name
        self.take_stream_slot()
        async with self.store.hold(name):
            if self.client_gone:
                return  # left while the previous turn ran: nothing to store or send
            if self._abort_reason is not None:
                raise ApiError(503, "chatproxy is shutting down", {"Retry-After": "5"})
            turn_id = secrets.token_hex(8)
            chat = await self.store.begin_turn(name, plan, {"id": turn_id, "started_at": now()})
            reply = ReplyCollector()
            last_word = None
            try:
                call = self.start_upstream("POST", COMPLETIONS_PATH, jsonbytes.dumps(completion_request(chat)), REQUEST_HEADERS)
                last_word = await self._relay(call, reply)
            finally:
                problem = await self._commit_reply(name, turn_id, reply)
            if last_word is not None:
                # A finished reply that could not be stored must not end as if all were well.
                await self.write_last_word(error_event(problem, "storage") if problem and last_word.complete else last_word.data)

    async def _relay(self, call, reply: ReplyCollector) -> LastWord | None:
        """The stream's last word, held back for after the commit (None: the client left)."""
        head = await self.upstream_head(call)
        if head is None:
            return None
        status, upstream_headers = head
        if status != 200 or not is_event_stream(upstream_headers):
            raise await self.refusal(call, status, upstream_headers)
        last_word = await self.relay_event_stream(call, reply)
        if reply.error is not None:
            self.note_failure(UpstreamError(502, f"LM Studio reported an error mid-reply: {reply.error}", "in_stream"))
        return last_word

    async def _commit_reply(self, name: str, turn_id: str, reply: ReplyCollector) -> str | None:
        """Store the reply and end the turn; the sentence for the client when it could not be."""
        message = reply.message()
        try:
            await self.store.end_turn(name, turn_id, message)
        except ChatNotFound:
            if message is None:
                return None  # nothing was lost
            log.warning("Chat '%s' was deleted during its turn; the reply was not stored", name)
            return f"Chat '{name}' was deleted during its turn; the reply was not stored"
        except StoreError as error:
            log.error("The reply to chat '%s' could not be stored: %s", name, error)
            return f"The reply could not be stored: {error}"
        return None


def completion_request(chat: dict) -> dict:
    """The request to LM Studio: the system prompt first, then the whole current branch."""
    messages = [
        {key: message[key] for key in UPSTREAM_MESSAGE_KEYS if key in message}
        for message in chat["messages"]
        if isinstance(message, dict)
    ]
    system_prompt = chat.get("system_prompt")
    if isinstance(system_prompt, str) and system_prompt.strip():
        messages.insert(0, {"role": "system", "content": system_prompt})
    return {
        "model": chat.get("model"),
        "messages": messages,
        "temperature": chat.get("temperature", 0.7),
        "max_tokens": chat.get("max_tokens", -1),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
