"""Parsed chats kept between requests, so a turn on a long chat does not decode it again.

An entry is valid while its file's (inode, size, mtime) are what they were when it was read
or written: every write of ours replaces the file (a new inode), and a hand edit changes the
size or the time. (On a file system whose clock is coarse, an edit in place that keeps the
size within the same tick as our write goes unseen until the next change; the ext4 this was
built on gave every write a time of its own.) Bounded by the files' sizes, least recently
used out first. The chats handed out are shared: nobody changes them (a change works on
history.copy_for_change).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

# Sizes of the cached chats' files; their parsed objects take about twice as much (a
# 2,000-message chat: 0.6 MB of file, 1.1 MB parsed), more for many short messages.
BUDGET_BYTES = 16 << 20
# A chat bigger than this is decoded on each use rather than pushing out every other.
LARGEST_BYTES = BUDGET_BYTES // 4


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class ChatCache:
    def __init__(self, budget_bytes: int = BUDGET_BYTES, largest_bytes: int = LARGEST_BYTES) -> None:
        self._budget = budget_bytes
        self._largest = largest_bytes
        self._entries: OrderedDict[str, tuple[tuple[int, int, int], dict]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, file_name: str, stat: os.stat_result) -> dict | None:
        """The chat read from ``file_name`` when it had this ``stat``; None if unknown or changed."""
        with self._lock:
            entry = self._entries.get(file_name)
            if entry is None or entry[0] != _stamp(stat):
                return None
            self._entries.move_to_end(file_name)
            return entry[1]

    def put(self, file_name: str, stat: os.stat_result, chat: dict) -> None:
        with self._lock:
            self._drop(file_name)
            if stat.st_size > self._largest:
                return
            self._entries[file_name] = (_stamp(stat), chat)
            self._bytes += stat.st_size
            while self._bytes > self._budget:
                self._drop(next(iter(self._entries)))

    def forget(self, file_name: str) -> None:
        with self._lock:
            self._drop(file_name)

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, file_name: str) -> None:
        entry = self._entries.pop(file_name, None)
        if entry is not None:
            self._bytes -= entry[0][1]
