"""Store: the async interface the server calls, whichever engine keeps the chats.

Two engines implement it: the folder (chats.ChatStore: one JSON file per chat, the default)
and PostgreSQL (postgres/engine.PostgresStore: several instances on one database). Each
operation is declared here once, with what it promises; an engine says only how. Both apply
the same rules to a chat (chatfile.py, history.py, running.py), so they give the same
answers. The chats handed out may be shared with a cache: callers read them, never change
them. Errors are the store's own (errors.py), never HTTP ones.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, ClassVar, TypeVar

import jsonbytes

from . import chatfile, history, names, titles
from .errors import ChatExists
from .listing import BY_NAME, HIDE_ARCHIVED
from .locks import KeyedLocks

T = TypeVar("T")

# A generated name is taken by another chat about once in 65,536 within the same minute.
GENERATED_NAME_TRIES = 5


class Store(ABC):
    engine: ClassVar[str]  # "folder" or "postgresql": for /health and the logs

    def __init__(self) -> None:
        self._hold_locks = KeyedLocks()

    # -- life ------------------------------------------------------------------------------

    def open(self) -> None:
        """Blocking, at start-up: make sure the chats can be kept (a folder made, a database
        reached and its schema brought up to date); StoreError with one line if not."""

    async def start(self) -> None:
        """Ready the store for requests: the turns stopped processes left are finished."""
        await self.recover()

    @abstractmethod
    async def close(self) -> None:
        """Let the writes in flight finish. The store opens again on its next use."""

    @abstractmethod
    async def is_writable(self) -> bool:
        """Whether a change can be stored now."""

    async def health(self) -> dict:
        """For GET /health: the engine, and whether a change can be stored now (and if not, why)."""
        return {"engine": self.engine, "writable": await self.is_writable()}

    # -- reads -----------------------------------------------------------------------------

    @abstractmethod
    async def count_chats(self) -> int: ...

    @abstractmethod
    async def list_chats_json(self, order: str = BY_NAME, archived: str = HIDE_ARCHIVED) -> bytes:
        """The listing as a JSON array. By name (``BY_NAME``, by code point), the original
        server's entries; ``RECENT``: pinned first, newest activity first, with titles,
        damaged files named, and archived chats as ``archived`` says (``HIDE_ARCHIVED``,
        ``WITH_ARCHIVED``, ``ONLY_ARCHIVED``). A chat whose turn is live carries
        ``"running": true``."""

    async def list_chats(self) -> list[dict]:
        return jsonbytes.loads(await self.list_chats_json())

    @abstractmethod
    async def get(self, name: str) -> dict:
        """The chat; ``running_turn`` in it only while that turn is live."""

    async def branches(self, name: str) -> list[dict]:
        return history.branches(await self.get(name))

    @abstractmethod
    async def search(self, query: str, limit: int) -> list[dict]:
        """Chats whose name or messages hold every word of ``query`` (the last word as a
        prefix), best first, with a snippet."""

    @abstractmethod
    async def export_lines(self, chat_names: list[str]) -> bytes:
        """NDJSON, one ``{"name", "chat"}`` line per chat named that still exists."""

    # -- changes ---------------------------------------------------------------------------

    async def create(self, name: str, model: str, temperature: float, max_tokens: int) -> dict:
        return await self.add(name, chatfile.new_chat(model, temperature, max_tokens))

    @abstractmethod
    async def add(self, name: str, chat: dict) -> dict:
        """Store ``chat`` (any chat: a new one, a migration's) under ``name`` as it is;
        ChatExists if taken. Returns the chat stored."""

    async def create_named(self, model: str, temperature: float, max_tokens: int) -> tuple[str, dict]:
        """Create a chat under a name of its own (names.generated); returns the name and the chat."""
        tries = GENERATED_NAME_TRIES
        while True:
            name = names.generated()
            try:
                return name, await self.create(name, model, temperature, max_tokens)
            except ChatExists:
                tries -= 1
                if not tries:
                    raise

    @abstractmethod
    async def create_unique(self, name: str, chat: dict) -> str:
        """Create ``chat`` under ``name`` or, if taken, ``name (2)``...; returns the name used."""

    @abstractmethod
    async def delete(self, name: str) -> None: ...

    @abstractmethod
    async def rename(self, name: str, new_name: str) -> None:
        """ChatExists if another chat has ``new_name``."""

    async def update_settings(self, name: str, changes: dict[str, Any]) -> dict:
        """Set the given keys; a None value removes the key (e.g. clears the system prompt)."""
        return await self._update(name, chatfile.changed_by(chatfile.apply_settings, changes))

    async def set_model_title(self, name: str, title: str) -> bool:
        """The model's title for the chat, unless the chat's title is no longer the first
        message's (the user set one meanwhile); whether it was set."""
        if not titles.model_may_improve(await self.get(name)):
            return False  # no write: the chat's activity time stays as it is
        chat = await self._update(name, chatfile.changed_by(titles.set_by_model, title))
        return chat.get(titles.TITLE) == title

    async def edit_message(self, name: str, index: int, content: str) -> dict:
        return await self._update(name, chatfile.changed_by(history.edit, index, content))

    async def switch_branch(self, name: str, index: int, alternative: int) -> dict:
        return await self._update(name, chatfile.changed_by(history.switch, index, alternative))

    async def remove_message(self, name: str, index: int) -> dict:
        """Remove the message at ``index``; returns it."""
        return await self._update(name, lambda chat: history.remove(chat, index))

    @abstractmethod
    async def _update(self, name: str, change: Callable[[dict], T]) -> T:
        """Let ``change`` change the chat as stored now (and answer), and store it with a new
        ``updated_at``; one change to a chat at a time."""

    # -- holding a chat, and its turn -------------------------------------------------------

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """Hold the chat for a whole turn or change: one holder at a time across every process
        on the store, in arrival order within this one. A turn a stopped process left on
        the chat is finished first (its journaled reply stored, interrupted)."""
        async with self._hold_locks.hold(names.stem_for(name)), self._held(name):
            yield

    @abstractmethod
    def _held(self, name: str) -> AbstractAsyncContextManager[None]:
        """Hold the chat against other processes, once this one's earlier holders let go."""

    async def begin_turn(self, name: str, plan: dict, turn: dict) -> tuple[dict, Awaitable[None]]:
        """Inside ``hold``: change the chat for a new reply (``plan``: ``{"append": message}``,
        ``{"rerun": [index, text]}`` or ``{"regenerate": True}``) and mark it running with
        ``turn`` (at least ``id`` and ``started_at``), in one durable write.

        Returns the changed chat as soon as it is known, and an awaitable that ends once it is
        durable (or raises the storage error): the caller asks LM Studio meanwhile, relays
        nothing before it, and must await it."""
        loop = asyncio.get_running_loop()
        known: asyncio.Future[dict] = loop.create_future()

        def ready(chat: dict) -> None:  # from any thread
            loop.call_soon_threadsafe(lambda: known.done() or known.set_result(chat))

        durable = asyncio.ensure_future(self._begin_turn(name, plan, turn, ready))
        await asyncio.wait([known, durable], return_when=asyncio.FIRST_COMPLETED)
        if not known.done():
            durable.result()  # the error that came before the chat was known
        return known.result(), durable

    @abstractmethod
    async def _begin_turn(self, name: str, plan: dict, turn: dict, ready: Callable[[dict], None]) -> None:
        """``ready`` gets the changed chat before it is written; returning means it is durable."""

    @abstractmethod
    async def journal_turn(self, name: str, turn_id: object, reply: dict) -> None:
        """Inside ``hold``: the reply so far, where a restart finds it. Cheap, not waited on to
        reach the disk (a kill of chatproxy loses nothing by it); about once a second."""

    @abstractmethod
    async def end_turn(self, name: str, turn_id: object, reply: dict | None) -> None:
        """Inside ``hold``: store ``reply`` (if any) and unmark the chat, in one durable write;
        the journal cleared. ChatNotFound if the chat was deleted during the turn."""

    @abstractmethod
    async def recover(self) -> int:
        """Finish every turn stopped processes left (their journaled replies stored,
        interrupted); how many there were."""

    def turn_waiters(self, name: str) -> int:
        """How many requests of this process hold or wait to hold the chat (the tests watch it)."""
        return self._hold_locks.users(names.stem_for(name))
