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
from typing import Any, AsyncIterator

from . import chatfile, files, names
from .locks import KeyedLocks
from .worker import StoreWorker


class ChatStore:
    def __init__(self, directory: str | os.PathLike, log_format: str = "text") -> None:
        self.directory = Path(directory)
        self._worker = StoreWorker(self.directory, log_format)
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

    # -- changes ---------------------------------------------------------------------------

    async def create(self, name: str, model: str, temperature: float, max_tokens: int) -> dict:
        return await self._locked("create", name, chatfile.new_chat(model, temperature, max_tokens))

    async def delete(self, name: str) -> None:
        await self._locked("delete", name)

    async def append(self, name: str, messages: list[dict]) -> dict:
        """Append ``messages`` to the chat as it is on disk now; returns the updated chat."""
        return await self._locked("append", name, messages)

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

    async def _locked(self, operation: str, name: str, *arguments: Any) -> Any:
        async with self._file_locks.hold(names.stem_for(name)):
            return await self._worker.call(operation, name, *arguments)
