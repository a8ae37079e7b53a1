"""ChatFolder: every file operation on the chats folder. Blocking code, safe across threads.

ChatStore (chats.py) runs it on its thread pool. Every change is a read-modify-write of the
file as it is on disk now, under the chat's ``.locks/<stem>.lock`` flock (which serialises
threads here and other processes on the same folder), written atomically
(files.write_atomic). Reads take no lock: files are only ever replaced whole. Parsed chats
are kept (cache.py), so a change to a long chat does not decode it again. Holding a chat
for a turn is holds.py's business.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from typing import Callable, TypeVar

import jsonbytes

from . import chatfile, files, history, names, running
from .cache import ChatCache
from .errors import ChatCorrupt, ChatExists, ChatNotFound, StoreError, storage_errors
from .index import ChatIndex
from .search import SearchIndex

log = logging.getLogger("chatproxy.store")

T = TypeVar("T")


class ChatFolder:
    def __init__(self, directory: str | os.PathLike) -> None:
        # Plain strings: paths are built for every operation, and pathlib's are slow.
        self._dir = os.fspath(directory)
        self.lock_dir = os.path.join(self._dir, files.LOCK_DIR)
        self._dir_fd: int | None = None  # kept open for the folder fsync after each write
        # Descriptors of folders that were removed and made again: another thread may still
        # be fsyncing one, so they are closed only with the folder (it happens rarely).
        self._retired_fds: list[int] = []
        self._recreating = threading.Lock()
        self._index = ChatIndex(self._dir, self.recreate_folder)
        self._search = SearchIndex(self._dir, self._index, self._read_existing)
        self._cache = ChatCache()

    def open(self) -> None:
        """Create the folder if missing and clear temp files a killed process left."""
        self.recreate_folder()
        files.remove_stale_temp_files(self._dir, lambda file_name: self._lock_path(file_name.removesuffix(names.SUFFIX)))

    def close(self) -> None:
        self._search.close()
        for fd in [*self._retired_fds, *([self._dir_fd] if self._dir_fd is not None else [])]:
            os.close(fd)
        self._retired_fds.clear()
        self._dir_fd = None

    def recreate_folder(self) -> None:
        """Make the folder and ``.locks/`` again (a user, a sync or a backup tool removed them),
        and hold the folder that is there now for the fsync after each write."""
        with self._recreating:
            os.makedirs(self.lock_dir, exist_ok=True)
            if self._dir_fd is not None and not self._is_gone(self._dir_fd):
                return  # another thread made it again meanwhile
            fd = os.open(self._dir, os.O_RDONLY | os.O_CLOEXEC)
            if self._dir_fd is not None:
                self._retired_fds.append(self._dir_fd)
            self._dir_fd = fd

    def _is_gone(self, fd: int) -> bool:
        """Whether the folder open as ``fd`` is no longer the one at our path."""
        try:
            here = os.stat(self._dir)
        except FileNotFoundError:
            return True
        held = os.fstat(fd)
        return held.st_nlink == 0 or (held.st_dev, held.st_ino) != (here.st_dev, here.st_ino)

    # -- reads -----------------------------------------------------------------------------

    def listing(self) -> list[dict]:
        return self._guarded("listing the chats folder", self._index.listing)

    def count(self) -> int:
        return len(self.listing())

    def listing_json(self, is_live: Callable[[str], bool], order: str, archived: str) -> bytes:
        """A view of the listing (index.py) as a JSON array, cached between changes: 10,000
        chats are ~1 MB. A chat marked running for which ``is_live(file_name)`` says so
        carries ``"running": true``."""
        return self._guarded("listing the chats folder", lambda: self._index.listing_json(is_live, order, archived))

    def marked(self) -> list[str]:
        """The file names of the chats marked running (running.py), live or not."""
        self.listing()
        return self._index.marked()

    def is_marked(self, file_name: str) -> bool:
        """Whether the chat is marked running, as far as the listing knows (no file is read)."""
        return self._index.is_marked(file_name)

    def read(self, name: str) -> dict:
        """The chat, shared with the cache: the caller must not change it."""
        return self._read(name, names.file_name_for(name))

    def exists(self, file_name: str) -> bool:
        return os.path.exists(self._path(file_name))

    def search(self, query: str, limit: int) -> list[dict]:
        return self._guarded("searching the chats", lambda: self._search.search(query, limit))

    def export_lines(self, chat_names: list[str]) -> bytes:
        """NDJSON lines ``{"name": ..., "chat": ...}`` for the chats named that are still good.

        One that was deleted or damaged since the listing was taken is left out (with a
        warning), as the listing leaves it out: the export has begun, and must not break off.
        """
        lines = []
        for name in chat_names:
            try:
                chat = running.shown(self._read(name, names.file_name_for(name), keep=False), live=False)
            except ChatNotFound:
                continue
            except StoreError as error:
                log.warning("Leaving chat '%s' out of the export: %s", name, error)
                continue
            lines.append(b'{"name":' + jsonbytes.dumps(name) + b',"chat":' + jsonbytes.dumps(chat) + b"}\n")
        return b"".join(lines)

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

    def create_unique(self, name: str, chat: dict) -> str:
        """Create the chat under ``name``, or ``name (2)``, ``name (3)``...: never over another."""
        base = names.fitted(name, room=8)
        for number in range(1, 10_000):
            candidate = names.fitted(name) if number == 1 else f"{base} ({number})"
            try:
                self.create(candidate, chat)
                return candidate
            except ChatExists:
                continue
        raise ChatExists(name)

    def update(self, name: str, change: Callable[[dict], T]) -> T:
        """Apply ``change`` to the chat as it is on disk now and write it; returns what
        ``change`` returns. A change that raises writes nothing."""

        def update(file_name: str) -> T:
            chat = history.copy_for_change(self._read(name, file_name))
            result = change(chat)
            chat["updated_at"] = chatfile.now()
            self._write(file_name, chat)
            return result

        return self._locked(name, update)

    def rename(self, name: str, new_name: str) -> None:
        """Give the chat a new name; ChatExists if one has it. Atomic: a hard link is made
        under the new name (which fails if it exists, whoever made it), then the old name is
        removed; a crash between the two leaves both names, never none."""
        old_stem, new_stem = names.stem_for(name), names.stem_for(new_name)
        if old_stem == new_stem:
            return
        first, second = sorted((old_stem, new_stem))  # one lock order: no deadlock with a rename back

        def rename() -> None:
            with self._lock(first), self._lock(second):
                self._move(name, new_name, self._path(old_stem + names.SUFFIX), self._path(new_stem + names.SUFFIX))
                self._forget(old_stem + names.SUFFIX)

        self._guarded(f"renaming chat '{name}'", rename)

    def _move(self, name: str, new_name: str, old_path: str, new_path: str) -> None:
        if not os.path.exists(old_path):
            raise ChatNotFound(name)
        try:
            os.link(old_path, new_path)
        except FileExistsError:
            raise ChatExists(new_name) from None
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            # No hard links here (some FUSE and FAT mounts): both flocks are held, so a
            # check then rename is safe against every chatproxy on this folder.
            if os.path.exists(new_path):
                raise ChatExists(new_name) from None
            os.rename(old_path, new_path)
        else:
            os.unlink(old_path)
        os.fsync(self._folder_fd())

    def delete(self, name: str) -> None:
        def delete(file_name: str) -> None:
            if not files.unlink(self._path(file_name), self._folder_fd()):
                raise ChatNotFound(name)
            self._forget(file_name)

        self._locked(name, delete)

    # -- internals -------------------------------------------------------------------------

    def _lock(self, stem: str):
        return files.file_lock(self._lock_path(stem), recreate_folder=self.recreate_folder)

    def _forget(self, file_name: str) -> None:
        """The chat in ``file_name`` is gone (deleted, renamed): out of the indexes, and its
        lock file removed."""
        self._index.forget(file_name)
        self._search.forget(file_name)
        self._cache.forget(file_name)
        self._remove_lock_file(file_name.removesuffix(names.SUFFIX))

    def _remove_lock_file(self, stem: str) -> None:
        # Held by us; waiters notice the unlinked inode and retry (files.open_locked).
        try:
            os.unlink(self._lock_path(stem))
        except FileNotFoundError:
            pass

    def _guarded(self, doing: str, function: Callable[[], T]) -> T:
        with storage_errors(doing):
            return function()

    def _locked(self, name: str, function: Callable[[str], T]) -> T:
        stem = names.stem_for(name)

        def locked() -> T:
            with self._lock(stem):
                try:
                    return function(stem + names.SUFFIX)
                except ChatNotFound:
                    self._remove_lock_file(stem)  # a name asked for in vain leaves nothing behind
                    raise

        return self._guarded(f"saving chat '{name}'", locked)

    def _lock_path(self, stem: str) -> str:
        return f"{self.lock_dir}/{stem}.lock"

    def _path(self, file_name: str) -> str:
        return f"{self._dir}/{file_name}"

    def _read(self, name: str, file_name: str, keep: bool = True) -> dict:
        """The chat from the cache while its file is unchanged, else read and decoded (and,
        with ``keep``, cached: an export passing through every chat does not keep them)."""
        path = self._path(file_name)

        def read() -> dict | None:
            try:
                chat = self._cache.get(file_name, os.stat(path))
            except FileNotFoundError:
                return None
            if chat is not None:
                return chat
            read = files.read_file(path)
            if read is None:
                return None
            chat = chatfile.decode(name, file_name, read[0])
            if keep:
                self._cache.put(file_name, read[1], chat)
            return chat

        chat = self._guarded(f"reading chat '{name}'", read)
        if chat is None:
            raise ChatNotFound(name)
        return chat

    def _read_existing(self, file_name: str) -> dict | None:
        """The chat in ``file_name`` for the search index; None if it is gone or damaged."""
        data = files.read_bytes(self._path(file_name))
        if data is None:
            return None
        try:
            return chatfile.decode(file_name, file_name, data)
        except ChatCorrupt:
            return None

    def _folder_fd(self) -> int:
        """The open descriptor of the folder that is there now: one that was removed and made
        again (by hand, or restored by a backup tool) is opened anew, or its fsync would
        sync a folder that no longer holds the files."""
        fd = self._dir_fd
        if fd is None or os.fstat(fd).st_nlink == 0:
            self.recreate_folder()
            fd = self._dir_fd
        return fd

    def _write(self, file_name: str, chat: dict) -> None:
        stat = files.write_atomic(self._path(file_name), chatfile.encode(chat), self._folder_fd())
        self._index.record(file_name, chat, stat)
        self._cache.put(file_name, stat, chat)
