"""Turns across instances: the lease that holds a chat, and a turn's begin, journal and end.

No transaction, lock or connection lasts as long as a turn (a stream lasts minutes; a pool
has a few connections). Holding a chat is a row in ``leases``: its owner, an epoch drawn
anew at each taking, and an expiry the holder renews while it works. A lease that expired
may be taken by anyone; the new epoch fences the old owner out, since every write of a
turn first checks, in its own transaction, that its epoch still holds the lease (and locks
that row against a takeover until it commits).

Taking a chat's lease first finishes a turn that a dead instance left running there: its
journaled reply is stored, marked interrupted. ``recover`` does the same for every such
chat, for an instance to run now and then, sparing the turns the instance itself still runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Collection

import psycopg

from .. import names, running
from ..errors import ChatNotFound, StorageFailure
from . import rows
from .tree import encode

log = logging.getLogger("chatproxy.store")
CHANNEL = "chatproxy_leases"  # NOTIFY'd with the chat's stem when its lease is let go


@dataclass(frozen=True)
class Lease:
    stem: str
    owner: str
    epoch: int


class LeaseLost(StorageFailure):
    def __init__(self, lease: Lease) -> None:
        super().__init__(
            f"Chat '{names.name_for(lease.stem + names.SUFFIX)}' was taken over by another instance"
            " (this one did not renew its hold in time): its change was not stored"
        )


# The lease is the caller's own (``owner``), for a turn it still runs (``running_here``: the
# epochs of its leases held now). A process restarted is a new owner with none held: what
# its predecessor left behind is recovered like any dead instance's.
_RUNNING_HERE = "(leases.owner = %(owner)s AND leases.epoch = ANY(%(running_here)s::bigint[]))"


async def take_lease(
    conn: psycopg.AsyncConnection, name: str, owner: str, seconds: float, running_here: Collection[int] = ()
) -> Lease | None:
    """Hold the chat ``name`` for ``seconds`` (renew before they pass); None while another
    holder's lease is live, or while ``owner`` holds it by one of the epochs ``running_here``
    (``recover``'s). A turn left running by a dead holder is finished first.

    Not waited on to reach the disk: a lease a crash of PostgreSQL forgets is a lease
    nobody holds, and the turn's own writes, which wait, check it first."""
    stem = names.stem_for(name)
    async with conn.pipeline(), conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit TO off")
        cursor = await conn.execute(
            "WITH taken AS ("
            "  INSERT INTO leases (stem, owner, epoch, expires_at)"
            "  VALUES (%(stem)s, %(owner)s, nextval('lease_epochs'), now() + make_interval(secs => %(seconds)s))"
            "  ON CONFLICT (stem) DO UPDATE"
            "  SET owner = excluded.owner, epoch = excluded.epoch, expires_at = excluded.expires_at"
            "  WHERE leases.expires_at <= now() AND NOT " + _RUNNING_HERE + " RETURNING epoch),"
            " abandoned AS ("  # the turn a dead holder left, taken out under the new lease only
            "  DELETE FROM turns t USING chats c, taken WHERE c.id = t.chat_id AND c.stem = %(stem)s"
            "  RETURNING c.id, t.turn, t.reply)"
            " SELECT taken.epoch, abandoned.id, abandoned.turn, abandoned.reply FROM taken LEFT JOIN abandoned ON true",
            {"stem": stem, "owner": owner, "seconds": seconds, "running_here": list(running_here)},
        )
        row = await cursor.fetchone()
        if row is None:
            return None
        epoch, chat_id, turn, reply = row
        if chat_id is not None:
            await _finish_abandoned(conn, stem, chat_id, turn, reply)
    return Lease(stem, owner, epoch)


async def renew_leases(conn: psycopg.AsyncConnection, epochs: list[int], seconds: float) -> set[int]:
    """Make the leases of these epochs last ``seconds`` from now, in one statement; the
    epochs renewed (a lease missing was lost: it expired and another instance took it)."""
    cursor = await conn.execute(
        "UPDATE leases SET expires_at = now() + make_interval(secs => %s) WHERE epoch = ANY(%s) RETURNING epoch",
        (seconds, epochs),
    )
    return {row[0] for row in await cursor.fetchall()}


async def release_lease(conn: psycopg.AsyncConnection, lease: Lease) -> None:
    """Let go of the chat; instances waiting for it hear of it on channel CHANNEL. Not
    waited on to reach the disk: a release forgotten is a lease that expires."""
    async with conn.pipeline(), conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit TO off")
        await conn.execute("DELETE FROM leases WHERE stem = %s AND epoch = %s", (lease.stem, lease.epoch))
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, lease.stem))


async def begin_turn(
    conn: psycopg.AsyncConnection, lease: Lease, name: str, plan: dict, turn: dict, ready: Callable[[dict], None] | None = None
) -> dict:
    """Under ``lease``: apply ``plan`` ({"append": message} | {"rerun": [index, text]} |
    {"regenerate": True}), mark the chat running ``turn`` (a dict with "id"), commit.
    Returns the changed chat, ``running_turn`` included; ``ready`` gets it (a copy)
    before it is written."""
    async with conn.pipeline(), conn.transaction():
        await _fence(conn, lease)
        chat_id, chat = await rows.change(conn, name, running.beginning(plan, turn, ready))
        await conn.execute(
            "INSERT INTO turns (chat_id, turn_id, turn, epoch) VALUES (%s, %s, %s::json, %s)",
            (chat_id, str(turn["id"]), encode(turn), lease.epoch),
        )
    return chat


async def journal_turns(conn: psycopg.AsyncConnection, replies: dict[tuple[str, str], dict]) -> int:
    """The replies so far of several turns, by (chat stem, turn id), in one statement; how
    many turns are still running to take them. Not waited on to reach the disk (a kill of
    chatproxy loses nothing by it; a crash of PostgreSQL loses at most the last second)."""
    keys = list(replies)
    async with conn.pipeline(), conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit TO off")
        cursor = await conn.execute(
            "UPDATE turns t SET reply = v.reply::json, journaled_at = now()"
            " FROM chats c, unnest(%s::text[], %s::text[], %s::text[]) AS v(stem, turn_id, reply)"
            " WHERE c.id = t.chat_id AND c.stem = v.stem AND t.turn_id = v.turn_id",
            ([stem for stem, _ in keys], [turn_id for _, turn_id in keys], [encode(replies[key]) for key in keys]),
        )
    return cursor.rowcount


async def end_turn(conn: psycopg.AsyncConnection, lease: Lease, name: str, turn_id: object, reply: dict | None) -> None:
    """Under ``lease``, one commit: ``reply`` appended (if any), the turn and its journal
    gone. ChatNotFound if the chat was deleted (and maybe made again) during the turn."""
    async with conn.pipeline(), conn.transaction():
        fence = await conn.execute(_FENCE, (lease.stem, lease.epoch))
        cursor = await conn.execute(
            "DELETE FROM turns t USING chats c WHERE c.id = t.chat_id AND c.stem = %s AND t.turn_id = %s"
            " RETURNING c.id, t.turn",
            (names.stem_for(name), str(turn_id)),
        )
        if await fence.fetchone() is None:
            raise LeaseLost(lease)
        row = await cursor.fetchone()
        if row is None:
            raise ChatNotFound(name)
        await _store_as(conn, name, row[0], row[1], lambda chat: running.end(chat, running.turn_id(chat), reply), reply is not None)


async def recover(conn: psycopg.AsyncConnection, owner: str, seconds: float, running_here: Collection[int] = ()) -> list[str]:
    """Finish every turn whose instance died (its lease expired or was let go); returns
    the chats' names.

    ``running_here``: the epochs of the leases ``owner`` (the caller) holds for turns it
    still runs, read anew at each statement. Such a lease may lapse with its instance alive:
    the database was away for longer than a lease lasts (a turn's end is retried for
    longer), and the renewals failed. Taking it would lose the reply the turn is about to
    store; it is renewed instead, as the missed renewal would have done. Another instance
    may still have taken it meanwhile: the new epoch then fences this one out."""
    await conn.execute(
        "UPDATE leases SET expires_at = now() + make_interval(secs => %(seconds)s)"
        " WHERE expires_at <= now() AND " + _RUNNING_HERE,
        {"owner": owner, "running_here": list(running_here), "seconds": seconds},
    )
    cursor = await conn.execute(
        "SELECT c.stem FROM turns t JOIN chats c ON c.id = t.chat_id WHERE NOT EXISTS ("
        "  SELECT 1 FROM leases WHERE leases.epoch = t.epoch AND (leases.expires_at > now() OR " + _RUNNING_HERE + "))",
        {"owner": owner, "running_here": list(running_here)},
    )
    finished = []
    for (stem,) in await cursor.fetchall():
        name = names.name_for(stem + names.SUFFIX)
        lease = await take_lease(conn, name, owner, seconds, running_here)
        if lease is not None:
            await release_lease(conn, lease)
            finished.append(name)
    return finished


async def _finish_abandoned(conn: psycopg.AsyncConnection, stem: str, chat_id: int, turn: dict, reply: object) -> None:
    journal = {"turn": running.turn_id({running.MARKER: turn}), "reply": reply}
    name = names.name_for(stem + names.SUFFIX)
    await _store_as(conn, name, chat_id, turn, lambda chat: running.settle(chat, journal), isinstance(reply, dict))
    log.warning("Chat '%s': stored the turn a stopped instance left unfinished", name)


async def _store_as(
    conn: psycopg.AsyncConnection, name: str, chat_id: int, turn: dict, rule: Callable[[dict], object], appends: bool
) -> None:
    """Do to the chat what the folder's ``rule`` (running.py) does to a chat marked running
    ``turn``. When it only ``appends`` (a reply), without reading the chat: the rule runs on
    a stand-in with no messages. Else (no reply: the question is marked unanswered) on the
    chat itself."""
    if not appends:
        def marked_then(chat: dict) -> None:
            chat[running.MARKER] = turn  # kept apart here, in the turns table
            rule(chat)
            chat.pop(running.MARKER, None)

        await rows.change(conn, name, marked_then)
        return
    stand_in: dict = {"messages": [], running.MARKER: turn}
    rule(stand_in)
    if stand_in["messages"]:
        await rows.append(conn, chat_id, stand_in["messages"])


_FENCE = "SELECT 1 FROM leases WHERE stem = %s AND epoch = %s FOR SHARE"


async def _fence(conn: psycopg.AsyncConnection, lease: Lease) -> None:
    cursor = await conn.execute(_FENCE, (lease.stem, lease.epoch))
    if await cursor.fetchone() is None:
        raise LeaseLost(lease)

