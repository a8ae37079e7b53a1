"""TitleWriter: the model's title for a chat, asked in the background after its first reply.

A chat's first turn names it after the first line of its question (store/titles.py). Once
that turn's reply is stored, the chat's model is asked, in one short non-streamed request,
for a few words that say what the conversation is about; its reasoning is taken out and the
rest becomes the title, unless the user has set one meanwhile. Nobody waits for it: a
failure (LM Studio refuses, is slow, answers nothing usable, the chat was deleted) is logged
and the title from the message stays.
"""

from __future__ import annotations

import asyncio
import logging

import jsonbytes
from lmstudio import UpstreamError
from lmstudio.reply import split_reasoning
from store import StoreError, titles

log = logging.getLogger("chatproxy.titles")

# What the model reads: the start of the question and of the answer are enough to name them.
EXCERPT_CHARS = 1500
PROMPT = (
    "Write a title of at most six words for the conversation below. Answer with the title "
    "only: no quotes, no punctuation at the end.\n\nUser: {question}\n\nAssistant: {answer}"
)
# Room for a reasoning model to think a little before it answers; the title itself is short.
MAX_TOKENS = 256
# LM Studio may be answering someone else first; after this the message's title stays.
TIMEOUT_S = 120.0
ANSWER_LIMIT = 64 * 1024
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class TitleWriter:
    def __init__(self, store, upstreams, enabled: bool = True) -> None:
        self._store = store
        self._upstreams = upstreams
        self.enabled = enabled
        self._tasks: set[asyncio.Task] = set()

    def after_reply(self, name: str, chat: dict, reply: dict | None) -> None:
        """A turn on ``chat`` (as it began) stored ``reply``: ask for a title if it is the
        chat's first reply and the title is still the message's."""
        if not self.enabled or reply is None or not titles.wants_model_title(chat):
            return
        question = next(message["content"] for message in chat["messages"] if message.get("role") == "user")
        task = asyncio.ensure_future(self._improve(name, chat.get("model"), question, reply.get("content") or ""))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        """How many titles are being asked for (the tests wait for none)."""
        return len(self._tasks)

    async def close(self) -> None:
        """At shutdown: the titles still being asked for are given up."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _improve(self, name: str, model: object, question: str, answer: str) -> None:
        try:
            title = await self._ask(model, question, answer)
            if not await self._store.set_model_title(name, title):
                log.info("Chat '%s': kept the title the user set over the model's %r", name, title)
        except (UpstreamError, StoreError, ValueError, TimeoutError) as error:
            log.warning("Chat '%s': the model's title could not be had (the first message's stays): %s", name, error)

    async def _ask(self, model: object, question: str, answer: str) -> str:
        prompt = PROMPT.format(question=question[:EXCERPT_CHARS], answer=answer[:EXCERPT_CHARS])
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0.3, "max_tokens": MAX_TOKENS, "stream": False}
        call = self._upstreams.open_chat(model if isinstance(model, str) else None, body, JSON_HEADERS)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                status, headers = await call.head()
                if status != 200:
                    raise await call.refusal(status, headers)
                data = await call.read_body(ANSWER_LIMIT)
        except TimeoutError:
            call.abort(TimeoutError())
            raise TimeoutError(f"{call.who} did not answer within {TIMEOUT_S:g} s") from None
        return title_in(data)


def title_in(data: bytes) -> str:
    """The title in a chat completion's body; ValueError if there is none."""
    try:
        content = jsonbytes.loads(data)["choices"][0]["message"]["content"]
    except (ValueError, LookupError, TypeError):
        raise ValueError(f"LM Studio's answer is not a chat completion: {data[:200]!r}") from None
    title = titles.from_model(split_reasoning(content)[0]) if isinstance(content, str) else None
    if title is None:
        raise ValueError("the model's answer held no title")
    return title
