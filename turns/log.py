"""EventLog: a turn's events as sent, each with its sequence number, and who watches them.

The model is Tornado's chat demo (``demos/chat/chatdemo.py``, ``MessageBuffer``): one buffer,
and watchers that each ask for "everything after N". Here the buffer is the whole turn (a
watcher may re-attach at any point of it), kept compactly: one bytearray of encoded events
and the offset where each ends, so a turn of 50 events costs its bytes and 50 integers.
Watchers pull from it at their own pace (``read``), so a slow one holds no copy of what it
has not taken, and none can hold the turn back.

Events go out as ``id: N`` + the event's own lines; N counts from 1 within the turn and is
what ``Last-Event-ID`` and ``?after=`` name.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from typing import Protocol


class Watcher(Protocol):
    """A client reading the turn (handlers/watch.py)."""

    def wake(self) -> None:
        """New events, or the end: read them when ready; never block."""


class EventLog:
    __slots__ = ("_data", "_ends", "_watchers", "ended")

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = array("Q")
        self._watchers: list[Watcher] = []
        self.ended = False

    @property
    def seq(self) -> int:
        """The sequence number of the last event (0: none yet)."""
        return len(self._ends)

    def append(self, events: list[bytes]) -> None:
        """Number and keep ``events`` (each an encoded event without an id line)."""
        for event in events:
            self._data += b"id: %d\n" % (len(self._ends) + 1)
            self._data += event
            self._ends.append(len(self._data))
        self._wake()

    def end(self, last_word: bytes) -> None:
        """The last event: nothing comes after it."""
        self.ended = True
        self.append([last_word])

    def read(self, after: int, limit: int) -> tuple[bytes, int]:
        """Whole events after number ``after``: as many as fit in ``limit`` bytes (at least
        one), and the number of the last one."""
        if after >= len(self._ends):
            return b"", after
        start = self._ends[after - 1] if after > 0 else 0
        last = max(after + 1, bisect_right(self._ends, start + limit, lo=after))
        return bytes(self._data[start : self._ends[last - 1]]), last

    def behind(self, after: int) -> int:
        """How many bytes of events come after number ``after``."""
        return len(self._data) - (self._ends[after - 1] if 0 < after <= len(self._ends) else 0)

    def watch(self, watcher: Watcher) -> None:
        self._watchers.append(watcher)
        watcher.wake()

    def unwatch(self, watcher: Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def _wake(self) -> None:
        for watcher in list(self._watchers):
            watcher.wake()
