"""TurnRegistry: the turns of this process, by chat, from their start to their last word.

A chat's turns run one after another (store.hold); the registry keeps them in arrival order,
so ``current(name)`` is the one that runs (or waits first) and a watcher attaches to it.
Each turn holds one of the stream slots (``stream.max_concurrent``) for its whole life, with
or without watchers: it is an upstream stream, and shutdown waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from .titles import TitleWriter
from .turn import Turn

log = logging.getLogger("chatproxy.turn")


class TurnRegistry:
    def __init__(self, store, upstream, slots, metrics, titles: TitleWriter) -> None:
        self.owner: str | None = None  # this process's address for other processes (turn marks)
        self._store = store
        self._upstream = upstream
        self._slots = slots  # enter(turn) refuses when full or closing; leave(turn); abort_all
        self._metrics = metrics
        self.titles = titles
        self._by_chat: dict[str, deque[Turn]] = {}

    def start(self, name: str, plan: dict, *, detach: bool, route: str) -> Turn:
        """Create the turn and run it; it waits behind the chat's running turn, if any."""
        turn = Turn(
            name, plan, detach=detach, owner=self.owner, store=self._store, upstream=self._upstream,
            metrics=self._metrics, route=route, titles=self.titles,
        )
        self._slots.enter(turn)
        self._by_chat.setdefault(name, deque()).append(turn)
        task = asyncio.ensure_future(turn.run())
        task.add_done_callback(lambda done: self._ended(turn, done))
        return turn

    def current(self, name: str) -> Turn | None:
        """The chat's running turn (or, between two, the next)."""
        turns = self._by_chat.get(name)
        return turns[0] if turns else None

    def running(self) -> set[str]:
        return set(self._by_chat)

    def __len__(self) -> int:
        return sum(len(turns) for turns in self._by_chat.values())

    def _ended(self, turn: Turn, task: asyncio.Future) -> None:
        turns = self._by_chat.get(turn.name)
        if turns is not None:
            turns.remove(turn)
            if not turns:
                del self._by_chat[turn.name]
        self._slots.leave(turn)
        if not task.cancelled() and task.exception() is not None:
            log.error("Turn on chat '%s' failed", turn.name, exc_info=task.exception())
