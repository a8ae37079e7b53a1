"""Connections to chatproxy's database, for one process: a small pool, lent one operation at
a time, and psycopg's errors made the store's own.

A turn borrows a connection for a few milliseconds at a time, never while it streams, so a
handful serve a thousand streams. A burst of turns may find every connection busy: a
request then waits up to CONNECTION_WAIT_S. But once an attempt to connect has failed, the
database is away, and requests are answered StoreUnavailable (503 with Retry-After) within
a second, until a connection succeeds again; the pool keeps trying, and finds the database
soon after it is back, without a restart.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..errors import StorageFailure, StoreUnavailable
from .connection import TCP_OPTIONS, configure

# Connections each process may keep at most (storage.pool_size).
POOL_SIZE = 10
CONNECT_TIMEOUT_S = 5
# How long a request waits for a connection before it is answered 503: all of the pool's
# connections busy, up to CONNECTION_WAIT_S, asking again every WAIT_SLICE_S; once the
# database is away, WHILE_AWAY_WAIT_S.
CONNECTION_WAIT_S, WAIT_SLICE_S, WHILE_AWAY_WAIT_S = 30.0, 1.0, 0.5
# The pool gives up a failing connection attempt (and its growing back-off) after this long,
# so that the next request tries again at once: it finds the database soon after it is back.
RECONNECT_S = 2.0
# A connection used this recently is lent again without a check (a round trip): one idle
# longer may have been closed by a restart of the server meanwhile.
CHECK_IDLE_S = 1.0


def described(url: str) -> str:
    """``user@host:port/database``, never the password: for messages and logs."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "(an unreadable URL)"
    user = f"{parts['user']}@" if "user" in parts else ""
    port = f":{parts['port']}" if "port" in parts else ""
    return f"{user}{parts.get('host', 'localhost')}{port}/{parts.get('dbname', '')}"


def first_line(error: BaseException) -> str:
    """What went wrong, on one line: the server's own words if it spoke (after "FATAL:")."""
    text = str(error).strip()
    text = text.split("FATAL:", 1)[1].strip() if "FATAL:" in text else text.removeprefix("connection failed: ").removeprefix("connection is bad: ")
    return text.splitlines()[0] if text else type(error).__name__


class Pool:
    def __init__(self, url: str, size: int = POOL_SIZE) -> None:
        self.url = url
        self.where = described(url)
        self._size = size
        self._pool: AsyncConnectionPool | None = None
        self._opening = asyncio.Lock()
        self._away = False  # the last attempt to connect failed: requests wait less for one
        self._used_at: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> time.monotonic()

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection (autocommit, set up by connection.configure), for one operation."""
        pool = self._pool or await self.open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or CONNECTION_WAIT_S)
        while True:
            wait = WHILE_AWAY_WAIT_S if self._away else WAIT_SLICE_S
            try:
                conn = await pool.getconn(max(0.001, min(wait, deadline - loop.time())))
                break
            except PoolTimeout:
                if self._away or loop.time() >= deadline:
                    raise StoreUnavailable(f"PostgreSQL ({self.where}) did not answer in time; try again shortly") from None
        try:
            yield conn
            self._used_at[conn] = time.monotonic()
            self._away = False
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            self._away = self._away or conn.broken
            raise StoreUnavailable(f"PostgreSQL ({self.where}) cannot be reached: {first_line(error)}") from None
        except psycopg.Error as error:
            raise StorageFailure(f"PostgreSQL ({self.where}) refused the change: {first_line(error)}") from None
        finally:
            await pool.putconn(conn)

    async def open(self) -> AsyncConnectionPool:
        async with self._opening:
            if self._pool is not None:
                return self._pool
            pool = AsyncConnectionPool(
                self.url,
                min_size=1,
                max_size=self._size,
                kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S, **TCP_OPTIONS},
                configure=configure,
                check=self._check,
                connection_class=watched_connections(self._connected),
                timeout=CONNECTION_WAIT_S,
                reconnect_timeout=RECONNECT_S,
                name="chatproxy",
                open=False,
            )
            await pool.open()
            self._pool = pool
            return pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _connected(self, succeeded: bool) -> None:
        """Each of the pool's attempts to connect: a failed one means the database is away."""
        self._away = not succeeded

    async def _check(self, conn: psycopg.AsyncConnection) -> None:
        """A connection the server closed (a restart) is found before an operation gets it."""
        if time.monotonic() - self._used_at.get(conn, 0.0) > CHECK_IDLE_S:
            await AsyncConnectionPool.check_connection(conn)


def watched_connections(connected: Callable[[bool], None]) -> type[psycopg.AsyncConnection]:
    """A connection class that tells ``connected`` whether each attempt to connect succeeded."""

    class Watched(psycopg.AsyncConnection):
        @classmethod
        async def connect(cls, *arguments: Any, **options: Any) -> psycopg.AsyncConnection:
            try:
                conn = await super().connect(*arguments, **options)
            except psycopg.OperationalError:
                connected(False)
                raise
            connected(True)
            return conn

    return Watched
