"""The schema's migrations: numbered SQL files applied in order, each once.

Every instance applies what is missing as it starts. The whole run is one transaction
under a transaction-level advisory lock, so instances starting together wait for the
first, then find nothing left to do; a migration that fails leaves the schema as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ..errors import StorageFailure

FOLDER = Path(__file__).with_name("migrations")
# Any constant works, as long as nothing else in the database uses it: "chat" in ASCII.
LOCK_KEY = 0x63686174
_FILE = re.compile(r"(\d+)_([\w-]+)\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def migrations(folder: Path = FOLDER) -> list[Migration]:
    found = []
    for path in folder.iterdir():
        match = _FILE.fullmatch(path.name)
        if match:
            found.append(Migration(int(match[1]), match[2], path))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number in {folder}")
    return found


async def migrate(conn: psycopg.AsyncConnection, folder: Path = FOLDER) -> list[int]:
    """Apply the migrations the database lacks; returns the versions applied here.

    Refuses a database that a newer chatproxy has migrated further than this one knows:
    its tables may no longer mean what this code expects."""
    known = migrations(folder)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS chatproxy_migrations"
            " (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT version FROM chatproxy_migrations")
        applied = {row[0] for row in await cursor.fetchall()}
        newest = max((migration.version for migration in known), default=0)
        if applied and max(applied) > newest:
            raise StorageFailure(
                f"The database was migrated by a newer chatproxy (schema version {max(applied)});"
                f" this one knows versions up to {newest}. Upgrade chatproxy"
            )
        done = []
        for migration in known:
            if migration.version in applied:
                continue
            await conn.execute(migration.path.read_text(encoding="utf-8").encode())
            await conn.execute(
                "INSERT INTO chatproxy_migrations (version, name) VALUES (%s, %s)", (migration.version, migration.name)
            )
            done.append(migration.version)
        return done
