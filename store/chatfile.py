"""The chat file format: the original server's JSON, read as is, written readably and fast.

A chat is a JSON object with ``model``, ``messages``, ``temperature``, ``max_tokens``,
``created_at`` and ``updated_at``; chatproxy adds ``title``/``title_source``, ``pinned`` and
``archived`` (true or absent) and more (docs/storage.md). Keys we do not know, at the top level and inside
messages, are kept untouched: a file edited by hand or by a later version loses nothing.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Callable

import jsonbytes

from . import titles
from .errors import ChatCorrupt


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def new_chat(model: str, temperature: float, max_tokens: int) -> dict:
    stamp = now()
    return {
        "model": model,
        "messages": [],
        "temperature": temperature,
        "max_tokens": max_tokens,
        "created_at": stamp,
        "updated_at": stamp,
    }


def apply_settings(chat: dict, changes: dict) -> None:
    """Set the given keys; a None value removes the key (e.g. clears the system prompt). A
    ``title`` is the user's (titles.py)."""
    for key, value in changes.items():
        if key == titles.TITLE:
            titles.set_by_user(chat, value)
        elif value is None:
            chat.pop(key, None)
        else:
            chat[key] = value


def changed_by(rule: Callable[..., object], *arguments: object) -> Callable[[dict], dict]:
    """A change for either engine's update that applies ``rule(chat, *arguments)`` (a rule of
    this module, history.py or running.py) and answers the changed chat."""

    def change(chat: dict) -> dict:
        rule(chat, *arguments)
        return chat

    return change


def decode(name: str, file_name: str, data: bytes) -> dict:
    try:
        chat = jsonbytes.loads(data)  # the standard library's verdict where orjson refuses
    except UnicodeDecodeError:
        raise ChatCorrupt(name, file_name, "is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise ChatCorrupt(name, file_name, f"is not valid JSON ({error})") from None
    if not isinstance(chat, dict):
        raise ChatCorrupt(name, file_name, "does not hold a JSON object")
    if not isinstance(chat.get("messages"), list):
        raise ChatCorrupt(name, file_name, 'has no "messages" list')
    return chat


def encode(chat: dict) -> bytes:
    """Indented JSON, as the original server wrote it."""
    return jsonbytes.dumps(chat, indent=True)
