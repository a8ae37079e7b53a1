"""Holding chats across instances (turns.py's leases), as one process does it: taking a
lease, waiting while another instance holds the chat, renewing what it holds, letting go.

A lease lasts ``lease_s`` and is renewed every ``renew_s`` while held, every lease this
process holds in one statement: an instance killed mid-turn lets go within ``lease_s``. A
hold that finds the chat taken waits for the holder's NOTIFY on release (one LISTEN
connection per process, outside the pool) and asks again at growing intervals up to
LAST_POLL_S, in case it missed it (listening connection lost, holder killed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from contextlib import AbstractAsyncContextManager, suppress
from typing import Callable, KeysView

import psycopg

from .. import names
from ..errors import StoreError
from . import turns
from .connection import connect
from .pool import CONNECT_TIMEOUT_S
from .turns import Lease

log = logging.getLogger("chatproxy.store")

# How long a lease lasts, and how often it is renewed while held: a holder may miss two
# renewals (a slow database, a long pause) before it loses the chat.
LEASE_S, RENEW_S = 30.0, 10.0
# After a failed renewal (the database away), how soon it is tried again.
RENEW_RETRY_S = 2.0
# How often a waiting hold asks again without a NOTIFY: soon at first, then every second.
FIRST_POLL_S, LAST_POLL_S = 0.05, 1.0
# The listening connection, lost, is made again after this long at first, then up to the last.
FIRST_LISTEN_RETRY_S, LAST_LISTEN_RETRY_S = 0.1, 5.0


def new_owner() -> str:
    """A name for the leases of one store in one process: its host and pid, and a random part,
    since a process started again may get the same pid (pid 1 in a container) and must not
    pass for the one before, whose turns are gone."""
    return f"{socket.gethostname()} pid {os.getpid()} {secrets.token_hex(4)}"


class Leases:
    def __init__(
        self,
        connection: Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection]],
        url: str,
        owner: str,
        lease_s: float = LEASE_S,
        renew_s: float = RENEW_S,
    ) -> None:
        self._connection = connection  # a pooled connection, its errors the store's own
        self._url = url
        self.owner = owner
        self.lease_s = lease_s
        self._renew_s = renew_s
        self._held: dict[int, Lease] = {}  # by epoch
        self._waiting: dict[str, set[asyncio.Event]] = {}  # by stem: woken when it is let go
        self._tasks: list[asyncio.Task] = []  # renewing, listening
        self._releasing: set[asyncio.Task] = set()  # lets go of what could not be let go at once
        self._closed = False

    async def take(self, name: str) -> Lease:
        """Hold the chat ``name``, once nobody else does (a turn a dead holder left on it is
        finished first). StoreError if the database cannot be reached."""
        self._start()
        stem = names.stem_for(name)
        delay = FIRST_POLL_S
        while True:
            released = asyncio.Event()  # listened for before asking: a release between is heard
            self._waiting.setdefault(stem, set()).add(released)
            try:
                async with self._connection() as conn:
                    lease = await turns.take_lease(conn, name, self.owner, self.lease_s)
                if lease is not None:
                    self._held[lease.epoch] = lease
                    return lease
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(released.wait(), delay)
                delay = min(2 * delay, LAST_POLL_S)
            finally:
                waiting = self._waiting[stem]
                waiting.discard(released)
                if not waiting:
                    del self._waiting[stem]

    @property
    def epochs_held(self) -> KeysView[int]:
        """The epochs of the leases held now, each for a turn or change still running in this
        process (a live view: the sweep reads it anew at each statement)."""
        return self._held.keys()

    async def release(self, lease: Lease) -> None:
        """Let go. If the database cannot be reached, it is tried again in the background
        until the lease would have expired by itself."""
        self._held.pop(lease.epoch, None)
        if not await self._release(lease) and not self._closed:
            log.warning("Could not let go of chat '%s' yet; trying again", names.name_for(lease.stem + names.SUFFIX))
            task = asyncio.ensure_future(self._release_later(lease))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _release(self, lease: Lease) -> bool:
        try:
            async with self._connection() as conn:
                await turns.release_lease(conn, lease)
        except StoreError:
            return False
        return True

    async def _release_later(self, lease: Lease) -> None:
        loop = asyncio.get_running_loop()
        expired_at = loop.time() + self.lease_s
        while loop.time() < expired_at:
            await asyncio.sleep(RENEW_RETRY_S)
            if await self._release(lease):
                return

    async def close(self) -> None:
        self._closed = True
        tasks, self._tasks = [*self._tasks, *self._releasing], []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self) -> None:
        self._closed = False  # the store opens again on its next use
        if not self._tasks:
            self._tasks = [asyncio.ensure_future(self._renew()), asyncio.ensure_future(self._listen())]

    async def _renew(self) -> None:
        while True:
            epochs = list(self._held)
            if not epochs:
                await asyncio.sleep(self._renew_s)
                continue
            try:
                async with self._connection() as conn:
                    kept = await turns.renew_leases(conn, epochs, self.lease_s)
            except StoreError as error:
                log.warning("Could not renew the hold on %d chat(s): %s", len(epochs), error)
                await asyncio.sleep(RENEW_RETRY_S)
                continue
            for epoch in set(epochs) - kept:
                lease = self._held.get(epoch)
                if lease is not None:  # not let go meanwhile: lost
                    log.error(
                        "Lost the hold on chat '%s' (not renewed in time; another instance may have taken it)",
                        names.name_for(lease.stem + names.SUFFIX),
                    )
            await asyncio.sleep(self._renew_s)

    async def _listen(self) -> None:
        delay = FIRST_LISTEN_RETRY_S
        while True:
            try:
                conn = await connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
                try:
                    await conn.execute(f"LISTEN {turns.CHANNEL}")
                    delay = FIRST_LISTEN_RETRY_S
                    self._wake(list(self._waiting))  # what was let go while nobody listened
                    async for notify in conn.notifies():
                        self._wake([notify.payload])
                finally:
                    await conn.close()
            except psycopg.Error as error:
                log.debug("Listening for chats let go: %s", error)
            await asyncio.sleep(delay)
            delay = min(2 * delay, LAST_LISTEN_RETRY_S)

    def _wake(self, stems: list[str]) -> None:
        for stem in stems:
            for released in self._waiting.get(stem, ()):
                released.set()
