"""ChatFolder: every file operation on the chats folder. Blocking code, safe across threads.

It runs in the store's worker process (store/worker.py). Every change is a read-modify-write
of the file as it is on disk now, under the chat's ``flock`` (which serialises threads here
and other processes on the same folder), written atomically (files.write_atomic). Reads
take no lock: files are only ever replaced whole.
"""

from __future__ import annotations

import os
from typing import Callable, TypeVar

from . import chatfile, files, names
from .errors import ChatExists, ChatNotFound, MessageIndexError
from .index import ChatIndex

T = TypeVar("T")


class ChatFolder:
    def __init__(self, directory: str | os.PathLike) -> None:
        # Plain strings: paths are built for every operation, and pathlib's are slow.
        self._dir = os.fspath(directory)
        self._lock_dir = os.path.join(self._dir, files.LOCK_DIR)
        self._dir_fd: int | None = None  # kept open for the folder fsync after each write
        self._index = ChatIndex(self._dir)

    def open(self) -> None:
        """Create the folder if missing and clear temp files a killed process left."""
        os.makedirs(self._lock_dir, exist_ok=True)
        self._dir_fd = os.open(self._dir, os.O_RDONLY | os.O_CLOEXEC)
        files.remove_stale_temp_files(self._dir, lambda file_name: self._lock_path(file_name.removesuffix(names.SUFFIX)))

    def close(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    # -- reads -----------------------------------------------------------------------------

    def listing(self) -> list[dict]:
        return self._index.listing()

    def count(self) -> int:
        return len(self.listing())

    def listing_json(self) -> bytes:
        """The listing as a JSON array, cached between changes: 10,000 chats are ~1 MB."""
        return self._index.listing_json()

    def read(self, name: str) -> dict:
        return self._read(name, names.file_name_for(name))

    def is_writable(self) -> bool:
        return os.access(self._dir, os.W_OK)

    # -- changes ---------------------------------------------------------------------------

    def create(self, name: str, chat: dict) -> dict:
        def create(file_name: str) -> dict:
            if os.path.exists(self._path(file_name)):
                raise ChatExists(name)
            self._write(file_name, chat)
            return chat

        return self._locked(name, create)

    def append(self, name: str, messages: list[dict], return_chat: bool = True) -> dict | None:
        """Append ``messages`` to the chat as it is on disk now; returns the updated chat."""

        def add(chat: dict) -> dict | None:
            chat["messages"].extend(messages)
            return chat if return_chat else None

        return self._update(name, add)

    def remove_message(self, name: str, index: int) -> dict:
        """Remove the message at ``index``; returns it."""

        def remove(chat: dict) -> dict:
            messages = chat["messages"]
            if not 0 <= index < len(messages):
                raise MessageIndexError(index, len(messages))
            return messages.pop(index)

        return self._update(name, remove)

    def delete(self, name: str) -> None:
        def delete(file_name: str) -> None:
            if not files.unlink(self._path(file_name), self._dir_fd):
                raise ChatNotFound(name)
            self._index.forget(file_name)
            # Held by us; waiters notice the unlinked inode and retry (files.file_lock).
            try:
                os.unlink(self._lock_path(file_name.removesuffix(names.SUFFIX)))
            except FileNotFoundError:
                pass

        self._locked(name, delete)

    # -- internals -------------------------------------------------------------------------

    def _locked(self, name: str, function: Callable[[str], T]) -> T:
        stem = names.stem_for(name)
        with files.file_lock(self._lock_path(stem)):
            return function(stem + names.SUFFIX)

    def _update(self, name: str, change: Callable[[dict], T]) -> T:
        def update(file_name: str) -> T:
            chat = self._read(name, file_name)
            result = change(chat)
            chat["updated_at"] = chatfile.now()
            self._write(file_name, chat)
            return result

        return self._locked(name, update)

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
