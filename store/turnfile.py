"""A held chat's ``.locks/<stem>.turn``: the cross-process hold, and the journal of its turn.

Holding the chat is holding the ``flock`` on this file (files.open_locked), for a whole turn
or change; a process that dies lets go of it with its descriptors. The file's content is
the journal of the turn in progress: which chat, which turn, and the reply so far. It is
written without fsync: the page cache outlives a killed process (not a power cut), and a
journal is rewritten about once a second per turn. Empty means no turn is in progress.

The layout keeps a whole record readable whatever moment the writer is killed at, even
in the middle of a write (the kernel may stop a write of several pages part-way when the
process is killed): a 24-byte header at offset 0 says where the current record lies, its
length and checksum. A new record is written where it overlaps nothing of the current one,
then the header is pointed at it (a write within one page is all or nothing); the file
stays within about three times the largest record.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import zlib
from contextlib import contextmanager
from typing import Callable, Iterator

import jsonbytes

from . import files

log = logging.getLogger("chatproxy.store")

SUFFIX = ".turn"
_HEADER = struct.Struct(">4sQII")  # magic, record offset, record length, record checksum
_MAGIC = b"CPJ1"
_FIRST = 64  # where the first record goes: room for the header


class TurnFile:
    """The open, ``flock``ed turn file of one chat; only its holder writes or removes it."""

    def __init__(self, fd: int, path: str) -> None:
        self.path = path
        self._fd: int | None = fd
        self._record_at: tuple[int, int] | None = None  # (offset, length) of the current record
        # A write still running on a pool thread (its caller was cancelled) must not meet a
        # descriptor closed under it, or reused by another file meanwhile.
        self._using_fd = threading.Lock()

    @classmethod
    def take(cls, path: str, recreate_folder: Callable[[], None] | None = None, make: bool = True) -> TurnFile | None:
        """The file, held; None when another holds it (this call never waits). With ``make``
        false, a missing file is FileNotFoundError."""
        fd = files.open_locked(path, blocking=False, recreate_folder=recreate_folder, make=make)
        return cls(fd, path) if fd is not None else None

    def has_journal(self) -> bool:
        with self._open() as fd:
            return os.fstat(fd).st_size > 0

    def read(self) -> dict | None:
        """The journaled record (``{"name", "turn", "reply"}``); None if there is none or it
        cannot be read (a file damaged by hand: logged)."""
        with self._open() as fd:
            size = os.fstat(fd).st_size
            header = os.pread(fd, _HEADER.size, 0)
            if not header.strip(b"\0"):
                return None  # empty, or killed before the first record's header was written
            magic, offset, length, checksum = _HEADER.unpack(header) if len(header) == _HEADER.size else (b"", 0, 0, 0)
            body = os.pread(fd, length, offset) if magic == _MAGIC and offset + length <= size else None
        try:
            if body is None or zlib.crc32(body) != checksum:
                raise ValueError("its header points at no whole record")
            record = jsonbytes.loads(body)
            if not isinstance(record, dict):
                raise ValueError("its record is not a JSON object")
        except ValueError as error:  # json's errors are ValueErrors too
            log.warning("Ignoring the turn journal %s: %s", self.path, error)
            return None
        return record

    def write(self, record: dict) -> None:
        body = jsonbytes.dumps(record)
        current = self._record_at
        # Where nothing of the current record lies: at the front if it fits before it, else after it.
        offset = _FIRST if current is None or _FIRST + len(body) <= current[0] else current[0] + current[1]
        with self._open() as fd:
            _write_all(fd, body, offset)
            _write_all(fd, _HEADER.pack(_MAGIC, offset, len(body), zlib.crc32(body)), 0)
            if offset == _FIRST and current is not None:
                os.ftruncate(fd, _FIRST + len(body))  # what lay after it is no longer pointed at
        self._record_at = (offset, len(body))

    def has_record(self) -> bool:
        """Whether this holder wrote a record since the file was taken or cleared."""
        return self._record_at is not None

    def clear(self) -> None:
        with self._open() as fd:
            os.ftruncate(fd, 0)
        self._record_at = None

    def release(self, remove: bool = False) -> None:
        """Let go of the chat; ``remove``: take the file away first (its chat is gone)."""
        with self._open() as fd:
            self._fd = None
            try:
                if remove and files.is_at_path(fd, self.path):
                    os.unlink(self.path)  # waiters notice the unlinked inode and retry (files.open_locked)
            finally:
                os.close(fd)  # closing the descriptor releases the flock

    @contextmanager
    def _open(self) -> Iterator[int]:
        with self._using_fd:
            if self._fd is None:
                raise OSError(errno.EBADF, "The chat is no longer held", self.path)
            yield self._fd


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
