"""A chat dict as rows and back, and the rows a change touches. Pure: no SQL here.

The chats row holds the settings (every key of the chat but ``messages``, ``updated_at``
and the branches); each message is a row (branch, position, body); each alternative the
folder keeps under ``alternatives`` is a branch row saying where it hangs: its parent
branch, the key and its number there. Branch 0 is the current branch, ``messages``. An
``alternatives`` value the rows cannot say (a hand edit of another shape, see
store/history.py) stays in the settings as it is: whatever goes in comes out equal.

A change reads the chat (``Loaded``), lets the rules of store/history.py change the dict,
and writes back only the rows whose place or content changed (``diff``). The rules move
message and branch dicts about without copying or changing them in place, so each dict
read is known again by its identity wherever it ends up; a dict not read is new.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from typing import Any

import jsonbytes

from ..history import ALTERNATIVES

MESSAGES = "messages"
UPDATED_AT = "updated_at"
RUNNING_TURN = "running_turn"  # not the chat's own: kept in the turns table
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class BranchRow:
    branch: int
    parent: int
    key: str
    ordinal: int
    bare: bool = False  # written without an "alternatives" key

    @classmethod
    def of(cls, row: list) -> "BranchRow":
        return cls(*row)


@dataclass
class Stored:
    """One chat as its rows hold it. Its lists may be shared (store/postgres/cache.py): a
    chat composed from it gets lists of its own."""

    settings: dict
    updated_at: str | None = None
    bodies: dict[int, list | tuple] = field(default_factory=dict)  # branch -> its messages, in order
    branches: list[BranchRow] | tuple[BranchRow, ...] = field(default_factory=list)


@dataclass
class Changes:
    settings: dict | None  # the new settings, when they changed
    updated_at: str | None
    deleted: list[tuple[int, int]]  # (branch, position)
    moved: list[tuple[int, int, int, int]]  # (old branch, old position, branch, position)
    inserted: list[tuple[int, int, Any]]  # (branch, position, body)
    branches_deleted: list[int]
    branches_placed: list[BranchRow]  # new, or moved to another place
    layout: dict[int, list]  # afterwards: branch -> its messages
    branch_rows: list[BranchRow]  # afterwards: every branch row


def searchable(value: object) -> str | None:
    """``value`` as text PostgreSQL can hold and search (no NUL, no lone surrogate), if a string."""
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "")
    return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value


def storable(value: object) -> bool:
    """Whether ``value`` is a string a text column holds exactly (no NUL, no lone surrogate)."""
    return isinstance(value, str) and "\x00" not in value and not _SURROGATE.search(value)


def encode(value: object) -> str:
    """JSON text for a ``json`` column (escapes keep it free of NUL and lone surrogates)."""
    return jsonbytes.dumps(value).decode()


class Loaded:
    """A chat read for a change: ``chat`` is the dict the rules may change."""

    def __init__(self, stored: Stored) -> None:
        self.settings_json = encode(stored.settings)
        self.updated_at = stored.updated_at
        self.last_branch = max((row.branch for row in stored.branches), default=0)
        self.chat, tails = _compose(stored)
        # The dicts themselves are kept, so no id() here is reused by a new dict meanwhile.
        # Only containers are known by identity: one None or 5 may stand in many places
        # (a hand edit's); such rows are written anew at each change.
        self.messages: dict[int, tuple[Any, int, int]] = {}
        self.scalars: list[tuple[int, int]] = []
        for branch, bodies in stored.bodies.items():
            for position, body in enumerate(bodies):
                if isinstance(body, (dict, list)):
                    self.messages[id(body)] = (body, branch, position)
                else:
                    self.scalars.append((branch, position))
        self.tails = {id(tail): (tail, row) for row, tail in tails}
        # Each branch as read, when every message is a container in one place only: then a
        # branch that still begins with the same messages keeps their rows (diff's fast way).
        total = sum(map(len, stored.bodies.values()))
        self.branches = dict(stored.bodies) if not self.scalars and len(self.messages) == total else {}

    @classmethod
    def empty(cls) -> "Loaded":
        loaded = cls(Stored(settings={}))
        loaded.settings_json = ""  # so a new chat's settings are always written
        return loaded


def compose(stored: Stored) -> dict:
    """The chat as GET /chat gives it (without ``running_turn``)."""
    return _compose(stored)[0]


def _compose(stored: Stored) -> tuple[dict, list[tuple[BranchRow, dict]]]:
    chat = dict(stored.settings)
    chat[MESSAGES] = list(stored.bodies.get(0, ()))
    if stored.updated_at is not None:
        chat[UPDATED_AT] = stored.updated_at
    tails = {}
    for row in stored.branches:
        tail: dict = {MESSAGES: list(stored.bodies.get(row.branch, ()))}
        if not row.bare:
            tail[ALTERNATIVES] = {}
        tails[row.branch] = tail
    placed = sorted(stored.branches, key=lambda row: (row.parent, _key_order(row.key), row.ordinal))
    for row in placed:
        parent = chat if row.parent == 0 else tails[row.parent]
        parent.setdefault(ALTERNATIVES, {}).setdefault(row.key, []).append(tails[row.branch])
    return chat, [(row, tails[row.branch]) for row in stored.branches]


def _key_order(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (-1, key)


def split(chat: dict) -> tuple[dict, str | None, dict | None]:
    """The chat's settings, its ``updated_at`` and its alternatives, the last two when
    their columns and rows can hold them exactly (otherwise they stay in the settings)."""
    settings = {key: value for key, value in chat.items() if key not in (MESSAGES, RUNNING_TURN)}
    updated_at = settings.pop(UPDATED_AT) if storable(settings.get(UPDATED_AT)) else None
    alternatives = settings.get(ALTERNATIVES)
    if _representable(alternatives):
        del settings[ALTERNATIVES]
        return settings, updated_at, alternatives
    return settings, updated_at, None


def _representable(alternatives: object) -> bool:
    """Whether branch rows can say ``alternatives`` exactly: a non-empty dict (its keys
    storable) of non-empty lists of tails, each ``{"messages": [...]}`` with, optionally, alternatives of the same
    shape (which may be empty there)."""
    if not isinstance(alternatives, dict) or not alternatives:
        return False
    stack = [alternatives]
    while stack:
        for key, choices in stack.pop().items():
            if not storable(key) or not isinstance(choices, list) or not choices:
                return False
            for tail in choices:
                if not isinstance(tail, dict) or not isinstance(tail.get(MESSAGES), list) or set(tail) - {MESSAGES, ALTERNATIVES}:
                    return False
                if ALTERNATIVES in tail:
                    if not isinstance(tail[ALTERNATIVES], dict):
                        return False
                    stack.append(tail[ALTERNATIVES])
    return True


def diff(loaded: Loaded, chat: dict) -> Changes:
    """The rows to write so that the database holds ``chat``, read as ``loaded``."""
    settings, updated_at, alternatives = split(chat)
    seen: set[int] = set()
    moved: list[tuple[int, int, int, int]] = []
    inserted: list[tuple[int, int, Any]] = []
    layout: dict[int, list] = {}
    branch_rows: list[BranchRow] = []

    def place(messages: list, branch: int) -> None:
        layout[branch] = messages
        start = 0
        before = loaded.branches.get(branch, ())
        if before and len(before) <= len(messages) and all(map(operator.is_, before, messages)):
            ids = set(map(id, before))
            if ids.isdisjoint(seen):  # in their places still: nothing to write for them
                seen.update(ids)
                start = len(before)
        for position in range(start, len(messages)):
            body = messages[position]
            known = loaded.messages.get(id(body))
            if known is None or id(body) in seen:  # new, a scalar, or a copy's second place
                inserted.append((branch, position, body))
                continue
            seen.add(id(body))
            if known[1:] != (branch, position):
                moved.append((known[1], known[2], branch, position))

    place(chat[MESSAGES], 0)
    tails_seen: set[int] = set()
    placed: list[BranchRow] = []
    next_branch = loaded.last_branch + 1
    stack = [(0, alternatives or {})]
    while stack:
        parent, node_alternatives = stack.pop()
        for key, choices in node_alternatives.items():
            for ordinal, tail in enumerate(choices):
                known = loaded.tails.get(id(tail))
                if known is None or id(tail) in tails_seen:
                    old, branch = None, next_branch
                    next_branch += 1
                else:
                    tails_seen.add(id(tail))
                    old, branch = known[1], known[1].branch
                row = BranchRow(branch, parent, key, ordinal, ALTERNATIVES not in tail)
                branch_rows.append(row)
                if row != old:
                    placed.append(row)
                place(tail[MESSAGES], branch)
                stack.append((branch, tail.get(ALTERNATIVES) or {}))
    settings_changed = encode(settings) != loaded.settings_json
    return Changes(
        settings=settings if settings_changed else None,
        updated_at=updated_at,
        deleted=[(branch, position) for key, (_, branch, position) in loaded.messages.items() if key not in seen] + loaded.scalars,
        moved=moved,
        inserted=inserted,
        branches_deleted=[row.branch for key, (_, row) in loaded.tails.items() if key not in tails_seen],
        branches_placed=placed,
        layout=layout,
        branch_rows=branch_rows,
    )
