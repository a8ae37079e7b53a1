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

from .errors import InvalidChatValue, MessageIndexError

ALTERNATIVES = "alternatives"


def _alternatives(chat: dict) -> dict[str, list[dict]]:
    alternatives = chat.get(ALTERNATIVES)
    if not isinstance(alternatives, dict):
        alternatives = chat[ALTERNATIVES] = {}
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


def switch(chat: dict, index: int, alternative: int) -> None:
    """Make alternative ``alternative`` at ``index`` the current branch."""
    alternatives = _alternatives(chat)
    choices = alternatives.get(str(index))
    if not choices:
        _tidy(chat)
        raise InvalidChatValue(f"The chat has no alternatives at message {index}")
    if not 0 <= alternative < len(choices):
        raise InvalidChatValue(f"Alternative {alternative} is out of range: message {index} has {len(choices)}")
    if index > len(chat["messages"]):
        raise InvalidChatValue(f"Message {index} is beyond the current branch")
    chosen = choices[alternative]
    current = _detach_tail(chat, index)
    choices[alternative] = current
    chat["messages"].extend(chosen.get("messages", []))
    alternatives.update(chosen.get(ALTERNATIVES) or {})
    _tidy(chat)


def branches(chat: dict) -> list[dict]:
    """The places on the current branch where alternatives part, in order."""
    out = []
    count = len(chat["messages"])
    for key, choices in sorted((chat.get(ALTERNATIVES) or {}).items(), key=lambda item: _position(item[0])):
        index = _position(key)
        if not 0 <= index <= count or not isinstance(choices, list):
            continue
        out.append(
            {
                "index": index,
                "alternatives": [
                    {"alternative": number, "messages": len(tail.get("messages", [])), "preview": _preview(tail)}
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
        for message in node.get("messages") or []:
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                texts.append(message["content"])
        for choices in (node.get(ALTERNATIVES) or {}).values():
            if isinstance(choices, list):
                stack.extend(tail for tail in choices if isinstance(tail, dict))
    return texts
