"""What touches the disk: atomic writes, cross-process file locks, temp-file cleanup.

Blocking code, meant to run on the store's thread pool (a non-blocking lock attempt,
``open_locked(..., blocking=False)``, is also made on the event loop).
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import logging
import os
import secrets
import stat
from contextlib import contextmanager, suppress
from typing import Callable, Iterator

log = logging.getLogger("chatproxy.store")

TEMP_SUFFIX = ".tmp"
LOCK_DIR = ".locks"


# Temp names need only be unique (O_EXCL guards the rest): a per-process prefix and a counter
# cost no system call, where a random token per write would.
_temp_prefix = secrets.token_hex(4)
_temp_numbers = itertools.count()


def temp_path_for(path: str | os.PathLike) -> str:
    # The temp name embeds the target's name, so start-up cleanup knows whose lock guards it.
    directory, name = os.path.split(os.fspath(path))
    return os.path.join(directory, f".{name}.{_temp_prefix}{next(_temp_numbers):x}{TEMP_SUFFIX}")


def write_atomic(path: str | os.PathLike, data: bytes, directory_fd: int | None = None) -> os.stat_result:
    """Replace ``path`` with ``data`` so that a crash at any moment leaves the old or the new file.

    The pattern of pip's ``adjacent_tmp_file`` + ``replace``: a temp file in the same folder,
    written and fsynced, renamed over the target, then the folder fsynced (``directory_fd``,
    an open descriptor of it, saves opening it each time) so the rename itself survives a
    power cut. Plain ``os`` calls: each Python file-object layer adds system calls, and on a
    busy server each one is a trip through the GIL. ``fdatasync`` where there is one: the
    file's times need not reach the disk before the rename, its size and blocks do (and
    do with it). Returns the new file's stat.
    """
    temp = temp_path_for(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            _sync_data(fd)
            stat = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp)
        raise
    _sync_folder_of(path, directory_fd)
    return stat


def _sync_data(fd: int) -> None:
    getattr(os, "fdatasync", os.fsync)(fd)  # macOS and Windows have only fsync


def _sync_folder_of(path: str | os.PathLike, directory_fd: int | None) -> None:
    """Make a rename or unlink in ``path``'s folder durable."""
    if directory_fd is not None:
        os.fsync(directory_fd)
        return
    fd = os.open(os.path.dirname(os.fspath(path)) or ".", os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_bytes(path: str | os.PathLike) -> bytes | None:
    """The file's bytes, or None if it does not exist."""
    read = read_file(path)
    return read[0] if read is not None else None


def read_file(path: str | os.PathLike) -> tuple[bytes, os.stat_result] | None:
    """The file's bytes and the stat of the file they came from, or None if it does not exist
    (four system calls; Path.read_bytes makes seven).

    Anything but a regular file (a folder, a FIFO someone left there) is an OSError: opened
    without blocking, a FIFO cannot hold a thread forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise OSError(errno.EISDIR if stat.S_ISDIR(status.st_mode) else errno.EINVAL, "Not a regular file", os.fspath(path))
        size = status.st_size
        data = os.read(fd, size + 1)
        if len(data) != size:  # a short read, or a file edited in place meanwhile
            rest = [data]
            while chunk := os.read(fd, 1 << 20):
                rest.append(chunk)
            data = b"".join(rest)
        return data, status
    finally:
        os.close(fd)


def unlink(path: str | os.PathLike, directory_fd: int | None = None) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    _sync_folder_of(path, directory_fd)
    return True


@contextmanager
def file_lock(
    lock_path: str | os.PathLike, blocking: bool = True, recreate_folder: Callable[[], None] | None = None
) -> Iterator[bool]:
    """An exclusive ``flock`` on ``lock_path``, held across processes; yields whether it was had."""
    fd = open_locked(lock_path, blocking, recreate_folder)
    if fd is None:
        yield False
        return
    try:
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def open_locked(
    lock_path: str | os.PathLike, blocking: bool = True, recreate_folder: Callable[[], None] | None = None, make: bool = True
) -> int | None:
    """``lock_path`` opened (made if missing) and ``flock``ed exclusively: its descriptor,
    which releases the lock when closed; None if it is held and ``blocking`` is false.
    With ``make`` false a missing file is FileNotFoundError (``make_file`` it on the pool:
    making a file waits for the filesystem's journal).

    A lock file may be unlinked by its holder (when its chat is deleted); a waiter that then
    gets the lock on the unlinked inode must not trust it, so it checks the inode is still
    the one at the path and otherwise tries again. When the lock's folder is missing (a user,
    a sync or a backup tool cleared the chats folder), ``recreate_folder`` makes it again.
    """
    while True:
        fd = _made(lock_path, recreate_folder) if make else os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                return None
            raise
        if is_at_path(fd, lock_path):
            return fd
        os.close(fd)


def make_file(path: str | os.PathLike, recreate_folder: Callable[[], None] | None = None) -> None:
    """``path`` made if missing (and its folder, with ``recreate_folder``)."""
    os.close(_made(path, recreate_folder))


def _made(path: str | os.PathLike, recreate_folder: Callable[[], None] | None) -> int:
    """``path`` opened, made if missing; its folder made again once if that is missing too."""
    try:
        return _open_or_make(path)
    except FileNotFoundError:
        if recreate_folder is None:
            raise
        recreate_folder()
        return _open_or_make(path)  # once: a second miss is a real fault


def _open_or_make(path: str | os.PathLike) -> int:
    """Open ``path``, made if missing. Opened without O_CREAT first: the file is almost always
    there, and O_CREAT takes the folder's lock even then, which makes every lock a queue
    behind the temp files being created and renamed in the same filesystem."""
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def is_at_path(fd: int, path: str | os.PathLike) -> bool:
    """Whether the file open as ``fd`` is still the one at ``path`` (not unlinked or replaced)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def is_locked(lock_path: str | os.PathLike) -> bool:
    """Whether someone holds the ``flock`` on ``lock_path`` (this process too, through another
    descriptor). Never makes the file; a missing one is not held."""
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False


def remove_stale_temp_files(directory: str | os.PathLike, lock_path_for: Callable[[str], str]) -> int:
    """Delete temp files left by a killed writer; a temp file whose lock is held is in use.

    ``lock_path_for`` maps the file name a temp file was meant to replace to its lock file.
    """
    removed = 0
    for entry in os.scandir(directory):
        name = entry.name
        if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
            continue
        target = name[1:].rsplit(".", 2)[0]  # ".{target}.{hex}.tmp" -> "{target}", e.g. "x.json"
        with file_lock(lock_path_for(target), blocking=False) as locked:
            if locked:
                with suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    if removed:
        log.info("Removed %d temp file(s) left by an interrupted write in %s", removed, directory)
    return removed
