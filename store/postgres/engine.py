"""PostgresStore: the store (store/engine.py) on PostgreSQL, for any number of chatproxy
instances on one database.

Each operation borrows a connection (pool.py) for one short transaction (the SQL is in
chats.py, turns.py and search.py); no connection is kept while a turn streams. Chats read
or written are kept while the database says they are current (cache.py), so a turn on a
long chat does not read it all again. Holding a chat is a lease (leases.py). Every SWEEP_S
each instance also finishes the turns of instances that died (their leases expired), so a
killed instance's reply is stored within LEASE_S + SWEEP_S even if nobody asks for its chat;
its own running turns it leaves alone, even when the database was away for longer than
LEASE_S (and its renewals failed): their ends are retried for COMMIT_RETRY_S.

PostgreSQL away: an operation raises StoreUnavailable (503 with Retry-After; pool.py).
Meanwhile a turn's journal is skipped (journal.py), and its end is tried again for up to
COMMIT_RETRY_S.
"""

from __future__ import annotations

import asyncio
import logging
import random
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import psycopg

import jsonbytes

from .. import names
from ..engine import Store
from ..listing import BY_NAME, HIDE_ARCHIVED
from ..errors import ChatNotFound, StorageFailure, StoreError, StoreUnavailable
from . import chats, search, turns
from .cache import ChatCache
from .connection import connect, run_on_own_loop
from .journal import Journal
from .leases import LEASE_S, RENEW_S, Leases, new_owner
from .migrate import migrate
from .pool import CONNECT_TIMEOUT_S, POOL_SIZE, Pool, first_line

log = logging.getLogger("chatproxy.store")

T = TypeVar("T")

# GET /health answers within about two seconds.
HEALTH_WAIT_S = 1.5
SWEEP_S = 10.0
# A turn's end (its reply) is tried again this long while the database is away.
COMMIT_RETRY_S = 60.0
FIRST_COMMIT_RETRY_S, LAST_COMMIT_RETRY_S = 0.25, 5.0


# libpq's words when the server itself turned the connection down (no SQLSTATE comes with them).
_LOGIN_REFUSED = ("password authentication failed", "does not exist", "no pg_hba.conf entry", "authentication")


class PostgresStore(Store):
    engine = "postgresql"

    def __init__(
        self, url: str, *, pool_size: int = POOL_SIZE, lease_s: float = LEASE_S, renew_s: float = RENEW_S, sweep_s: float = SWEEP_S
    ) -> None:
        super().__init__()
        self.url = url
        self._pool = Pool(url, pool_size)
        self.where = self._pool.where
        self._connection = self._pool.connection
        self._leases = Leases(self._connection, url, new_owner(), lease_s, renew_s)
        self._cache = ChatCache()
        self._listings: dict[tuple[str, str], tuple[tuple, bytes]] = {}  # view -> (listing_state, JSON)
        self._journal = Journal(self._call)
        self._leases_held: dict[str, turns.Lease] = {}  # by stem: the leases this process's holds have
        self._sweep_s = sweep_s
        self._sweeper: asyncio.Task | None = None
        self._abandoned: set[asyncio.Task] = set()  # health checks not waited for (health())

    # -- life ------------------------------------------------------------------------------

    def open(self) -> None:
        """Reach the database and bring its schema up to date (on a loop of its own: this
        runs before the server's loop, or blocking it, at start-up)."""
        try:
            run_on_own_loop(self._migrate())
        except BaseException as error:
            raise self._start_up_error(error) from None

    async def _migrate(self) -> None:
        conn = await connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        try:
            applied = await migrate(conn)
        finally:
            await conn.close()
        if applied:
            log.info("PostgreSQL %s: applied schema migration(s) %s", self.where, ", ".join(map(str, applied)))

    def _start_up_error(self, error: BaseException) -> StoreError:
        if isinstance(error, StoreError):
            return error
        if not isinstance(error, psycopg.Error):
            return StorageFailure(f"PostgreSQL at {self.where}: {error}")
        sqlstate, problem = getattr(error, "sqlstate", None) or "", first_line(error)
        if sqlstate == "3D000" or problem.startswith("database ") and problem.endswith("does not exist"):
            return StoreUnavailable(f"PostgreSQL at {self.where} has no such database: {problem}")
        if sqlstate.startswith("28") or "FATAL:" in str(error) and any(words in problem for words in _LOGIN_REFUSED):
            return StoreUnavailable(f"PostgreSQL at {self.where} refused the login: {problem}")
        if sqlstate:
            return StorageFailure(f"PostgreSQL at {self.where} refused chatproxy's schema: {problem}")
        return StoreUnavailable(f"PostgreSQL at {self.where} cannot be reached: {problem}")

    async def start(self) -> None:
        await self._pool.open()
        if self._sweeper is None and self._sweep_s:
            self._sweeper = asyncio.ensure_future(self._sweep())
        await super().start()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        await self._leases.close()
        await self._pool.close()

    async def is_writable(self) -> bool:
        return (await self.health())["writable"]

    async def health(self) -> dict:
        """Within HEALTH_WAIT_S whatever the database does: a server that takes the query and
        never answers (hung, or cut off) is not waited for; its check ends on its own (a
        cancelled query waits for the server's word up to ten seconds, so it is not awaited)."""
        checking = asyncio.ensure_future(self._writable())
        done, _ = await asyncio.wait({checking}, timeout=HEALTH_WAIT_S + 0.5)
        if not done:
            checking.cancel()
            self._abandoned.add(checking)  # referenced until it ends
            checking.add_done_callback(self._abandoned.discard)
            error = f"PostgreSQL ({self.where}) did not answer within {HEALTH_WAIT_S + 0.5:g} s"
            return {"engine": self.engine, "writable": False, "error": error}
        return checking.result()

    async def _writable(self) -> dict:
        try:
            async with self._connection(HEALTH_WAIT_S) as conn:
                return {"engine": self.engine, "writable": await chats.is_writable(conn)}
        except StoreError as error:
            return {"engine": self.engine, "writable": False, "error": str(error)}

    # -- reads -----------------------------------------------------------------------------

    async def count_chats(self) -> int:
        return await self._call(chats.count)

    async def list_chats_json(self, order: str = BY_NAME, archived: str = HIDE_ARCHIVED) -> bytes:
        """Each view kept, encoded, while the database says nothing it shows has changed
        (chats.listing_state: a query of a few milliseconds against reading 50,000 chats)."""

        async def read(conn: psycopg.AsyncConnection) -> bytes:
            state = await chats.listing_state(conn)
            kept = self._listings.get((order, archived))
            if kept is not None and kept[0] == state:
                return kept[1]
            encoded = jsonbytes.dumps(await chats.listing(conn, order, archived, set(state[3] or ())))
            self._listings[(order, archived)] = (state, encoded)
            return encoded

        return await self._call(read)

    async def get(self, name: str) -> dict:
        return await self._call(chats.get, name)

    async def search(self, query: str, limit: int) -> list[dict]:
        return await self._call(search.search, query, limit)

    async def export_lines(self, chat_names: list[str]) -> bytes:
        return await self._call(chats.export_lines, chat_names)

    # -- changes ---------------------------------------------------------------------------

    async def add(self, name: str, chat: dict) -> dict:
        return await self._call(chats.create, name, chat)

    async def create_unique(self, name: str, chat: dict) -> str:
        return await self._call(chats.create_unique, name, chat)

    async def delete(self, name: str) -> None:
        await self._call(chats.delete, name)

    async def rename(self, name: str, new_name: str) -> None:
        await self._call(chats.rename, name, new_name)

    async def _update(self, name: str, change: Callable[[dict], T]) -> T:
        return await self._call(chats.change, name, change)

    # -- holding a chat, and its turn -------------------------------------------------------

    @asynccontextmanager
    async def _held(self, name: str) -> AsyncIterator[None]:
        lease = await self._leases.take(name)
        self._leases_held[lease.stem] = lease
        try:
            yield
        finally:
            del self._leases_held[lease.stem]
            await self._leases.release(lease)

    async def _begin_turn(self, name: str, plan: dict, turn: dict, ready: Callable[[dict], None]) -> None:
        await self._call(turns.begin_turn, self._lease(name), name, plan, turn, ready)

    async def journal_turn(self, name: str, turn_id: object, reply: dict) -> None:
        """With the other turns' of the last moment (journal.py); skipped while the database is away."""
        await self._journal.write(self._lease(name).stem, str(turn_id), reply)

    async def end_turn(self, name: str, turn_id: object, reply: dict | None) -> None:
        lease = self._lease(name)
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + COMMIT_RETRY_S
        delay, tried = FIRST_COMMIT_RETRY_S, False
        while True:
            try:
                await self._call(turns.end_turn, lease, name, turn_id, reply)
                return
            except ChatNotFound:
                # After a lost connection the commit may have happened: the turn is over then.
                if tried and await self._call(chats.exists, name):
                    return
                raise
            except StoreUnavailable as error:
                if loop.time() + delay > give_up_at:
                    raise
                log.warning("Storing the reply to chat '%s' failed, trying again in %g s: %s", name, delay, error)
            tried = True
            await asyncio.sleep(delay)
            delay = min(2 * delay, LAST_COMMIT_RETRY_S)

    async def recover(self) -> int:
        """The turns of stopped instances finished; never one this process still runs, though
        its lease lapsed while the database was away (turns.recover)."""
        finished = await self._call(turns.recover, self._leases.owner, self._leases.lease_s, self._leases.epochs_held)
        if finished:
            log.info("Stored %d turn(s) that stopped instances left unfinished", len(finished))
        return len(finished)

    # -- internals -------------------------------------------------------------------------

    def _lease(self, name: str) -> turns.Lease:
        lease = self._leases_held.get(names.stem_for(name))
        if lease is None:
            raise RuntimeError(f"Chat '{name}' is not held here: turns run inside Store.hold()")
        return lease

    async def _call(self, function: Callable[..., Awaitable[T]], *arguments: Any) -> T:
        """``function(conn, *arguments)`` on a pooled connection, with this store's cache."""
        async with self._connection() as conn:
            with self._cache.calling() as call:
                result = await function(conn, *arguments)
            await call.settle()  # it returned: what it wrote is committed
            return result

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_s * random.uniform(0.8, 1.2))  # instances spread out
            try:
                await self.recover()
            except StoreError as error:
                log.debug("Looking for turns stopped instances left: %s", error)
