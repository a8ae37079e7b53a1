"""The two store engines under test, and what a test reads and writes beside the server.

A test module marked ``pytest.mark.both_engines`` runs each of its tests twice: on the
chats folder and on PostgreSQL (tests/postgres.py starts one). A test that asks for
``chats_dir`` looks at the folder's files and runs on the folder only.

``stored`` reads and writes the store under test directly, not through the API: to show
that a refused request changed nothing (``snapshot``: every chat exactly as kept), or to put
a chat in place as a hand edit or another process would (``put``).
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import pytest

ENGINES = ("folder", "postgres")


def parametrize_engines(metafunc) -> None:
    """For pytest_generate_tests: both engines for the tests that may run on both."""
    if "engine" not in metafunc.fixturenames or metafunc.definition.get_closest_marker("both_engines") is None:
        return
    if "chats_dir" in inspect.signature(metafunc.function).parameters:
        return
    metafunc.parametrize("engine", ENGINES, indirect=True)


class StoredFolder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def snapshot(self) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in sorted(self.folder.glob("*.json"))} if self.folder.exists() else {}

    async def chats(self) -> dict[str, dict]:
        """Every chat, parsed, by the name of its file."""
        return {path.name: json.loads(path.read_text()) for path in self.folder.glob("*.json")}

    async def chat(self, name: str) -> dict | None:
        path = self.folder / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def last_message_now(self, name: str) -> dict:
        """Blocking, for a callback: the last message of the chat's current branch as kept now."""
        return json.loads((self.folder / f"{name}.json").read_text())["messages"][-1]

    async def names(self) -> list[str]:
        return sorted(path.stem for path in self.folder.glob("*.json")) if self.folder.exists() else []

    async def clear(self) -> None:
        for path in self.folder.glob("*.json"):
            path.unlink()

    async def put(self, name: str, chat: dict) -> None:
        self.folder.mkdir(exist_ok=True)
        temp = self.folder / f".{name}.tmp"
        temp.write_text(json.dumps(chat))
        os.replace(temp, self.folder / f"{name}.json")  # as an editor or a sync tool saves

    async def close(self) -> None:
        pass


class StoredPostgres:
    """Rows as they are, read on a connection of the test's own."""

    TABLES = {
        "chats": "SELECT stem, name, settings::text, updated_at, model::text, prompt FROM chats ORDER BY stem",
        "messages": "SELECT c.stem, branch, position, body::text FROM messages JOIN chats c ON c.id = chat_id ORDER BY 1, 2, 3",
        "branches": "SELECT c.stem, branch, parent, key, ordinal, bare FROM branches JOIN chats c ON c.id = chat_id ORDER BY 1, 2",
        "turns": "SELECT c.stem, turn_id, reply::text FROM turns JOIN chats c ON c.id = chat_id ORDER BY 1",
    }

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn = None

    async def connection(self):
        from store.postgres.connection import connect

        if self._conn is None:
            self._conn = await connect(self.url, autocommit=True)
        return self._conn

    async def snapshot(self) -> dict[str, list[tuple]]:
        conn = await self.connection()
        return {table: await (await conn.execute(query)).fetchall() for table, query in self.TABLES.items()}

    async def chats(self) -> dict[str, dict]:
        from store.postgres import rows

        return await rows.read_many(await self.connection(), await self.names())

    async def chat(self, name: str) -> dict | None:
        from store import ChatNotFound
        from store.postgres import rows

        try:
            chat = await rows.read(await self.connection(), name)
        except ChatNotFound:
            return None
        chat.pop("running_turn", None)  # kept apart on PostgreSQL; the folder's file holds it
        return chat

    def last_message_now(self, name: str) -> dict:
        import psycopg

        with psycopg.connect(self.url) as conn:
            row = conn.execute(
                "SELECT body::text FROM messages JOIN chats c ON c.id = chat_id WHERE c.stem = %s AND branch = 0"
                " ORDER BY position DESC LIMIT 1",
                (name,),
            ).fetchone()
        return json.loads(row[0])

    async def names(self) -> list[str]:
        conn = await self.connection()
        return [row[0] for row in await (await conn.execute("SELECT stem FROM chats ORDER BY stem")).fetchall()]

    async def clear(self) -> None:
        await (await self.connection()).execute("DELETE FROM chats")

    async def put(self, name: str, chat: dict) -> None:
        from store.postgres import chats

        conn = await self.connection()
        await conn.execute("DELETE FROM chats WHERE stem = %s", (name,))
        await chats.create(conn, name, chat)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


@pytest.fixture
def engine(request) -> str:
    """"folder" or "postgres": the store the server under test keeps its chats in."""
    return getattr(request, "param", "folder")


@pytest.fixture
def store_url(engine, request) -> str | None:
    """A new database of its own on PostgreSQL; None on the folder."""
    return request.getfixturevalue("postgres_url") if engine == "postgres" else None


@pytest.fixture
def instance_settings(store_url):
    """For tests/helpers.start_server: the settings of one more instance on the store under
    test. On PostgreSQL each advertises an address of its own, where the others reach it."""
    from tests.helpers import free_port

    def settings() -> dict:
        if store_url is None:
            return {}
        return {"storage__url": json.dumps(store_url), "server__advertise_url": json.dumps(f"http://127.0.0.1:{free_port()}")}

    return settings


@pytest.fixture
def stored(store_url, tmp_path, io_loop):
    keeper = StoredPostgres(store_url) if store_url else StoredFolder(tmp_path / "chats")
    yield keeper
    io_loop.run_sync(keeper.close)
