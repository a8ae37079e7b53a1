"""The journals of this process's turns, written together.

Each running turn journals its reply about once a second; a thousand streams would be a
thousand statements a second. Instead, what the turns journal within BATCH_S goes to the
database in one statement (turns.journal_turns), and each turn waits for that one. While
the database is away the journal is skipped, said once per batch: only a kill of this
instance in that time would miss it, and the stream goes on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from ..errors import StoreUnavailable
from . import turns

log = logging.getLogger("chatproxy.store")

# A reply journaled waits this much longer to be written: nothing, next to the second
# between two journals of a turn.
BATCH_S = 0.1


class Journal:
    def __init__(self, call: Callable[..., Awaitable[Any]]) -> None:
        self._call = call  # runs a function of turns.py on a pooled connection
        self._waiting: dict[tuple[str, str], dict] = {}  # (chat stem, turn id) -> reply
        self._next: asyncio.Future | None = None

    async def write(self, stem: str, turn_id: str, reply: dict) -> None:
        self._waiting[(stem, turn_id)] = reply  # a newer reply of the turn replaces the one waiting
        if self._next is None:
            self._next = asyncio.ensure_future(self._write_soon())
        await asyncio.shield(self._next)

    async def _write_soon(self) -> None:
        await asyncio.sleep(BATCH_S)
        batch, self._waiting, self._next = self._waiting, {}, None
        try:
            await self._call(turns.journal_turns, batch)
        except StoreUnavailable as error:
            log.warning("Journaling the replies of %d turn(s) skipped: %s", len(batch), error)
