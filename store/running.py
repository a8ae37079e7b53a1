"""A chat's running turn, as the chat file records it: pure rules, shared by the engines.

``chat["running_turn"]`` (a dict with at least ``id`` and ``started_at``) marks a chat whose
turn has begun and not ended. Only the holder of the chat writes or removes it; whether a
marker is live (its holder still running) is the engine's to say, and one that is not is
never shown. A holder that died leaves the marker, and a journal (the reply so far): the
next holder settles the turn, storing that reply as interrupted. A turn that ends with no
reply at all leaves its question marked unanswered (history.py); the first turn names a
chat that has no title yet (titles.py).
"""

from __future__ import annotations

from typing import Callable

from . import history, titles

MARKER = "running_turn"


def turn_id(chat: dict) -> object:
    """The id of the turn the chat is marked running with; None if it is not."""
    marker = chat.get(MARKER)
    return marker.get("id") if isinstance(marker, dict) else None


def begin(chat: dict, plan: dict, turn: dict) -> None:
    history.apply_plan(chat, plan)
    titles.name_from_first_message(chat)
    chat[MARKER] = turn


def beginning(plan: dict, turn: dict, ready: Callable[[dict], None] | None = None) -> Callable[[dict], dict]:
    """The change that begins a turn, for an engine's update: ``ready`` gets the changed
    chat (a copy: the write that follows still sets updated_at) before it is written."""

    def change(chat: dict) -> dict:
        begin(chat, plan, turn)
        if ready is not None:
            ready(dict(chat))
        return chat

    return change


def end(chat: dict, turn: object, reply: dict | None) -> bool:
    """Store ``reply`` (if any: else its question is marked unanswered) and unmark the chat;
    False if the chat is not running ``turn`` (deleted and made again, or renamed over,
    while the turn ran)."""
    if turn_id(chat) != turn:
        return False
    if reply is not None:
        chat["messages"].append(dict(reply))
    else:
        history.mark_unanswered(chat)
    del chat[MARKER]
    return True


def settle(chat: dict, journal: dict | None) -> bool:
    """Finish the turn a dead holder left: its journaled reply (if the journal is of the turn
    the chat is marked with) stored as interrupted, or else its question marked unanswered;
    the marker removed. False: nothing to do (the chat is not marked; its turn ended and
    only the journal was left)."""
    if MARKER not in chat:
        return False
    reply = journal.get("reply") if journal is not None and journal.get("turn") == turn_id(chat) else None
    if isinstance(reply, dict):
        chat["messages"].append({**reply, "finish_reason": None, "interrupted": True})
    else:
        history.mark_unanswered(chat)
    del chat[MARKER]
    return True


def shown(chat: dict, live: bool) -> dict:
    """The chat as a reader sees it: the marker only while its turn is live."""
    if live or MARKER not in chat:
        return chat
    return {key: value for key, value in chat.items() if key != MARKER}
