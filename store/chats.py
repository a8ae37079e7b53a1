"""ChatStore: what the server knows of storage. Async; the file work runs on a thread pool.

Each operation runs ChatFolder's blocking code (folder.py, holds.py) on a few threads at a
lower CPU priority than the event loop. A change to a chat waits for the chat's asyncio
lock first, so changes to one chat reach the files one at a time, in the order they came.
A turn, or a change that must not run beside one, holds the chat (``hold``): across
processes, for its whole length. Reads take no lock. The chats handed out are shared with
the cache: callers read them, never change them. Errors are the store's own
(store/errors.py), never HTTP ones.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, AsyncIterator, Callable, TypeVar

import jsonbytes

from . import chatfile, history, names, running, titles
from .errors import ChatExists
from .folder import ChatFolder, changed_by
from .holds import Holds
from .index import BY_NAME, HIDE_ARCHIVED
from .locks import KeyedLocks

log = logging.getLogger("chatproxy.store")

T = TypeVar("T")

# File work is fsync-bound: a few threads let writes to different chats overlap.
IO_THREADS = 8
# Below the event loop: when the CPU is short, streams go first and file work waits. Not the
# lowest (19): next to a CPU-bound model on every core, a turn then waited +61 ms for its
# write, against +12 ms at 10; under 1,000 starting turns, 19 and 10 measured alike.
NICENESS = 10
# How often a hold asks again for a chat another process holds: soon at first, then
# every 50 ms (a turn there lasts as long as its model talks).
FIRST_RETRY_S, LAST_RETRY_S = 0.002, 0.05
# A generated name is taken by another chat about once in 65,536 within the same minute.
GENERATED_NAME_TRIES = 5


def _lower_priority() -> None:
    """Each pool thread's own niceness (Linux sets it per thread), NICENESS above the loop's."""
    with suppress(AttributeError, OSError):  # no per-thread priority outside Linux
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + NICENESS))


class ChatStore:
    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._folder = ChatFolder(self.directory)
        self._holds = Holds(self._folder)
        self._pool: ThreadPoolExecutor | None = None
        self._change_locks = KeyedLocks()
        self._hold_locks = KeyedLocks()

    def open(self) -> None:
        """Create the folder if missing and clear temp files a killed process left. Blocking,
        at start-up: a folder that cannot be made stops the server with a clear message."""
        self._folder.open()

    async def start(self) -> None:
        """Ready the store for requests: the turns stopped processes left are finished."""
        await self.recover()

    async def close(self) -> None:
        """Let the writes in flight finish. The store opens again on its next use."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown)
        self._folder.close()

    async def is_writable(self) -> bool:
        return await self._run(self._folder.is_writable)

    # -- reads -----------------------------------------------------------------------------

    async def count_chats(self) -> int:
        return await self._run(self._folder.count)

    async def list_chats_json(self, order: str = BY_NAME, archived: str = HIDE_ARCHIVED) -> bytes:
        """The listing as a JSON array, cached between changes: 10,000 chats are ~1 MB. By name
        (``BY_NAME``), the original server's entries; ``RECENT``: pinned first, newest activity
        first, with titles, damaged files named, and archived chats as ``archived`` says
        (``HIDE_ARCHIVED``, ``WITH_ARCHIVED``, ``ONLY_ARCHIVED``). A chat whose turn is live
        carries ``"running": true``."""
        return await self._run(self._folder.listing_json, self._holds.is_live, order, archived)

    async def list_chats(self) -> list[dict]:
        return jsonbytes.loads(await self.list_chats_json())

    async def get(self, name: str) -> dict:
        """The chat; ``running_turn`` in it only while that turn is live."""
        return await self._run(self._read_shown, name)

    async def branches(self, name: str) -> list[dict]:
        return history.branches(await self._run(self._folder.read, name))

    async def search(self, query: str, limit: int) -> list[dict]:
        """Chats whose name or messages hold every word of ``query``, best first, with a snippet."""
        return await self._run(self._folder.search, query, limit)

    async def export_lines(self, chat_names: list[str]) -> bytes:
        """NDJSON, one ``{"name", "chat"}`` line per chat named that still exists."""
        return await self._run(self._folder.export_lines, chat_names)

    # -- changes ---------------------------------------------------------------------------

    async def create(self, name: str, model: str, temperature: float, max_tokens: int) -> dict:
        return await self._change(name, self._folder.create, name, chatfile.new_chat(model, temperature, max_tokens))

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

    async def create_unique(self, name: str, chat: dict) -> str:
        """Create ``chat`` under ``name`` or, if taken, ``name (2)``...; returns the name used."""
        return await self._run(self._folder.create_unique, name, chat)

    async def delete(self, name: str) -> None:
        await self._change(name, self._delete, name)

    async def rename(self, name: str, new_name: str) -> None:
        first, second = sorted((names.stem_for(name), names.stem_for(new_name)))
        async with self._change_locks.hold(first):
            if second == first:
                return
            async with self._change_locks.hold(second):
                await self._run(self._rename, name, new_name)

    async def update_settings(self, name: str, changes: dict[str, Any]) -> dict:
        """Set the given keys; a None value removes the key (e.g. clears the system prompt)."""
        return await self._update(name, changed_by(chatfile.apply_settings, changes))

    async def set_model_title(self, name: str, title: str) -> bool:
        """The model's title for the chat, unless the chat's title is no longer the first
        message's (the user set one meanwhile); whether it was set."""
        if not titles.model_may_improve(await self.get(name)):
            return False  # no write: the chat's activity time stays as it is
        chat = await self._update(name, changed_by(titles.set_by_model, title))
        return chat.get(titles.TITLE) == title

    async def edit_message(self, name: str, index: int, content: str) -> dict:
        return await self._update(name, changed_by(history.edit, index, content))

    async def switch_branch(self, name: str, index: int, alternative: int) -> dict:
        return await self._update(name, changed_by(history.switch, index, alternative))

    async def remove_message(self, name: str, index: int) -> dict:
        """Remove the message at ``index``; returns it."""
        return await self._update(name, lambda chat: history.remove(chat, index))

    # -- holding a chat, and its turn -------------------------------------------------------

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """Hold the chat for a whole turn or change: one holder at a time across every process
        on the folder, in arrival order within this one. A turn a stopped process left on
        the chat is finished first (its journaled reply stored, interrupted)."""
        async with self._hold_locks.hold(names.stem_for(name)):
            if not self._holds.has_turn_file(name):
                # Made on the pool: making a file waits for the filesystem's journal, which
                # the pool's fsyncs keep busy; the loop only opens files that are there.
                await self._run(self._holds.make_turn_file, name)
            delay = FIRST_RETRY_S
            while not self._holds.take(name):  # never waits on the loop: another process holds it
                await asyncio.sleep(delay)
                delay = min(2 * delay, LAST_RETRY_S)
            try:
                if self._holds.needs_settling(name):
                    await self._change(name, self._holds.settle, name)
                yield
            finally:
                self._holds.release(name)

    async def begin_turn(self, name: str, plan: dict, turn: dict) -> tuple[dict, Awaitable[None]]:
        """Inside ``hold``: change the chat for a new reply (``plan``: ``{"append": message}``,
        ``{"rerun": [index, text]}`` or ``{"regenerate": True}``) and mark it running with
        ``turn`` (at least ``id`` and ``started_at``), in one durable write.

        Returns the changed chat as soon as it is known, and an awaitable that ends once it is
        on disk (or raises the storage error): the caller asks LM Studio meanwhile, relays
        nothing before it, and must await it."""
        loop = asyncio.get_running_loop()
        known: asyncio.Future[dict] = loop.create_future()

        def ready(chat: dict) -> None:  # on the pool's thread, before the write
            loop.call_soon_threadsafe(lambda: known.done() or known.set_result(chat))

        def failed_first(done: asyncio.Future) -> None:  # the change refused: no chat to know
            if not known.done() and not done.cancelled() and done.exception() is not None:
                known.set_exception(done.exception())

        durable = asyncio.ensure_future(self._change(name, self._holds.begin_turn, name, plan, turn, ready))
        durable.add_done_callback(failed_first)
        return await known, durable

    async def journal_turn(self, name: str, turn_id: object, reply: dict) -> None:
        """Inside ``hold``: the reply so far, where a restart finds it (not fsynced: cheap)."""
        await self._change(name, self._holds.journal_turn, name, turn_id, reply)

    async def end_turn(self, name: str, turn_id: object, reply: dict | None) -> None:
        """Inside ``hold``: store ``reply`` (if any) and unmark the chat, in one durable write.
        ChatNotFound if the chat was deleted during the turn."""
        await self._change(name, self._holds.end_turn, name, turn_id, reply)

    async def recover(self) -> int:
        """Finish every turn stopped processes left on the folder; how many there were."""
        return await self._run(self._holds.recover)

    def turn_waiters(self, name: str) -> int:
        """How many requests hold or wait to hold the chat (the tests watch it)."""
        return self._hold_locks.users(names.stem_for(name))

    # -- internals -------------------------------------------------------------------------

    async def _run(self, function: Callable[..., T], *arguments: Any) -> T:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="chatstore", initializer=_lower_priority)
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *arguments)

    async def _change(self, name: str, function: Callable[..., T], *arguments: Any) -> T:
        async with self._change_locks.hold(names.stem_for(name)):
            return await self._run(function, *arguments)

    async def _update(self, name: str, change: Callable[[dict], T]) -> T:
        return await self._change(name, self._folder.update, name, change)

    def _read_shown(self, name: str) -> dict:
        chat = self._folder.read(name)
        if running.MARKER in chat:
            chat = running.shown(chat, self._holds.is_live(names.file_name_for(name)))
        return chat

    def _delete(self, name: str) -> None:
        self._folder.delete(name)
        self._holds.discard(name)

    def _rename(self, name: str, new_name: str) -> None:
        self._folder.rename(name, new_name)
        self._holds.discard(name)
