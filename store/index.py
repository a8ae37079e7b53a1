"""The listing index: one summary per chat file, so ``GET /chats`` need not parse every file.

Each summary is keyed by file name and remembered with the file's (mtime, size). A listing
stats the folder; a file whose (mtime, size) has not changed is not read again. When the
folder's own mtime has not moved since the last full scan (nothing added, removed or
renamed, and every store write is a rename), the cached listing is returned without a
single stat. Files edited in place by hand are seen at the next full scan, which happens
whenever the folder changes or ``RESCAN_AFTER_S`` has passed.

A listing comes in views (listing.py: by name, or by recent activity, which lists a damaged
file too, with ``damaged`` saying why). Each view is encoded once per change of the folder. A chat marked running
(store/running.py) is remembered as such; a view says ``"running": true`` for those whose
turn is live, asking only about them.
"""

from __future__ import annotations

import logging
import os
import threading
from stat import S_ISREG
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import jsonbytes

from . import chatfile, files, listing, names, running
from .listing import BY_NAME, HIDE_ARCHIVED
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
    summary: dict | None  # None: the file is damaged, and left out of the listing by name
    running: bool = False  # the chat is marked running (live or not)
    damaged: dict | None = None  # what the recent views show of a damaged file


@dataclass(slots=True)
class _Snapshot:
    """One scan's listing, and its views as they are asked for."""

    by_name: list[dict]  # the original server's entries, by id
    summaries: list[dict]  # every good chat's whole summary, by id
    damaged: list[dict]
    views: dict = field(default_factory=dict)  # (order, archived) -> (live chats, encoded JSON)


class ChatIndex:
    def __init__(self, directory: str | os.PathLike, recreate_folder: Callable[[], None]) -> None:
        self._dir = directory
        self._recreate_folder = recreate_folder
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._scanned_dir_mtime_ns: int | None = None
        self._scan_started_ns = 0
        self._scanned_at = 0.0
        self._snapshot: _Snapshot | None = None
        self._marked: set[str] = set()  # file names of the chats marked running
        self._generation = 0  # moves whenever an entry may have changed

    def listing_json(self, is_live: Callable[[str], bool], order: str = BY_NAME, archived: str = HIDE_ARCHIVED) -> bytes:
        """A view of the listing as a JSON array, encoded once per change of the folder or of
        which turns are live; ``is_live(file_name)`` is asked only of the chats marked running.
        ``archived`` applies to the recent order only: the order by name lists every chat."""
        snapshot = self._current()
        live = frozenset(file_name for file_name in self.marked() if is_live(file_name))
        key = (order, archived)
        with self._lock:
            cached = snapshot.views.get(key)
        if cached is not None and cached[0] == live:
            return cached[1]
        entries = snapshot.by_name if order == BY_NAME else listing.recent(snapshot.summaries, snapshot.damaged, archived)
        shown = {names.name_for(file_name) for file_name in live}
        encoded = jsonbytes.dumps(
            [{**entry, "running": True} if entry["id"] in shown else entry for entry in entries] if shown else entries
        )
        with self._lock:
            snapshot.views[key] = (live, encoded)
        return encoded

    def marked(self) -> list[str]:
        """The file names of the good chats marked running, as of the last scan or write."""
        with self._lock:
            return list(self._marked)

    def is_marked(self, file_name: str) -> bool:
        with self._lock:
            return file_name in self._marked

    def listing(self) -> list[dict]:
        """Every good chat's entry, by id, as the original server listed them. Blocking: run
        it off the event loop."""
        return self._current().by_name

    def _current(self) -> _Snapshot:
        try:
            dir_mtime_ns = os.stat(self._dir).st_mtime_ns
        except FileNotFoundError:  # removed by hand: an empty folder again
            self._recreate_folder()
            dir_mtime_ns = os.stat(self._dir).st_mtime_ns
        with self._lock:
            if (
                self._snapshot is not None
                and dir_mtime_ns == self._scanned_dir_mtime_ns
                and dir_mtime_ns < self._scan_started_ns - CLOCK_TICK_NS
                and time.monotonic() - self._scanned_at < RESCAN_AFTER_S
            ):
                return self._snapshot
        return self._rescan(dir_mtime_ns)

    def record(self, file_name: str, chat: dict, stat: os.stat_result) -> None:
        """Our own write (``stat`` is the new file's): remember its summary, so the next
        scan need not read it back."""
        marked = running.MARKER in chat
        with self._lock:
            self._entries[file_name] = _Entry(stat.st_mtime_ns, stat.st_size, listing.summary(names.name_for(file_name), chat), marked)
            (self._marked.add if marked else self._marked.discard)(file_name)
            self._snapshot = None
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
            self._snapshot = None
            self._generation += 1

    def _rescan(self, dir_mtime_ns: int) -> _Snapshot:
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
            old = known.get(entry.name)
            if old is not None and (old.mtime_ns, old.size) == (stat.st_mtime_ns, stat.st_size):
                fresh[entry.name] = old
            elif not S_ISREG(stat.st_mode):  # a folder or a FIFO named like a chat: not one
                fresh[entry.name] = _Entry(stat.st_mtime_ns, stat.st_size, None, damaged=_damaged(entry.name, stat, "is not a regular file"))
            else:
                fresh[entry.name] = _read_entry(entry.path, entry.name, stat)
        summaries = sorted((entry.summary for entry in fresh.values() if entry.summary is not None), key=lambda summary: summary["id"])
        snapshot = _Snapshot(
            [listing.by_name(summary) for summary in summaries],
            summaries,
            [entry.damaged for entry in fresh.values() if entry.damaged is not None],
        )
        with self._lock:
            if fresh != self._entries:
                self._generation += 1
            self._entries = fresh
            self._marked = {name for name, entry in fresh.items() if entry.running and entry.summary is not None}
            self._snapshot = snapshot
            self._scanned_dir_mtime_ns = dir_mtime_ns
            self._scan_started_ns = scan_started_ns
            self._scanned_at = scanned_at
        return snapshot


def _damaged(file_name: str, stat: os.stat_result, problem: str) -> dict:
    """A damaged file's entry in the recent views: its name, when it was written, what is wrong."""
    name = names.name_for(file_name)
    written = datetime.fromtimestamp(stat.st_mtime_ns / 1e9, timezone.utc).isoformat()
    return {**listing.summary(name, {"updated_at": written}), "damaged": problem}


def _read_entry(path: str, file_name: str, stat: os.stat_result) -> _Entry:
    """The file's entry: its summary and whether the chat is marked running, or what is
    damaged in it. A file removed since the folder was listed has neither."""
    data = files.read_bytes(path)
    if data is None:
        return _Entry(stat.st_mtime_ns, stat.st_size, None)
    try:
        chat = chatfile.decode(names.name_for(file_name), file_name, data)
    except ChatCorrupt as error:
        log.warning("Skipping %s in the listing (sort=recent shows it as damaged): %s", file_name, error)
        return _Entry(stat.st_mtime_ns, stat.st_size, None, damaged=_damaged(file_name, stat, error.detail))
    return _Entry(stat.st_mtime_ns, stat.st_size, listing.summary(names.name_for(file_name), chat), running.MARKER in chat)
