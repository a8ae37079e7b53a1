"""What can go wrong with an upstream, as chatproxy's own exceptions, and the upstream's error bodies read."""

from __future__ import annotations

import json
import re
from typing import Any

EXCERPT_CHARS = 200
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HEAD = re.compile(r"<(script|style|head)\b.*?</\1>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


class UpstreamError(Exception):
    """A failed call to an upstream: ``status`` to answer with, ``kind`` for logs and metrics."""

    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


class ClientGone(Exception):
    """The client hung up; the upstream request was ended so the upstream stops generating."""


def http_error(who: str, status: int, body: bytes, answer_with: int = 502) -> UpstreamError:
    """An upstream's error answer (``status`` and its ``body``), as the error chatproxy
    answers with (``answer_with``): "WHO answered STATUS: its sentence (its facts)"."""
    return UpstreamError(answer_with, f"{who} answered {status}: {error_message_from_body(body)}", "http_error")


def error_message_from_body(body: bytes) -> str:
    """The upstream's error in one line: its sentence, then its type and the other facts it
    gave (llama.cpp's context overflow says how many tokens the prompt has and the context
    holds), from an OpenAI-style body, LM Studio's plain string, or text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return excerpt(text)
    if not isinstance(parsed, dict):
        return excerpt(text)
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


def excerpt(text: str) -> str:
    """A body that is no JSON, shortened for a person: an HTML page (a proxy's or a web
    server's error page) by its title or its words, anything else by its start."""
    if text[:1] == "<":
        title = _TITLE.search(text)
        words = title.group(1) if title else _TAG.sub(" ", _HEAD.sub(" ", text))
        text = f"an HTML page: {' '.join(words.split())}"
    text = " ".join(text.split())
    if not text:
        return "(empty body)"
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"
