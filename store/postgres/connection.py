"""What every connection to chatproxy's database is set up with."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine

import psycopg
from psycopg.types.json import set_json_dumps, set_json_loads

import jsonbytes

# A database cut off by the network is found by the kernel, not waited for forever: an idle
# connection (the LISTEN one most of all) is probed after 10 s, and data unacknowledged for
# 20 s ends the connection (libpq ignores both on a Unix socket, where they cannot happen).
TCP_OPTIONS = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 2, "tcp_user_timeout": 20_000}


async def configure(conn: psycopg.AsyncConnection) -> None:
    """JSON in and out through the project's encoder (orjson, with the standard library
    for what orjson refuses); the pool calls this for each new connection (autocommit).
    No JIT compiling and no parallel workers: every statement here is short, and when the
    planner misjudged a search's size, compiling it (tens of ms) or starting workers for it
    (a word in 50,000 chats: 57 ms against 38 alone) cost more than it saved."""
    set_json_loads(jsonbytes.loads, conn)
    set_json_dumps(jsonbytes.dumps, conn)
    await conn.execute("SET jit = off")
    await conn.execute("SET max_parallel_workers_per_gather = 0")


async def connect(url: str, **options) -> psycopg.AsyncConnection:
    conn = await psycopg.AsyncConnection.connect(url, **TCP_OPTIONS, **options)
    await configure(conn)
    return conn


def run_on_own_loop(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run ``coroutine`` to the end on a loop of its own in a thread, and wait: blocking code
    (start-up) that may itself run on a loop, which it leaves alone."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as error:  # raised again in the caller's thread
            failure.append(error)

    thread = threading.Thread(target=run, name="chatproxy-own-loop")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
