"""The chat file format: the original server's JSON, read as is, written readably and fast.

A chat is a JSON object with ``model``, ``messages``, ``temperature``, ``max_tokens``,
``created_at`` and ``updated_at``. Keys we do not know, at the top level and inside
messages, are kept untouched: a file edited by hand or by a later version loses nothing.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

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


def decode(name: str, file_name: str, data: bytes) -> dict:
    try:
        chat = json.loads(data)
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
    """Two-space JSON with one message per line.

    ``json.dumps(indent=...)`` runs the pure-Python encoder, several times slower than the C
    one on a chat of thousands of messages; each value here goes through the C encoder.
    """
    try:
        return _encode(chat, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a model may split an emoji's escape pair across chunks) has no
        # UTF-8 form; JSON's \uXXXX escapes keep it, and joined pairs read back whole.
        return _encode(chat, ensure_ascii=True).encode("ascii")


def _encode(chat: dict, ensure_ascii: bool) -> str:
    def dump(value: object) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii)

    fields = []
    for key, value in chat.items():
        if key == "messages" and value:
            body = ",\n    ".join(dump(message) for message in value)
            fields.append(f'  "messages": [\n    {body}\n  ]')
        else:
            fields.append(f"  {dump(key)}: {dump(value)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"
