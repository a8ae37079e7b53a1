"""The other formats a chat goes out as or comes in from. Pure functions, no files.

Out: Markdown (``to_markdown``). In (``parse_import``): the original server's chat JSON,
chatproxy's NDJSON export (one ``{"name", "chat"}`` per line), and ChatGPT's
``conversations.json`` (a list of conversations whose ``mapping`` is a message tree: the
path to ``current_node`` becomes ``messages``, every other branch an alternative).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

import jsonbytes

from . import chatfile
from .history import ALTERNATIVES

DEFAULT_MODEL = "imported"
ROLES = ("system", "user", "assistant", "tool")


@dataclass
class ImportItem:
    position: int  # 0-based place in the upload (the line, for NDJSON)
    name: str | None = None
    chat: dict | None = None
    error: str | None = None


# -- out --------------------------------------------------------------------------------


def to_markdown(name: str, chat: dict) -> str:
    lines = [f"# {name}", ""]
    details = [f"Model: {chat.get('model')}"]
    if chat.get("created_at"):
        details.append(f"created {chat['created_at']}")
    lines += [" · ".join(details), ""]
    if isinstance(chat.get("system_prompt"), str) and chat["system_prompt"]:
        lines += ["## System", "", chat["system_prompt"], ""]
    for message in chat.get("messages", []):
        if not isinstance(message, dict):
            continue
        lines += [f"## {str(message.get('role', 'unknown')).capitalize()}", ""]
        if isinstance(message.get("reasoning"), str) and message["reasoning"]:
            quoted = "\n".join("> " + line for line in message["reasoning"].splitlines())
            lines += ["<details><summary>Reasoning</summary>", "", quoted, "", "</details>", ""]
        lines += [str(message.get("content", "")), ""]
    return "\n".join(lines)


# -- in ---------------------------------------------------------------------------------


NOT_A_FORMAT = "expected a chat (JSON object), a list of chats, NDJSON or ChatGPT's conversations.json"


def parse_import(body: bytes | bytearray, default_name: str | None) -> Iterator[ImportItem]:
    """The chats in an upload, one at a time, each with the name it asks for or the error
    that rules it out. A JSON list is read item by item, so a 100 MB ChatGPT export is never
    all in memory as objects at once.

    Raises ValueError, before any item, when the upload is none of the known formats.
    """
    start = len(body) - len(body.lstrip())
    if body[start : start + 1] == b"[":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"not UTF-8 text ({error})") from None
        return (_list_item(position, value) for position, value in _array_items(text, start))
    try:
        whole = jsonbytes.loads(body)
    except (ValueError, RecursionError):
        return _ndjson_items(body)
    if not isinstance(whole, dict):
        raise ValueError(NOT_A_FORMAT)
    if "mapping" in whole:
        return iter([_list_item(0, whole)])
    if "chat" in whole and "name" in whole:
        return iter([_named_item(0, whole)])
    return iter([_seed_item(0, whole, default_name or whole.get("name") or "Imported chat")])


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def _array_items(text: str, start: int) -> Iterator[tuple[int, Any]]:
    """The items of the JSON array at ``text[start]``, decoded one by one; an item that is not
    JSON is yielded as an ImportError value and ends the list (nothing after it can be found)."""
    index = _SPACE.match(text, start + 1).end()
    position = 0
    if text[index : index + 1] == "]":
        return
    while index < len(text):
        try:
            value, index = _DECODER.raw_decode(text, index)
        except (ValueError, RecursionError) as error:
            yield position, _Unreadable(f"not valid JSON from here on: {error}")
            return
        yield position, value
        position += 1
        index = _SPACE.match(text, index).end()
        separator = text[index : index + 1]
        if separator == "]":
            return
        if separator != ",":
            yield position, _Unreadable("the list goes on without a comma")
            return
        index = _SPACE.match(text, index + 1).end()


class _Unreadable:
    def __init__(self, problem: str) -> None:
        self.problem = problem


def _ndjson_items(body: bytes | bytearray) -> Iterator[ImportItem]:
    if not body.lstrip().startswith(b"{"):
        raise ValueError(NOT_A_FORMAT)
    return _ndjson_lines(body)


def _ndjson_lines(body: bytes | bytearray) -> Iterator[ImportItem]:
    for position, line in enumerate(body.split(b"\n")):
        if not line.strip():
            continue
        try:
            value = jsonbytes.loads(line)
        except (ValueError, RecursionError) as error:
            yield ImportItem(position, error=f"not JSON: {error}")
            continue
        yield _list_item(position, value)


def _list_item(position: int, value: Any) -> ImportItem:
    if isinstance(value, _Unreadable):
        return ImportItem(position, error=value.problem)
    if not isinstance(value, dict):
        return ImportItem(position, error="not a JSON object")
    if "mapping" in value:
        return _chatgpt_item(position, value)
    if "chat" in value:
        return _named_item(position, value)
    name = value.get("name") if isinstance(value.get("name"), str) else value.get("title")
    return _seed_item(position, value, name if isinstance(name, str) and name.strip() else f"Imported chat {position + 1}")


def _named_item(position: int, value: dict) -> ImportItem:
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        return ImportItem(position, error="'name' must be a non-empty string")
    return _seed_item(position, value.get("chat"), name)


def _seed_item(position: int, chat: Any, name: Any) -> ImportItem:
    if not isinstance(name, str) or not name.strip():
        name = f"Imported chat {position + 1}"
    if not isinstance(chat, dict):
        return ImportItem(position, name, error="'chat' must be a JSON object")
    problem = _chat_problem(chat)
    if problem:
        return ImportItem(position, name, error=problem)
    chat = {key: value for key, value in chat.items() if key != "name"}
    stamp = chatfile.now()
    chat.setdefault("model", DEFAULT_MODEL)
    chat.setdefault("temperature", 0.7)
    chat.setdefault("max_tokens", -1)
    chat.setdefault("created_at", stamp)
    chat.setdefault("updated_at", stamp)
    return ImportItem(position, name, chat)


def _chat_problem(chat: dict) -> str | None:
    messages = chat.get("messages")
    if not isinstance(messages, list):
        return "has no 'messages' list"
    for number, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            return f"message {number} has no string 'content'"
        if message.get("role") not in ROLES:
            return f"message {number} has no known 'role' ({', '.join(ROLES)})"
    if "model" in chat and not isinstance(chat["model"], str):
        return "'model' must be a string"
    return None


# -- ChatGPT's conversations.json ------------------------------------------------------------


def _chatgpt_item(position: int, conversation: dict) -> ImportItem:
    title = conversation.get("title")
    name = title.strip() if isinstance(title, str) and title.strip() else f"ChatGPT chat {position + 1}"
    mapping = conversation.get("mapping")
    if not isinstance(mapping, dict) or not mapping:
        return ImportItem(position, name, error="'mapping' must be a non-empty object")
    roots = [key for key, node in mapping.items() if isinstance(node, dict) and not node.get("parent")]
    if not roots:
        return ImportItem(position, name, error="the message tree has no root")
    current = conversation.get("current_node")
    on_current_path = set()
    while isinstance(current, str) and current in mapping and current not in on_current_path:
        on_current_path.add(current)
        current = (mapping[current] or {}).get("parent")
    tail = _chatgpt_tail(mapping, roots[0], 0, on_current_path)
    models = [m.get("model") for m in tail["messages"] if m.get("model")]
    chat = {
        "model": models[-1] if models else "chatgpt",
        "messages": tail["messages"],
        "temperature": 0.7,
        "max_tokens": -1,
        "created_at": _stamp(conversation.get("create_time")),
        "updated_at": _stamp(conversation.get("update_time")),
    }
    if tail[ALTERNATIVES]:
        chat[ALTERNATIVES] = tail[ALTERNATIVES]
    return ImportItem(position, name, chat)


def _chatgpt_tail(mapping: dict, node_id: str, index: int, preferred: set[str]) -> dict:
    """The branch from ``node_id`` down (following ``preferred`` nodes, else the newest
    child), with every other child's branch as an alternative at its position. Iterative
    along the branch: a conversation may be thousands of messages long."""
    messages: list[dict] = []
    alternatives: dict[str, list[dict]] = {}
    seen = set()
    while node_id in mapping and node_id not in seen:
        seen.add(node_id)
        node = mapping[node_id] if isinstance(mapping[node_id], dict) else {}
        message = _chatgpt_message(node.get("message"))
        if message is not None:
            messages.append(message)
        children = [child for child in node.get("children") or [] if isinstance(child, str) and child in mapping]
        if not children:
            break
        chosen = next((child for child in children if child in preferred), children[-1])
        position = index + len(messages)
        for child in children:
            if child != chosen:
                branch = _chatgpt_tail(mapping, child, position, set())
                if branch["messages"]:
                    alternatives.setdefault(str(position), []).append(branch)
        node_id = chosen
    return {"messages": messages, ALTERNATIVES: alternatives}


def _chatgpt_message(message: Any) -> dict | None:
    if not isinstance(message, dict):
        return None
    role = (message.get("author") or {}).get("role")
    content = message.get("content") or {}
    if role not in ("user", "assistant", "system") or not isinstance(content, dict):
        return None
    parts = content.get("parts")
    if isinstance(parts, list):
        text = "\n".join(part for part in parts if isinstance(part, str))
    elif isinstance(content.get("text"), str):
        text = content["text"]
    else:
        return None
    if not text.strip() or (message.get("metadata") or {}).get("is_visually_hidden_from_conversation"):
        return None
    result = {"role": role, "content": text}
    model = (message.get("metadata") or {}).get("model_slug")
    if isinstance(model, str) and role == "assistant":
        result["model"] = model
    return result


def _stamp(seconds: Any) -> str:
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and 0 < seconds < 1e11:
        return datetime.fromtimestamp(seconds, timezone.utc).isoformat()
    return chatfile.now()
