"""Reading a chat's rows and writing what a change touches: the SQL under chats.py and turns.py."""

from __future__ import annotations

from typing import Callable, TypeVar

import psycopg

from .. import chatfile, names
from ..errors import ChatNotFound
from .cache import CURRENT, Kept
from .tree import BranchRow, Changes, Loaded, Stored, compose, diff, encode, searchable

T = TypeVar("T")

# One round trip: the chat row; every branch's messages as one JSON array each, and the
# branch rows, unless the caller keeps the chat at its current version (cache.py); and the
# running turn with whether its lease is live.
_READ = """
WITH kept AS (SELECT * FROM unnest(%(ids)s::bigint[], %(versions)s::bigint[]) AS k(id, version))
SELECT c.stem, c.id, c.version, c.settings, c.updated_at, current.kept,
       CASE WHEN NOT current.kept THEN (SELECT json_object_agg(m.branch, m.bodies) FROM (
            SELECT branch, json_agg(body ORDER BY position) AS bodies
            FROM messages WHERE chat_id = c.id GROUP BY branch) m) END,
       CASE WHEN NOT current.kept THEN (SELECT json_agg(json_build_array(b.branch, b.parent, b.key, b.ordinal, b.bare))
            FROM branches b WHERE b.chat_id = c.id) END,
       t.turn, l.epoch IS NOT NULL
FROM chats c
CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM kept WHERE kept.id = c.id AND kept.version = c.version) AS kept) current
LEFT JOIN turns t ON t.chat_id = c.id
LEFT JOIN leases l ON l.epoch = t.epoch AND l.expires_at > now()
WHERE c.stem = ANY(%(stems)s)
"""


async def _read(conn: psycopg.AsyncConnection, stems: list[str], for_change: bool = False) -> list[tuple[tuple, Stored]]:
    """Each chat of these stems that exists: its row (stem, id, version, ..., turn, live)
    and what it holds, from the cache of the calling store where it is current there."""
    call = CURRENT.get()
    kept = {k.chat_id: k for k in call.cache.known(stems)} if call else {}
    cursor = await conn.execute(
        _READ + (" FOR UPDATE OF c" if for_change else ""),
        {"stems": stems, "ids": list(kept), "versions": [k.version for k in kept.values()]},
    )
    found = []
    for row in await cursor.fetchall():
        stem, chat_id, version, settings, updated_at, current, bodies, branches = row[:8]
        if current:  # the database says what is kept of this chat is what it holds
            stored = Stored(settings, updated_at, kept[chat_id].bodies, kept[chat_id].branches)
        else:
            stored = Stored(
                settings,
                updated_at,
                {int(branch): messages for branch, messages in (bodies or {}).items()},
                [BranchRow.of(branch) for branch in branches or []],
            )
            if call:
                call.cache.put(stem, Kept(chat_id, version, stored.bodies, tuple(stored.branches)))
        found.append((row, stored))
    return found


async def read_many(conn: psycopg.AsyncConnection, stems: list[str]) -> dict[str, dict]:
    """The chats with these stems that exist, as GET /chat gives them (``running_turn``
    while the turn's lease is live), by stem."""
    chats = {}
    for row, stored in await _read(conn, stems):
        chat = compose(stored)
        if row[9]:
            chat["running_turn"] = row[8]
        chats[row[0]] = chat
    return chats


async def read(conn: psycopg.AsyncConnection, name: str) -> dict:
    chat = (await read_many(conn, [names.stem_for(name)])).get(names.stem_for(name))
    if chat is None:
        raise ChatNotFound(name)
    return chat


async def change(conn: psycopg.AsyncConnection, name: str, function: Callable[[dict], T]) -> tuple[int, T]:
    """Inside a transaction: read the chat locked until it ends, let ``function`` change the
    dict (and answer), set ``updated_at`` and write what changed. Returns the chat's id and
    the answer."""
    found = await _read(conn, [names.stem_for(name)], for_change=True)
    if not found:
        raise ChatNotFound(name)
    (stem, chat_id, version, *_), stored = found[0]
    loaded = Loaded(stored)
    result = function(loaded.chat)
    loaded.chat["updated_at"] = chatfile.now()
    changes = await write(conn, chat_id, loaded, loaded.chat)
    call = CURRENT.get()
    if call:
        bodies = {branch: tuple(messages) for branch, messages in changes.layout.items()}
        call.written(stem, Kept(chat_id, version + 1, bodies, tuple(changes.branch_rows)))
    return chat_id, result


async def write(conn: psycopg.AsyncConnection, chat_id: int, loaded: Loaded, chat: dict) -> Changes:
    """Make the rows of chat ``chat_id`` hold ``chat`` (read as ``loaded``), touching only
    the rows that changed, and add one to its version. Deletions come first and every move
    is one statement, so the positions are unique again at the end of each (the key is
    DEFERRABLE)."""
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
    return changes


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
    length. Two statements, sent together (nothing read back before the commit)."""
    await conn.execute(
        "INSERT INTO messages (chat_id, branch, position, body, content)"
        " SELECT %s, 0, (SELECT coalesce(max(position) + 1, 0) FROM messages WHERE chat_id = %s AND branch = 0) + v.n - 1,"
        " v.body::json, v.content FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS v(body, content, n)",
        (chat_id, chat_id, [encode(body) for body in messages], [searchable(body.get("content")) if isinstance(body, dict) else None for body in messages]),
    )
    version = await conn.execute(
        "UPDATE chats SET updated_at = %s, version = version + 1 WHERE id = %s RETURNING stem, version", (chatfile.now(), chat_id)
    )
    call = CURRENT.get()
    if call:
        call.appended(chat_id, version, messages)


async def _write_chat_row(conn: psycopg.AsyncConnection, chat_id: int, changes: Changes) -> None:
    if changes.settings is None:
        await conn.execute("UPDATE chats SET updated_at = %s, version = version + 1 WHERE id = %s", (changes.updated_at, chat_id))
        return
    await conn.execute(
        "UPDATE chats SET settings = %s::json, model = %s::json, prompt = %s, title = %s, title_json = %s::json,"
        " pinned = %s, archived = %s, updated_at = %s, version = version + 1 WHERE id = %s",
        (*settings_columns(changes.settings), changes.updated_at, chat_id),
    )


def settings_columns(settings: dict) -> tuple:
    """The settings' JSON and the copies kept beside it: what the listing shows (the model
    and the title when they are text, as JSON; pinned; archived) and what search reads (the
    system prompt and the title as text)."""
    model, title = settings.get("model"), settings.get("title")
    return (
        encode(settings),
        encode(model) if isinstance(model, str) else None,
        searchable(settings.get("system_prompt")),
        searchable(title),
        encode(title) if isinstance(title, str) else None,
        settings.get("pinned") is True,
        settings.get("archived") is True,
    )
