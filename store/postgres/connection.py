"""What every connection to chatproxy's database is set up with."""

from __future__ import annotations

import psycopg
from psycopg.types.json import set_json_dumps, set_json_loads

import jsonbytes


async def configure(conn: psycopg.AsyncConnection) -> None:
    """JSON in and out through the project's encoder (orjson, with the standard library
    for what orjson refuses); the pool calls this for each new connection."""
    set_json_loads(jsonbytes.loads, conn)
    set_json_dumps(jsonbytes.dumps, conn)


async def connect(url: str, **options) -> psycopg.AsyncConnection:
    conn = await psycopg.AsyncConnection.connect(url, **options)
    await configure(conn)
    return conn
