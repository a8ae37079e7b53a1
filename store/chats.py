"""ChatStore: what the server knows of storage. Async; the files are the worker's business.

Each operation goes to the store's worker process (worker.py), which does the file work
(folder.py). Here, a change to a chat waits for the chat's asyncio lock first, so changes
to one chat reach the worker one at a time, in the order they came; a whole turn holds
the chat's turn lock as well. Reads take no lock. Errors are the store's own
(store/errors.py), never HTTP ones.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Sequence

import jsonbytes

from . import chatfile, files, names
from .locks import KeyedLocks
from .worker import StoreWorker


class ChatStore:
    def __init__(self, directory: str | os.PathLike, log_format: str = "text", worker_command: Sequence[str] | None = None) -> None:
        self.directory = Path(directory)
        self._worker = StoreWorker(self.directory, log_format, worker_command)
        self._file_locks = KeyedLocks()
        self._turn_locks = KeyedLocks()

    def open(self) -> None:
        """Create the folder if missing. Blocking, at start-up, in this process: a folder that
        cannot be created stops the server with a clear message. The worker, as it starts,
        clears the temp files a killed process left (ChatFolder.open)."""
        os.makedirs(os.path.join(self.directory, files.LOCK_DIR), exist_ok=True)

    async def start(self) -> None:
        """Start the worker process now (the server does, so no request waits for it)."""
        await self._worker.start()

    async def close(self) -> None:
        """Let the worker finish the writes in flight, then stop it."""
        await self._worker.close()

    @property
    def worker_pid(self) -> int | None:
        return self._worker.pid

    async def is_writable(self) -> bool:
        return await self._worker.call("is_writable")

    # -- reads -----------------------------------------------------------------------------

    async def count_chats(self) -> int:
        """How many good chats the folder holds (the listing is counted where it is kept)."""
        return await self._worker.call("count")

    async def list_chats_json(self) -> bytes:
        """The listing as a JSON array, cached between changes: 10,000 chats are ~1 MB."""
        return await self._worker.call("listing_json")

    async def get(self, name: str) -> dict:
        names.file_name_for(name)  # a bad name is refused here, without a trip to the worker
        return await self._worker.call("read", name)

    async def branches(self, name: str) -> list[dict]:
        names.file_name_for(name)
        return await self._worker.call("branches", name)

    async def search(self, query: str, limit: int) -> list[dict]:
        """Chats whose name or messages hold every word of ``query``, best first, with a snippet."""
        return await self._worker.call("search", query, limit)

    async def export_lines(self, chat_names: list[str]) -> bytes:
        """NDJSON, one ``{"name", "chat"}`` line per chat named that still exists."""
        return await self._worker.call("export_lines", chat_names)

    async def list_chats(self) -> list[dict]:
        return jsonbytes.loads(await self.list_chats_json())

    # -- changes ---------------------------------------------------------------------------

    async def create(self, name: str, model: str, temperature: float, max_tokens: int) -> dict:
        return await self._locked("create", name, chatfile.new_chat(model, temperature, max_tokens))

    async def delete(self, name: str) -> None:
        await self._locked("delete", name)

    async def append(self, name: str, messages: list[dict]) -> dict:
        """Append ``messages`` to the chat as it is on disk now; returns the updated chat."""
        return await self._locked("append", name, messages)

    async def create_unique(self, name: str, chat: dict) -> str:
        """Create ``chat`` under ``name`` or, if taken, ``name (2)``...; returns the name used."""
        return await self._worker.call("create_unique", name, chat)

    async def begin_turn(self, name: str, plan: dict) -> tuple[dict, Awaitable[None]]:
        """Change the chat for a new reply (see ChatFolder.begin_turn): returns the changed
        chat as soon as it is known, and an awaitable that ends once it is on disk (or
        raises the storage error); the caller must await it.

        The chat's lock here is released at the early answer: the worker's thread holds the
        chat's flock from before that answer until the write is durable, so a change sent
        meanwhile waits for it there, and the next one waits here behind that."""
        async with self._file_locks.hold(names.stem_for(name)):
            return await self._worker.call_early("begin_turn", name, plan)

    async def edit_message(self, name: str, index: int, content: str) -> dict:
        return await self._locked("edit_message", name, index, content)

    async def switch_branch(self, name: str, index: int, alternative: int) -> dict:
        return await self._locked("switch_branch", name, index, alternative)

    async def update_settings(self, name: str, changes: dict[str, Any]) -> dict:
        return await self._locked("update_settings", name, changes)

    async def rename(self, name: str, new_name: str) -> None:
        first, second = sorted((names.stem_for(name), names.stem_for(new_name)))
        async with self._file_locks.hold(first):
            if second == first:
                return
            async with self._file_locks.hold(second):
                await self._worker.call("rename", name, new_name)

    async def add(self, name: str, messages: list[dict]) -> None:
        """``append`` for a caller that does not need the chat back: it is not sent over the
        pipe and parsed again (a 2,000-message chat is half a millisecond of the loop)."""
        await self._locked("append", name, messages, False)

    async def remove_message(self, name: str, index: int) -> dict:
        """Remove the message at ``index``; returns it."""
        return await self._locked("remove_message", name, index)

    @asynccontextmanager
    async def turn(self, name: str) -> AsyncIterator[None]:
        """Hold the chat for one whole turn, so turns on a chat run one after another.

        Separate from the file lock: a turn lasts as long as the model talks, and reads,
        deletes and other chats must not wait for it.
        """
        async with self._turn_locks.hold(names.stem_for(name)):
            yield

    def turn_waiters(self, name: str) -> int:
        """How many requests hold or wait for the chat's turn lock (the tests watch it)."""
        return self._turn_locks.users(names.stem_for(name))

    async def _locked(self, operation: str, name: str, *arguments: Any) -> Any:
        async with self._file_locks.hold(names.stem_for(name)):
            return await self._worker.call(operation, name, *arguments)

