"""The listing index: one summary per chat file, so ``GET /chats`` need not parse every file.

Each summary is keyed by file name and remembered with the file's (mtime, size). A listing
stats the folder; a file whose (mtime, size) has not changed is not read again. When the
folder's own mtime has not moved since the last full scan (nothing added, removed or
renamed, and every store write is a rename), the cached listing is returned without a
single stat. Files edited in place by hand are seen at the next full scan, which happens
whenever the folder changes or ``RESCAN_AFTER_S`` has passed.

A chat marked running (store/running.py) is remembered as such; the listing says
``"running": true`` for those whose turn is live, asking only about them.
"""

from __future__ import annotations

import logging
import os
import threading
from stat import S_ISREG
import time
from dataclasses import dataclass
from typing import Callable

import jsonbytes

from . import chatfile, files, names, running
from .errors import ChatCorrupt

log = logging.getLogger("chatproxy.store")

# File times come from the kernel's coarse clock: a change made while a scan ran may carry
# a time up to a tick before the scan began. A folder changed this close to the start of
# the last scan is scanned again ("racy git").
CLOCK_TICK_NS = 20_000_000
# Files edited in place (no rename) do not touch the folder's mtime: a full scan at least
# this often finds them.
RESCAN_AFTER_S = 5.0


@dataclass(frozen=True, slots=True)
class _Entry:
    mtime_ns: int
    size: int
    summary: dict | None  # None: the file is damaged and left out of the listing
    running: bool = False  # the chat is marked running (live or not)


class ChatIndex:
    def __init__(self, directory: str | os.PathLike, recreate_folder: Callable[[], None]) -> None:
        self._dir = directory
        self._recreate_folder = recreate_folder
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._scanned_dir_mtime_ns: int | None = None
        self._scan_started_ns = 0
        self._scanned_at = 0.0
        self._listing: list[dict] | None = None
        self._listing_json: bytes | None = None
        self._json_live: frozenset[str] = frozenset()  # the chats shown running in _listing_json
        self._marked: set[str] = set()  # file names of the chats marked running
        self._generation = 0  # moves whenever an entry may have changed

    def listing_json(self, is_live: Callable[[str], bool]) -> bytes:
        """``listing()`` as a JSON array, encoded once per change of the folder or of which
        turns are live; ``is_live(file_name)`` is asked only of the chats marked running."""
        listing = self.listing()
        live = frozenset(file_name for file_name in self.marked() if is_live(file_name))
        with self._lock:
            if self._listing is listing and self._listing_json is not None and self._json_live == live:
                return self._listing_json
        shown = {names.name_for(file_name) for file_name in live}
        encoded = jsonbytes.dumps(
            [{**summary, "running": True} if summary["id"] in shown else summary for summary in listing] if shown else listing
        )
        with self._lock:
            if self._listing is listing:
                self._listing_json, self._json_live = encoded, live
        return encoded

    def marked(self) -> list[str]:
        """The file names of the good chats marked running, as of the last scan or write."""
        with self._lock:
            return list(self._marked)

    def is_marked(self, file_name: str) -> bool:
        with self._lock:
            return file_name in self._marked

    def listing(self) -> list[dict]:
        """Every good chat's summary, sorted by id. Blocking: run it off the event loop."""
        try:
            dir_mtime_ns = os.stat(self._dir).st_mtime_ns
        except FileNotFoundError:  # removed by hand: an empty folder again
            self._recreate_folder()
            dir_mtime_ns = os.stat(self._dir).st_mtime_ns
        with self._lock:
            if (
                self._listing is not None
                and dir_mtime_ns == self._scanned_dir_mtime_ns
                and dir_mtime_ns < self._scan_started_ns - CLOCK_TICK_NS
                and time.monotonic() - self._scanned_at < RESCAN_AFTER_S
            ):
                return self._listing
        return self._rescan(dir_mtime_ns)

    def record(self, file_name: str, chat: dict, stat: os.stat_result) -> None:
        """Our own write (``stat`` is the new file's): remember its summary, so the next
        scan need not read it back."""
        marked = running.MARKER in chat
        with self._lock:
            self._entries[file_name] = _Entry(stat.st_mtime_ns, stat.st_size, _summary(file_name, chat), marked)
            (self._marked.add if marked else self._marked.discard)(file_name)
            self._listing = self._listing_json = None
            self._generation += 1

    def changes_since(self, generation: int) -> tuple[int, dict[str, tuple[int, int]] | None]:
        """The current generation and, if it is not ``generation``, the (mtime_ns, size) of
        every good chat file: what the search index compares itself with."""
        self.listing()
        with self._lock:
            if generation == self._generation:
                return generation, None
            good = {name: (e.mtime_ns, e.size) for name, e in self._entries.items() if e.summary is not None}
            return self._generation, good

    def summary(self, file_name: str) -> dict | None:
        with self._lock:
            entry = self._entries.get(file_name)
        return entry.summary if entry is not None else None

    def forget(self, file_name: str) -> None:
        with self._lock:
            self._entries.pop(file_name, None)
            self._marked.discard(file_name)
            self._listing = self._listing_json = None
            self._generation += 1

    def _rescan(self, dir_mtime_ns: int) -> list[dict]:
        scanned_at = time.monotonic()
        scan_started_ns = time.time_ns()
        with self._lock:
            known = dict(self._entries)
        fresh: dict[str, _Entry] = {}
        for entry in os.scandir(self._dir):
            if names.name_for(entry.name) is None:
                continue
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue  # removed since the folder was read, or a dangling link
            if not S_ISREG(stat.st_mode):
                continue  # a folder or a FIFO named like a chat: not one
            old = known.get(entry.name)
            if old is not None and (old.mtime_ns, old.size) == (stat.st_mtime_ns, stat.st_size):
                fresh[entry.name] = old
            else:
                fresh[entry.name] = _Entry(stat.st_mtime_ns, stat.st_size, *_read_summary(entry.path, entry.name))
        listing = sorted(
            (entry.summary for entry in fresh.values() if entry.summary is not None),
            key=lambda summary: summary["id"],
        )
        with self._lock:
            if fresh != self._entries:
                self._generation += 1
            self._entries = fresh
            self._marked = {name for name, entry in fresh.items() if entry.running and entry.summary is not None}
            self._listing = listing
            self._listing_json = None
            self._scanned_dir_mtime_ns = dir_mtime_ns
            self._scan_started_ns = scan_started_ns
            self._scanned_at = scanned_at
        return listing


def _summary(file_name: str, chat: dict) -> dict:
    name = names.name_for(file_name)
    model = chat.get("model")
    return {"id": name, "name": name, "model": model if isinstance(model, str) else None}


def _read_summary(path: str, file_name: str) -> tuple[dict | None, bool]:
    """The file's summary (None: gone, or damaged) and whether the chat is marked running."""
    name = names.name_for(file_name)
    data = files.read_bytes(path)
    if data is None:
        return None, False  # removed since the folder was listed
    try:
        chat = chatfile.decode(name, file_name, data)
    except ChatCorrupt as error:
        log.warning("Skipping %s in the listing: %s", file_name, error)
        return None, False
    return _summary(file_name, chat), running.MARKER in chat
