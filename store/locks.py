"""Per-key asyncio locks that are dropped when nobody holds or waits for them."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator


class KeyedLocks:
    """``async with locks.hold(key)``: one holder per key at a time, waiters served in arrival order.

    asyncio.Lock wakes waiters first-in first-out, which is what makes turns on one chat run
    in the order their requests came. Entries are removed when their last user leaves, so
    10,000 chats do not leave 10,000 locks behind.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]

    def users(self, key: str) -> int:
        entry = self._locks.get(key)
        return entry[1][0] if entry else 0

    def __len__(self) -> int:
        return len(self._locks)
