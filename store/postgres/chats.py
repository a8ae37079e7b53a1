"""Every store operation on chats, as SQL: reads, creating, deleting, renaming, and the
changes (settings, edit, branches, removing a message), each a short transaction.

A change reads the chat locked (``SELECT ... FOR UPDATE``), applies the folder's own rules
to the dict (store/history.py) and writes back the rows it touched (rows.write), as the
folder reads, changes and writes its file under the chat's flock.
"""

from __future__ import annotations

import re
from typing import Callable, TypeVar

import psycopg

import jsonbytes

from .. import names
from .. import listing as views
from ..listing import BY_NAME, HIDE_ARCHIVED
from ..errors import ChatExists, ChatNotFound
from . import rows
from .tree import RUNNING_TURN, Loaded, searchable

T = TypeVar("T")

# -- reads ---------------------------------------------------------------------------------


async def get(conn: psycopg.AsyncConnection, name: str) -> dict:
    return await rows.read(conn, name)


# The chats whose turn is live: its holder's lease has not expired.
_LIVE_TURNS = "SELECT t.chat_id FROM turns t JOIN leases l ON l.epoch = t.epoch AND l.expires_at > now()"


async def listing(
    conn: psycopg.AsyncConnection, order: str = BY_NAME, archived: str = HIDE_ARCHIVED, running: set[int] | None = None
) -> list[dict]:
    """A view of the listing, by the folder's rules (store/listing.py): by name as the folder
    sorts them (by code point, read in that order from an index), or by recent activity;
    ``"running": true`` for a chat whose turn is live (``running``: their ids, when the
    caller has them from ``listing_state``)."""
    if running is None:
        cursor = await conn.execute(_LIVE_TURNS)
        running = {row[0] for row in await cursor.fetchall()}
    cursor = await conn.execute(f'SELECT id, {SUMMARY_COLUMNS} FROM chats ORDER BY name COLLATE "C", stem')
    entries = []
    for chat_id, *columns in await cursor.fetchall():
        entry = summary(*columns)
        if order == BY_NAME:
            entry = views.by_name(entry)
        if chat_id in running:
            entry["running"] = True
        entries.append(entry)
    return entries if order == BY_NAME else views.recent(entries, [], archived)


async def listing_state(conn: psycopg.AsyncConnection) -> tuple:
    """What a listing depends on, in a few numbers: the chats (how many; their ids and
    versions, which every change moves: ids only grow, versions only grow) and whose turns
    are live. A listing read after this was taken is at least as new."""
    cursor = await conn.execute(
        "SELECT count(*), sum(id), sum(version),"
        f" (SELECT array_agg(live.chat_id ORDER BY live.chat_id) FROM ({_LIVE_TURNS}) live) FROM chats"
    )
    return tuple(await cursor.fetchone())


# What a listing entry says of a chat (store/listing.py), from the columns kept beside its
# settings (rows.settings_columns): the model and title as JSON text, decoded by ``summary``.
SUMMARY_COLUMNS = "stem, model::text, title_json::text, updated_at, pinned, archived"


def _json_text(value: str | None) -> str | None:
    """A JSON string's value: cut out when it holds no escape (orjson escapes only quotes,
    backslashes and control characters), else decoded."""
    if value is None:
        return None
    return value[1:-1] if "\\" not in value else jsonbytes.loads(value)


def summary(stem: str, model: str | None, title: str | None, updated_at: str | None, pinned: bool, archived: bool) -> dict:
    """The listing's entry for a chat, from SUMMARY_COLUMNS."""
    name = stem if "%" not in stem else names.name_for(stem + names.SUFFIX)  # only escapes differ
    fields = {"model": _json_text(model), "title": _json_text(title), "updated_at": updated_at, "pinned": pinned, "archived": archived}
    return views.summary(name, fields)


async def exists(conn: psycopg.AsyncConnection, name: str) -> bool:
    cursor = await conn.execute("SELECT EXISTS (SELECT 1 FROM chats WHERE stem = %s)", (names.stem_for(name),))
    return (await cursor.fetchone())[0]


async def count(conn: psycopg.AsyncConnection) -> int:
    cursor = await conn.execute("SELECT count(*) FROM chats")
    return (await cursor.fetchone())[0]


async def export_lines(conn: psycopg.AsyncConnection, chat_names: list[str]) -> bytes:
    """NDJSON, one ``{"name", "chat"}`` line per chat named that still exists, in that order."""
    stems = [names.stem_for(name) for name in chat_names]
    chats = await rows.read_many(conn, stems)
    for chat in chats.values():
        chat.pop(RUNNING_TURN, None)  # as the folder's export: the chat, not its running turn
    return b"".join(
        b'{"name":' + jsonbytes.dumps(name) + b',"chat":' + jsonbytes.dumps(chats[stem]) + b"}\n"
        for name, stem in zip(chat_names, stems)
        if stem in chats
    )


async def is_writable(conn: psycopg.AsyncConnection) -> bool:
    """False on a read-only standby."""
    cursor = await conn.execute("SELECT NOT pg_is_in_recovery()")
    return (await cursor.fetchone())[0]


# -- creating, deleting, renaming ------------------------------------------------------------


async def create(conn: psycopg.AsyncConnection, name: str, chat: dict) -> dict:
    """Store ``chat`` (any chat dict: a new one, or an import) under ``name``; ChatExists if taken."""
    stem = names.stem_for(name)
    async with conn.transaction():
        cursor = await conn.execute(
            "INSERT INTO chats (stem, name, settings) VALUES (%s, %s, '{}') ON CONFLICT (stem) DO NOTHING RETURNING id",
            (stem, searchable(name)),
        )
        row = await cursor.fetchone()
        if row is None:
            raise ChatExists(name)
        await rows.write(conn, row[0], Loaded.empty(), chat)
    return chat


async def create_unique(conn: psycopg.AsyncConnection, name: str, chat: dict) -> str:
    """Create ``chat`` under ``name`` or, if taken, ``name (2)``, ``name (3)``...: the first
    free one, as the folder numbers them; returns the name used."""
    first = names.fitted(name)
    base = names.fitted(name, room=8)
    pattern = _like_escaped(names.stem_for(base)) + r" (%)"
    candidates = [first] + [f"{base} ({number})" for number in range(2, 10_000)]
    for _ in range(100):  # another instance may take the free name first: look again
        cursor = await conn.execute(
            "SELECT stem FROM chats WHERE stem = %s OR stem LIKE %s", (names.stem_for(first), pattern)
        )
        taken = {row[0] for row in await cursor.fetchall()}
        candidate = next((candidate for candidate in candidates if names.stem_for(candidate) not in taken), None)
        if candidate is None:
            break
        try:
            await create(conn, candidate, chat)
            return candidate
        except ChatExists:
            continue
    raise ChatExists(name)


def _like_escaped(text: str) -> str:
    return re.sub(r"([\\%_])", r"\\\1", text)


async def delete(conn: psycopg.AsyncConnection, name: str) -> None:
    cursor = await conn.execute("DELETE FROM chats WHERE stem = %s", (names.stem_for(name),))
    if cursor.rowcount == 0:
        raise ChatNotFound(name)


async def rename(conn: psycopg.AsyncConnection, name: str, new_name: str) -> None:
    """Give the chat a new name; ChatExists if another chat has it. One statement: atomic."""
    stem, new_stem = names.stem_for(name), names.stem_for(new_name)
    if stem == new_stem:
        return
    try:
        cursor = await conn.execute(
            "UPDATE chats SET stem = %s, name = %s, version = version + 1 WHERE stem = %s", (new_stem, searchable(new_name), stem)
        )
    except psycopg.errors.UniqueViolation:
        raise ChatExists(new_name) from None
    if cursor.rowcount == 0:
        raise ChatNotFound(name)


# -- changes -----------------------------------------------------------------------------------


async def change(conn: psycopg.AsyncConnection, name: str, function: Callable[[dict], T]) -> T:
    """Read the chat locked, let ``function`` change the dict (and answer), write what changed."""
    async with conn.transaction():
        return (await rows.change(conn, name, function))[1]
