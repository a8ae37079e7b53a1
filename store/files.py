"""What touches the disk: atomic writes, cross-process file locks, temp-file cleanup.

Blocking code, meant to run on the store's thread pool, never on the event loop.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger("chatproxy.store")

TEMP_SUFFIX = ".tmp"
LOCK_DIR = ".locks"


def temp_path_for(path: Path) -> Path:
    # The temp name embeds the target's name, so start-up cleanup knows whose lock guards it.
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash at any moment leaves the old or the new file.

    The pattern of pip's ``adjacent_tmp_file`` + ``replace``: a temp file in the same folder,
    flushed and fsynced, renamed over the target, then the folder fsynced so the rename
    itself survives a power cut.
    """
    temp = temp_path_for(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with open(fd, "wb", closefd=True) as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def unlink(path: Path) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


@contextmanager
def file_lock(lock_path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``lock_path``, held across processes; yields whether it was had.

    A lock file may be unlinked by its holder (when its chat is deleted); a waiter that then
    gets the lock on the unlinked inode must not trust it, so it checks the inode is still
    the one at the path and otherwise tries again.
    """
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                yield False
                return
            raise
        try:
            current = os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)
    try:
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def remove_stale_temp_files(directory: Path, lock_path_for: Callable[[str], Path]) -> int:
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
