"""ChatStore: the folder engine of the store (engine.py). Async; the file work runs on a thread pool.

Each operation runs ChatFolder's blocking code (folder.py, holds.py) on a few threads at a
lower CPU priority than the event loop. A change to a chat waits for the chat's asyncio
lock first, so changes to one chat reach the files one at a time, in the order they came.
A turn, or a change that must not run beside one, holds the chat (``hold``): across
processes, through a flock, for its whole length. Reads take no lock.
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

from . import names, running
from .engine import Store
from .folder import ChatFolder
from .holds import Holds, TurnFileMissing
from .listing import BY_NAME, HIDE_ARCHIVED
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


def _lower_priority() -> None:
    """Each pool thread's own niceness (Linux sets it per thread), NICENESS above the loop's."""
    with suppress(AttributeError, OSError):  # no per-thread priority outside Linux
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + NICENESS))


class ChatStore(Store):
    engine = "folder"

    def __init__(self, directory: str | os.PathLike) -> None:
        super().__init__()
        self.directory = Path(directory)
        self._folder = ChatFolder(self.directory)
        self._holds = Holds(self._folder)
        self._pool: ThreadPoolExecutor | None = None
        self._change_locks = KeyedLocks()

    def open(self) -> None:
        """Create the folder if missing and clear temp files a killed process left."""
        self._folder.open()

    async def close(self) -> None:
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
        """Cached between changes: 10,000 chats are ~1 MB."""
        return await self._run(self._folder.listing_json, self._holds.is_live, order, archived)

    async def get(self, name: str) -> dict:
        return await self._run(self._read_shown, name)

    async def search(self, query: str, limit: int) -> list[dict]:
        return await self._run(self._folder.search, query, limit)

    async def export_lines(self, chat_names: list[str]) -> bytes:
        return await self._run(self._folder.export_lines, chat_names)

    # -- changes ---------------------------------------------------------------------------

    async def add(self, name: str, chat: dict) -> dict:
        return await self._change(name, self._folder.create, name, chat)

    async def create_unique(self, name: str, chat: dict) -> str:
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

    # -- holding a chat, and its turn -------------------------------------------------------

    @asynccontextmanager
    async def _held(self, name: str) -> AsyncIterator[None]:
        """Through the flock of the chat's turn file (holds.py)."""
        delay = FIRST_RETRY_S
        while True:
            try:
                if self._holds.take(name, make=False):  # never waits on the loop
                    break
            except TurnFileMissing:
                # Made on the pool: making a file waits for the filesystem's journal, which
                # the pool's fsyncs keep busy; the loop only opens files that are there.
                await self._run(self._holds.make_turn_file, name)
                continue
            await asyncio.sleep(delay)  # another process holds it
            delay = min(2 * delay, LAST_RETRY_S)
        try:
            if self._holds.needs_settling(name):
                await self._change(name, self._holds.settle, name)
            yield
        finally:
            self._holds.release(name)

    async def _begin_turn(self, name: str, plan: dict, turn: dict, ready: Callable[[dict], None]) -> None:
        await self._change(name, self._holds.begin_turn, name, plan, turn, ready)

    async def journal_turn(self, name: str, turn_id: object, reply: dict) -> None:
        await self._change(name, self._holds.journal_turn, name, turn_id, reply)

    async def end_turn(self, name: str, turn_id: object, reply: dict | None) -> None:
        await self._change(name, self._holds.end_turn, name, turn_id, reply)

    async def recover(self) -> int:
        return await self._run(self._holds.recover)

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
