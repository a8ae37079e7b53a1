"""Chats an instance read or wrote, kept with their version, so that a turn on a long chat
does not read every message again while nobody else changed it.

Every change of a chat adds one to its ``version`` (chats.version), in the transaction that
makes it. A chat kept here is used only while the database says the chat (its id, not just
its name: a chat deleted and made again is another) is at the version kept. What a read
brings is kept at once (it was committed); what a change writes, once the operation that
wrote it has returned, its transaction committed (``Call.settle``). Only a chat's messages
and branches are kept, the big part; its settings come with every read. Bounded by the
messages kept, least recently used out first. The message dicts are shared with the
chats handed out: nobody changes them (the rules of store/history.py move them whole).

The SQL functions find the cache of the store that calls them through ``CURRENT``, set
for the length of each call; called without a store (the tests' own connections), they
keep nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator

import psycopg

from .tree import BranchRow

# About 20 to 40 MB of parsed messages; a chat longer than LARGEST is read each time
# rather than pushing out every other.
BUDGET_MESSAGES = 20_000
LARGEST_MESSAGES = 10_000


@dataclass(frozen=True)
class Kept:
    chat_id: int
    version: int
    bodies: dict[int, tuple]  # branch -> its messages, in order
    branches: tuple[BranchRow, ...]

    @property
    def size(self) -> int:
        return sum(map(len, self.bodies.values()))


class ChatCache:
    def __init__(self, budget: int = BUDGET_MESSAGES, largest: int = LARGEST_MESSAGES) -> None:
        self._budget, self._largest = budget, largest
        self._entries: OrderedDict[str, Kept] = OrderedDict()  # by chat stem
        self._size = 0

    def known(self, stems: list[str]) -> list[Kept]:
        """What is kept of these chats, to ask the database whether it is still current
        (the caller holds on to it: it may leave the cache meanwhile)."""
        for stem in stems:
            if stem in self._entries:
                self._entries.move_to_end(stem)
        return [self._entries[stem] for stem in stems if stem in self._entries]

    def get(self, stem: str, chat_id: int, version: int) -> Kept | None:
        kept = self._entries.get(stem)
        if kept is None or (kept.chat_id, kept.version) != (chat_id, version):
            return None
        self._entries.move_to_end(stem)
        return kept

    def put(self, stem: str, kept: Kept) -> None:
        self.forget(stem)
        if kept.size > self._largest:
            return
        self._entries[stem] = kept
        self._size += kept.size
        while self._size > self._budget:
            self.forget(next(iter(self._entries)))

    def forget(self, stem: str) -> None:
        kept = self._entries.pop(stem, None)
        if kept is not None:
            self._size -= kept.size

    @contextmanager
    def calling(self) -> Iterator["Call"]:
        """For the length of one store operation: the SQL functions find this cache."""
        call = Call(self)
        token = CURRENT.set(call)
        try:
            yield call
        finally:
            CURRENT.reset(token)


class Call:
    """One store operation: the cache, and what its writes will make current once committed."""

    def __init__(self, cache: ChatCache) -> None:
        self.cache = cache
        self._written: list[tuple[str, Kept]] = []
        self._appended: list[tuple[int, psycopg.AsyncCursor, list]] = []

    def written(self, stem: str, kept: Kept) -> None:
        """The chat as a change wrote it, at the version that change gives it."""
        self._written.append((stem, kept))

    def appended(self, chat_id: int, changed: psycopg.AsyncCursor, messages: list) -> None:
        """Messages added after the current branch's last; ``changed`` answers the chat's
        stem and new version, once committed."""
        self._appended.append((chat_id, changed, messages))

    async def settle(self) -> None:
        """After the operation returned (its writes committed): keep what they made current."""
        for stem, kept in self._written:
            self.cache.put(stem, kept)
        for chat_id, changed, messages in self._appended:
            stem, version = await changed.fetchone()
            before = self.cache.get(stem, chat_id, version - 1)
            if before is None:
                self.cache.forget(stem)
                continue
            bodies = dict(before.bodies)
            bodies[0] = bodies.get(0, ()) + tuple(messages)
            self.cache.put(stem, Kept(chat_id, version, bodies, before.branches))


CURRENT: ContextVar[Call | None] = ContextVar("chatproxy_chat_cache", default=None)
