"""What can go wrong with an upstream, as chatproxy's own exceptions, and the upstream's error bodies read."""

from __future__ import annotations

import json
from typing import Any


class UpstreamError(Exception):
    """A failed call to an upstream: ``status`` to answer with, ``kind`` for logs and metrics,
    ``detail`` the upstream's own error object when it sent one."""

    def __init__(self, status: int, message: str, kind: str, detail: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.detail = detail


class ClientGone(Exception):
    """The client hung up; the upstream request was ended so the upstream stops generating."""


def error_detail(body: bytes) -> dict | None:
    """The error object of an OpenAI-style error body, or None."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) else None


def error_message_from_body(body: bytes) -> str:
    """The upstream's error in one line: its sentence, then its type and the other facts it
    gave (llama.cpp's context overflow says how many tokens the prompt has and the context
    holds), from an OpenAI-style body, LM Studio's plain string, or text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:500] or "(empty body)"
    if not isinstance(parsed, dict):
        return text[:500]
    error: Any = parsed.get("error", parsed)
    if isinstance(error, str):
        return error
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return json.dumps(error)[:500]
    facts = [
        f"{key}: {value}"
        for key, value in error.items()
        if key != "message" and isinstance(value, (str, int, float)) and not isinstance(value, bool)
    ]
    return error["message"] + (f" ({', '.join(facts)})" if facts else "")
