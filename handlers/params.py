"""Request parameter checks: each returns the typed value or raises a 400 ApiError."""

from __future__ import annotations

from typing import Any

from store import BY_NAME, HIDE_ARCHIVED, ONLY_ARCHIVED, RECENT, WITH_ARCHIVED
from store.titles import MAX_TITLE_CHARS, one_line
from turns.request import OVERFLOW_POLICIES

from .errors import ApiError

MESSAGE_ROLES = ("user", "system", "assistant", "tool")


def text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        raise ApiError(400, f"'{key}' is required")
    if not isinstance(value, str):
        raise ApiError(400, f"'{key}' must be a string")
    if not value.strip():
        raise ApiError(400, f"'{key}' must not be empty")
    return value


def optional_text(body: dict[str, Any], key: str) -> str | None:
    return text(body, key) if body.get(key) is not None else None


def content(body: dict[str, Any], key: str, max_size: int, label: str | None = None) -> str:
    """Message text: a string (it may be empty) within ``limits.max_message_size``;
    ``label`` names it in the error (default: ``key``)."""
    value = body.get(key)
    label = label or key
    if not isinstance(value, str):
        raise ApiError(400, f"'{label}' must be a string")
    if len(value) > max_size:
        raise ApiError(413, f"'{label}' is longer than the limit of {max_size} characters")
    return value


def flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise ApiError(400, f"'{key}' must be true or false")
    return value


def optional_flag(body: dict[str, Any], key: str) -> bool | None:
    """A true/false the body may leave out (None)."""
    return flag(body, key) if key in body else None


def number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ApiError(400, f"'{key}' must be a number from {low:g} to {high:g}")
    return value


def integer(body: dict[str, Any], key: str, default: int | None = None) -> int:
    value = body.get(key, default)
    if value is None:
        raise ApiError(400, f"'{key}' is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"'{key}' must be an integer")
    return value


def index(body: dict[str, Any], key: str = "index") -> int:
    value = integer(body, key)
    if value < 0:
        raise ApiError(400, f"'{key}' must not be negative")
    return value


def max_tokens(body: dict[str, Any]) -> int:
    value = integer(body, "max_tokens", -1)
    if value < -1 or value == 0:
        raise ApiError(400, "'max_tokens' must be -1 (no limit) or a positive integer")
    return value


def settings(body: dict[str, Any], max_size: int) -> dict[str, Any]:
    """The chat settings PATCH /chat may change: only those the body names."""
    changes: dict[str, Any] = {}
    if "model" in body:
        changes["model"] = text(body, "model")
    if "temperature" in body:
        changes["temperature"] = number(body, "temperature", 0.7, 0, 2)
    if "max_tokens" in body:
        changes["max_tokens"] = max_tokens(body)
    if "context_overflow" in body:
        if body["context_overflow"] not in OVERFLOW_POLICIES:
            raise ApiError(400, f"'context_overflow' must be one of {', '.join(OVERFLOW_POLICIES)}")
        changes["context_overflow"] = body["context_overflow"]
    if "system_prompt" in body:
        prompt = body["system_prompt"]
        if prompt is not None:
            prompt = content(body, "system_prompt", max_size)
        changes["system_prompt"] = prompt or None  # "" or null: no system prompt
    return changes


def marks(body: dict[str, Any]) -> dict[str, Any]:
    """What PATCH /chat may set beside the settings, without waiting for a running turn: the
    ``title`` (null or "": the first message's again), ``pinned`` and ``archived`` (set, not
    toggled; false is stored as the key's absence)."""
    changes: dict[str, Any] = {}
    if "title" in body:
        title = body["title"]
        if title is not None and not isinstance(title, str):
            raise ApiError(400, "'title' must be a string, or null to go back to the first message's")
        title = one_line(title) if title is not None else ""
        if len(title) > MAX_TITLE_CHARS:
            raise ApiError(400, f"'title' must be at most {MAX_TITLE_CHARS} characters")
        changes["title"] = title or None
    for key in ("pinned", "archived"):
        if key in body:
            if not isinstance(body[key], bool):
                raise ApiError(400, f"'{key}' must be true or false")
            changes[key] = body[key] or None
    return changes


LISTING_ORDERS = {"name": BY_NAME, "recent": RECENT}
ARCHIVED_CHOICES = {"false": HIDE_ARCHIVED, "true": WITH_ARCHIVED, "only": ONLY_ARCHIVED}


def listing_view(sort: str | None, archived: str | None) -> tuple[str, str]:
    """GET /chats's ``?sort=`` and ``?archived=``, as the store's listing view."""
    if sort is None:
        sort = "name"
    if sort not in LISTING_ORDERS:
        raise ApiError(400, "'sort' must be 'recent' (or 'name', the order when it is left out)")
    if archived is not None and sort != "recent":
        raise ApiError(400, "'archived' applies to sort=recent only: the order by name lists every chat")
    if archived is not None and archived not in ARCHIVED_CHOICES:
        raise ApiError(400, "'archived' must be 'false' (leave archived chats out), 'true' (list them too) or 'only'")
    return LISTING_ORDERS[sort], ARCHIVED_CHOICES[archived or "false"]


def message(body: dict[str, Any], max_size: int) -> dict[str, Any]:
    value = body.get("message")
    if value is None:
        raise ApiError(400, "'message' is required")
    if not isinstance(value, dict):
        raise ApiError(400, "'message' must be an object with 'role' and 'content'")
    content(value, "content", max_size, "message.content")
    role = value.setdefault("role", "user")
    if role not in MESSAGE_ROLES:
        raise ApiError(400, f"'message.role' must be one of {', '.join(MESSAGE_ROLES)}")
    return value
