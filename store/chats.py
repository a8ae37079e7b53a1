"""ChatStore: the only code that reads or writes chat files.

Every change is a read-modify-write of the current file, done on a thread pool while the
chat's asyncio lock (this process) and its ``flock`` (other processes on the same folder)
are held, then written atomically. Reads take no lock: files are only ever replaced whole.
Errors are the store's own (store/errors.py), never HTTP ones.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Callable, TypeVar

from . import chatfile, files, names
from .errors import ChatExists, ChatNotFound, MessageIndexError
from .index import ChatIndex
from .locks import KeyedLocks

T = TypeVar("T")

# File work is fsync-bound, not CPU-bound: a few threads let writes to different chats
# overlap without a thread per request.
IO_THREADS = 8


class ChatStore:
    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        # Plain strings inside: paths are built for every operation, and pathlib's are slow.
        self._dir = os.fspath(self.directory)
        self._lock_dir = os.path.join(self._dir, files.LOCK_DIR)
        self._dir_fd: int | None = None  # kept open for the folder fsync after each write
        self._pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="chatstore")
        self._file_locks = KeyedLocks()
        self._turn_locks = KeyedLocks()
        self._index = ChatIndex(self.directory)

    def open(self) -> None:
        """Create the folder if missing and clear temp files a killed process left. Blocking."""
        os.makedirs(self._lock_dir, exist_ok=True)
        self._dir_fd = os.open(self._dir, os.O_RDONLY | os.O_CLOEXEC)
        files.remove_stale_temp_files(
            self.directory, lambda file_name: self._lock_path(file_name.removesuffix(names.SUFFIX))
        )

    def close(self) -> None:
        """Wait for writes in flight, so none is cut short at exit."""
        self._pool.shutdown(wait=True)
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    async def is_writable(self) -> bool:
        return await self._run(os.access, self.directory, os.W_OK)

    # -- reads -----------------------------------------------------------------------------

    async def list_chats(self) -> list[dict]:
        return await self._run(self._index.listing)

    async def list_chats_json(self) -> bytes:
        """The listing as a JSON array, cached between changes: 10,000 chats are ~1 MB."""
        return await self._run(self._index.listing_json)

    async def get(self, name: str) -> dict:
        file_name = names.file_name_for(name)
        return await self._run(self._read, name, file_name)

    # -- changes ---------------------------------------------------------------------------

    async def create(self, name: str, model: str, temperature: float, max_tokens: int) -> dict:
        chat = chatfile.new_chat(model, temperature, max_tokens)
        return await self._locked(name, self._create_sync, chat)

    async def delete(self, name: str) -> None:
        await self._locked(name, self._delete_sync)

    async def append(self, name: str, messages: list[dict]) -> dict:
        """Append ``messages`` to the chat as it is on disk now; returns the updated chat."""

        def add(chat: dict) -> dict:
            chat["messages"].extend(messages)
            return chat

        return await self._locked(name, self._update_sync, add)

    async def remove_message(self, name: str, index: int) -> dict:
        """Remove the message at ``index``; returns it."""

        def remove(chat: dict) -> dict:
            messages = chat["messages"]
            if not 0 <= index < len(messages):
                raise MessageIndexError(index, len(messages))
            return messages.pop(index)

        return await self._locked(name, self._update_sync, remove)

    @asynccontextmanager
    async def turn(self, name: str) -> AsyncIterator[None]:
        """Hold the chat for one whole turn, so turns on a chat run one after another.

        Separate from the file lock: a turn lasts as long as the model talks, and reads,
        deletes and other chats must not wait for it.
        """
        async with self._turn_locks.hold(names.stem_for(name)):
            yield

    # -- internals -------------------------------------------------------------------------

    async def _run(self, function: Callable[..., T], *args) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    async def _locked(self, name: str, function: Callable[..., T], *args) -> T:
        stem = names.stem_for(name)
        async with self._file_locks.hold(stem):
            return await self._run(self._with_file_lock, stem, function, name, stem + names.SUFFIX, *args)

    def _with_file_lock(self, stem: str, function: Callable[..., T], *args) -> T:
        with files.file_lock(self._lock_path(stem)):
            return function(*args)

    def _lock_path(self, stem: str) -> str:
        return f"{self._lock_dir}/{stem}.lock"

    def _path(self, file_name: str) -> str:
        return f"{self._dir}/{file_name}"

    def _read(self, name: str, file_name: str) -> dict:
        data = files.read_bytes(self._path(file_name))
        if data is None:
            raise ChatNotFound(name)
        return chatfile.decode(name, file_name, data)

    def _write(self, file_name: str, chat: dict) -> None:
        stat = files.write_atomic(self._path(file_name), chatfile.encode(chat), self._dir_fd)
        self._index.record(file_name, chat, stat)

    def _create_sync(self, name: str, file_name: str, chat: dict) -> dict:
        if os.path.exists(self._path(file_name)):
            raise ChatExists(name)
        self._write(file_name, chat)
        return chat

    def _update_sync(self, name: str, file_name: str, change: Callable[[dict], T]) -> T:
        chat = self._read(name, file_name)
        result = change(chat)
        chat["updated_at"] = chatfile.now()
        self._write(file_name, chat)
        return result

    def _delete_sync(self, name: str, file_name: str) -> None:
        if not files.unlink(self._path(file_name), self._dir_fd):
            raise ChatNotFound(name)
        self._index.forget(file_name)
        # Held by us; waiters notice the unlinked inode and retry (files.file_lock).
        stem = file_name[: -len(names.SUFFIX)]
        try:
            os.unlink(self._lock_path(stem))
        except FileNotFoundError:
            pass
