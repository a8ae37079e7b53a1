"""Reading a chat's rows and writing what a change touches: the SQL under chats.py and turns.py."""

from __future__ import annotations

from typing import Callable, TypeVar

import psycopg

from .. import chatfile, names
from ..errors import ChatNotFound
from .tree import BranchRow, Changes, Loaded, Stored, compose, diff, encode, searchable

T = TypeVar("T")

# One round trip: the chat row, every branch's messages as one JSON array each, the branch
# rows, and the running turn with whether its lease is live.
_READ = """
SELECT c.stem, c.id, c.settings, c.updated_at,
       (SELECT json_object_agg(m.branch, m.bodies) FROM (
            SELECT branch, json_agg(body ORDER BY position) AS bodies
            FROM messages WHERE chat_id = c.id GROUP BY branch) m),
       (SELECT json_agg(json_build_array(b.branch, b.parent, b.key, b.ordinal, b.bare))
            FROM branches b WHERE b.chat_id = c.id),
       t.turn, l.epoch IS NOT NULL
FROM chats c
LEFT JOIN turns t ON t.chat_id = c.id
LEFT JOIN leases l ON l.epoch = t.epoch AND l.expires_at > now()
WHERE c.stem = ANY(%s)
"""


def _stored(row: tuple) -> Stored:
    _, _, settings, updated_at, bodies, branches, _, _ = row
    return Stored(
        settings=settings,
        updated_at=updated_at,
        bodies={int(branch): messages for branch, messages in (bodies or {}).items()},
        branches=[BranchRow.of(branch) for branch in branches or []],
    )


async def read_many(conn: psycopg.AsyncConnection, stems: list[str]) -> dict[str, dict]:
    """The chats with these stems that exist, as GET /chat gives them (``running_turn``
    while the turn's lease is live), by stem."""
    cursor = await conn.execute(_READ, (stems,))
    chats = {}
    for row in await cursor.fetchall():
        chat = compose(_stored(row))
        if row[7]:
            chat["running_turn"] = row[6]
        chats[row[0]] = chat
    return chats


async def read(conn: psycopg.AsyncConnection, name: str) -> dict:
    chat = (await read_many(conn, [names.stem_for(name)])).get(names.stem_for(name))
    if chat is None:
        raise ChatNotFound(name)
    return chat


async def read_for_change(conn: psycopg.AsyncConnection, name: str) -> tuple[int, Loaded]:
    """Inside a transaction: the chat, locked until it ends, ready for ``write``."""
    cursor = await conn.execute(_READ + " FOR UPDATE OF c", ([names.stem_for(name)],))
    row = await cursor.fetchone()
    if row is None:
        raise ChatNotFound(name)
    return row[1], Loaded(_stored(row))


async def change(conn: psycopg.AsyncConnection, name: str, function: Callable[[dict], T]) -> tuple[int, T]:
    """Inside a transaction: read the chat locked, let ``function`` change the dict (and
    answer), set ``updated_at`` and write what changed. Returns the chat's id and the answer."""
    chat_id, loaded = await read_for_change(conn, name)
    result = function(loaded.chat)
    loaded.chat["updated_at"] = chatfile.now()
    await write(conn, chat_id, loaded, loaded.chat)
    return chat_id, result


async def write(conn: psycopg.AsyncConnection, chat_id: int, loaded: Loaded, chat: dict) -> None:
    """Make the rows of chat ``chat_id`` hold ``chat`` (read as ``loaded``), touching only
    the rows that changed. Deletions come first and every move is one statement, so the
    positions are unique again at the end of each (the key is DEFERRABLE)."""
    changes = diff(loaded, chat)
    await _write_chat_row(conn, chat_id, changes)
    if changes.deleted:
        branches, positions = zip(*changes.deleted)
        await conn.execute(
            "DELETE FROM messages m USING unnest(%s::int[], %s::int[]) AS d(branch, position)"
            " WHERE m.chat_id = %s AND m.branch = d.branch AND m.position = d.position",
            (list(branches), list(positions), chat_id),
        )
    if changes.branches_deleted:
        await conn.execute("DELETE FROM branches WHERE chat_id = %s AND branch = ANY(%s)", (chat_id, changes.branches_deleted))
    if changes.moved:
        columns = [list(column) for column in zip(*changes.moved)]
        await conn.execute(
            "UPDATE messages m SET branch = v.branch, position = v.position"
            " FROM unnest(%s::int[], %s::int[], %s::int[], %s::int[]) AS v(old_branch, old_position, branch, position)"
            " WHERE m.chat_id = %s AND m.branch = v.old_branch AND m.position = v.old_position",
            (*columns, chat_id),
        )
    if changes.branches_placed:
        rows = changes.branches_placed
        await conn.execute(
            "INSERT INTO branches (chat_id, branch, parent, key, ordinal, bare)"
            " SELECT %s, * FROM unnest(%s::int[], %s::int[], %s::text[], %s::int[], %s::bool[])"
            " ON CONFLICT (chat_id, branch) DO UPDATE"
            " SET parent = excluded.parent, key = excluded.key, ordinal = excluded.ordinal, bare = excluded.bare",
            (chat_id, *([getattr(row, name) for row in rows] for name in ("branch", "parent", "key", "ordinal", "bare"))),
        )
    if changes.inserted:
        await insert_messages(conn, chat_id, changes.inserted)


async def insert_messages(conn: psycopg.AsyncConnection, chat_id: int, rows: list[tuple[int, int, object]]) -> None:
    """New message rows: (branch, position, body)."""
    await conn.execute(
        "INSERT INTO messages (chat_id, branch, position, body, content)"
        " SELECT %s, v.branch, v.position, v.body::json, v.content"
        " FROM unnest(%s::int[], %s::int[], %s::text[], %s::text[]) AS v(branch, position, body, content)",
        (
            chat_id,
            [branch for branch, _, _ in rows],
            [position for _, position, _ in rows],
            [encode(body) for _, _, body in rows],
            [searchable(body.get("content")) if isinstance(body, dict) else None for _, _, body in rows],
        ),
    )


async def append(conn: psycopg.AsyncConnection, chat_id: int, messages: list) -> None:
    """Add ``messages`` after the current branch's last: a turn's cost, whatever the chat's
    length. Two statements, sent together (nothing read back)."""
    await conn.execute(
        "INSERT INTO messages (chat_id, branch, position, body, content)"
        " SELECT %s, 0, (SELECT coalesce(max(position) + 1, 0) FROM messages WHERE chat_id = %s AND branch = 0) + v.n - 1,"
        " v.body::json, v.content FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS v(body, content, n)",
        (chat_id, chat_id, [encode(body) for body in messages], [searchable(body.get("content")) if isinstance(body, dict) else None for body in messages]),
    )
    await conn.execute("UPDATE chats SET updated_at = %s WHERE id = %s", (chatfile.now(), chat_id))


async def _write_chat_row(conn: psycopg.AsyncConnection, chat_id: int, changes: Changes) -> None:
    if changes.settings is None:
        await conn.execute("UPDATE chats SET updated_at = %s WHERE id = %s", (changes.updated_at, chat_id))
        return
    await conn.execute(
        "UPDATE chats SET settings = %s::json, model = %s::json, prompt = %s, updated_at = %s WHERE id = %s",
        (*settings_columns(changes.settings), changes.updated_at, chat_id),
    )


def settings_columns(settings: dict) -> tuple[str, str | None, str | None]:
    """The settings' JSON and the copies kept beside it: the model (for the listing) and the
    system prompt (for search)."""
    model = encode(settings["model"]) if "model" in settings else None
    return encode(settings), model, searchable(settings.get("system_prompt"))
