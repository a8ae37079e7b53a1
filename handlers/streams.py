"""StreamRegistry: the streaming requests in progress, for the concurrency limit and shutdown."""

from __future__ import annotations

import asyncio
from typing import Protocol

from lmstudio import UpstreamError

from .errors import ApiError

SHUTTING_DOWN = UpstreamError(503, "chatproxy is shutting down; the reply was cut short", "shutdown")


class Abortable(Protocol):
    def abort_stream(self, reason: BaseException) -> None: ...


class StreamRegistry:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.closing = False
        self._handlers: set[Abortable] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._handlers)

    def enter(self, handler: Abortable) -> None:
        if self.closing:
            raise ApiError(503, "chatproxy is shutting down", {"Retry-After": "5"})
        if len(self._handlers) >= self.limit:
            raise ApiError(
                503, f"Too many concurrent streams ({self.limit}); try again shortly", {"Retry-After": "1"}
            )
        self._handlers.add(handler)
        self._idle.clear()

    def leave(self, handler: Abortable) -> None:
        self._handlers.discard(handler)
        if not self._handlers:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def abort_all(self, reason: BaseException) -> None:
        for handler in list(self._handlers):
            handler.abort_stream(reason)
