"""A chat's history and its alternatives: what editing, regenerating and branching do.

Pure functions on a chat dict (no files). ``messages`` is always the current branch, as the
original server's frontends read it. What editing or regenerating replaces is never lost:
it is kept under ``alternatives``, keyed by the position where it parts from the current
branch::

    "alternatives": {"3": [{"messages": [...], "alternatives": {...}}, ...]}

An entry at key ``"3"`` is another tail of the conversation from message 3 on. Its own
``alternatives`` are the branches that part from it further down (keys above 3), so a
tail carries its sub-branches wherever it goes. Making alternative ``a`` at ``i`` current
swaps it with the current tail, which takes its place as alternative ``a``: switching back
with the same numbers restores the chat exactly.
"""

from __future__ import annotations

import copy

from .errors import InvalidChatValue, MessageIndexError

ALTERNATIVES = "alternatives"
# On a user message whose turn ended with no reply at all (refused, or stopped before the
# first token): sending it again answers it rather than storing it twice.
UNANSWERED = "unanswered"
# Where a hand-edited ``alternatives`` value that is not of this shape is kept, untouched,
# when the chat changes: never lost, never in the way.
UNREADABLE = "alternatives_unreadable"


def copy_for_change(chat: dict) -> dict:
    """A chat a change may alter, made from a shared one (store/cache.py) without copying it
    all: the top level and the message list are new, and what the rules below rearrange in
    place (the alternatives) is copied whole. Messages are only ever replaced, never changed."""
    changed = {**chat, "messages": list(chat["messages"])}
    for key in (ALTERNATIVES, UNREADABLE):
        if key in chat:
            changed[key] = copy.deepcopy(chat[key])
    return changed


def apply_plan(chat: dict, plan: dict) -> None:
    """Make the chat ready for a new reply: ``{"append": message}`` adds the user's message
    (unless it is the unanswered question it repeats: that one is answered instead),
    ``{"rerun": [index, text]}`` edits one and sets what followed aside, ``{"regenerate": True}``
    sets the last reply aside. The questions the reply will answer lose their mark."""
    if "append" in plan:
        if not is_retry(chat, plan["append"]):
            chat["messages"].append(plan["append"])
    elif "rerun" in plan:
        rerun_from(chat, *plan["rerun"])
    else:
        prepare_regenerate(chat)
    _unmark_last_questions(chat)


def is_retry(chat: dict, message: dict) -> bool:
    """Whether ``message`` is the chat's last message again, which was left unanswered."""
    messages = chat["messages"]
    last = messages[-1] if messages else None
    return (
        isinstance(last, dict)
        and last.get(UNANSWERED) is True
        and last.get("role") == message.get("role")
        and last.get("content") == message.get("content")
    )


def mark_unanswered(chat: dict) -> None:
    """The turn ended without a reply: its question, the last message, says so."""
    messages = chat["messages"]
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "user":
        messages[-1] = {**messages[-1], UNANSWERED: True}


def _unmark_last_questions(chat: dict) -> None:
    messages = chat["messages"]
    index = len(messages) - 1
    while index >= 0 and isinstance(messages[index], dict) and messages[index].get("role") == "user":
        if UNANSWERED in messages[index]:
            messages[index] = {key: value for key, value in messages[index].items() if key != UNANSWERED}
        index -= 1


def _is_tail(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get("messages"), list)


def _readable(node: dict) -> dict[str, list]:
    """``node``'s alternatives, for reading: what is not of the shape above is left out."""
    alternatives = node.get(ALTERNATIVES)
    if not isinstance(alternatives, dict):
        return {}
    return {key: choices for key, choices in alternatives.items() if isinstance(choices, list)}


def _alternatives(chat: dict) -> dict[str, list[dict]]:
    """The chat's alternatives, for changing: every entry a list of tails. A value of another
    shape (a hand edit) moves to ``alternatives_unreadable`` first."""
    alternatives = chat.get(ALTERNATIVES)
    if not isinstance(alternatives, dict):
        if alternatives is not None:
            chat.setdefault(UNREADABLE, []).append(alternatives)
        alternatives = chat[ALTERNATIVES] = {}
    for key, choices in list(alternatives.items()):
        if not isinstance(choices, list):
            chat.setdefault(UNREADABLE, []).append({key: choices})
            choices = []
        damaged = [choice for choice in choices if not _is_tail(choice)]
        if damaged:
            chat.setdefault(UNREADABLE, []).append({key: damaged})
            choices = [choice for choice in choices if _is_tail(choice)]
        if not choices:
            del alternatives[key]
        elif choices is not alternatives[key]:
            alternatives[key] = choices  # a list is replaced only when it held damage
    return alternatives


def _tidy(chat: dict) -> None:
    if not chat.get(ALTERNATIVES):
        chat.pop(ALTERNATIVES, None)


def _detach_tail(chat: dict, index: int) -> dict:
    """Cut the current branch at ``index``; returns the cut-off tail with its sub-branches."""
    alternatives = _alternatives(chat)
    below = {key: value for key, value in alternatives.items() if _position(key) > index}
    for key in below:
        del alternatives[key]
    tail = {"messages": chat["messages"][index:], ALTERNATIVES: below}
    del chat["messages"][index:]
    return tail


def _position(key: str) -> int:
    try:
        return int(key)
    except ValueError:
        return -1  # not ours (a hand edit): left where it is


def keep_as_alternative(chat: dict, index: int) -> None:
    """Move the current branch from ``index`` on into the alternatives (nothing if it is empty)."""
    if index >= len(chat["messages"]):
        return
    tail = _detach_tail(chat, index)
    _alternatives(chat).setdefault(str(index), []).append(tail)


def _check_index(chat: dict, index: int) -> dict:
    messages = chat["messages"]
    if not 0 <= index < len(messages):
        raise MessageIndexError(index, len(messages))
    message = messages[index]
    if not isinstance(message, dict):
        raise InvalidChatValue(f"Message {index} is not an object; it cannot be edited")
    return message


def edit(chat: dict, index: int, content: str) -> None:
    """Change message ``index``'s content; the branch as it was stays an alternative."""
    old = _check_index(chat, index)
    rest = chat["messages"][index + 1 :]
    keep_as_alternative(chat, index)
    chat["messages"].append({**old, "content": content})
    chat["messages"].extend(dict(message) if isinstance(message, dict) else message for message in rest)
    _tidy(chat)


def rerun_from(chat: dict, index: int, content: str) -> None:
    """Edit user message ``index`` and drop what followed it into an alternative, so a new
    reply can be asked for."""
    old = _check_index(chat, index)
    if old.get("role") != "user":
        raise InvalidChatValue(f"Message {index} is a {old.get('role')!r} message: only a user message can be rerun")
    keep_as_alternative(chat, index)
    chat["messages"].append({**old, "content": content})
    _tidy(chat)


def prepare_regenerate(chat: dict) -> None:
    """Keep the reply to the last user message as an alternative, so it can be asked again."""
    messages = chat["messages"]
    last_user = next(
        (i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], dict) and messages[i].get("role") == "user"),
        None,
    )
    if last_user is None:
        raise InvalidChatValue("The chat has no user message to answer again")
    keep_as_alternative(chat, last_user + 1)
    _tidy(chat)


def remove(chat: dict, index: int) -> dict:
    """Take the message at ``index`` out of the current branch; returns it."""
    messages = chat["messages"]
    if not 0 <= index < len(messages):
        raise MessageIndexError(index, len(messages))
    return messages.pop(index)


def switch(chat: dict, index: int, alternative: int) -> None:
    """Make alternative ``alternative`` at ``index`` the current branch."""
    choices = _tails_at(chat, index)
    if not choices:
        raise InvalidChatValue(f"The chat has no alternatives at message {index}")
    if not 0 <= alternative < len(choices):
        raise InvalidChatValue(f"Alternative {alternative} is out of range: message {index} has {len(choices)}")
    if index > len(chat["messages"]):
        raise InvalidChatValue(f"Message {index} is beyond the current branch")
    alternatives = _alternatives(chat)  # now holds exactly the tails counted above
    choices = alternatives[str(index)]
    chosen = choices[alternative]
    current = _detach_tail(chat, index)
    choices[alternative] = current
    chat["messages"].extend(chosen["messages"])
    alternatives.update(_readable(chosen))
    _tidy(chat)


def _tails_at(node: dict, index: int) -> list[dict]:
    """The alternatives at ``index``, numbered as branches() and switch() number them."""
    return [tail for tail in _readable(node).get(str(index), []) if _is_tail(tail)]


def branches(chat: dict) -> list[dict]:
    """The places on the current branch where alternatives part, in order."""
    out = []
    count = len(chat["messages"])
    for index in sorted(_position(key) for key in _readable(chat)):
        choices = _tails_at(chat, index)
        if 0 <= index <= count and choices:
            out.append(
                {
                    "index": index,
                    "alternatives": [
                        {"alternative": number, "messages": len(tail["messages"]), "preview": _preview(tail)}
                        for number, tail in enumerate(choices)
                    ],
                }
            )
    return out


def _preview(tail: dict) -> str:
    for message in tail.get("messages", []):
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return message["content"][:120]
    return ""


def all_texts(chat: dict) -> list[str]:
    """Every message content of every branch, for the search index."""
    texts: list[str] = []
    stack = [chat]
    while stack:
        node = stack.pop()
        for message in node["messages"]:
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                texts.append(message["content"])
        for choices in _readable(node).values():
            stack.extend(tail for tail in choices if _is_tail(tail))
    return texts
