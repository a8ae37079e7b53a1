"""The listing's entries and views: pure rules, shared by the engines.

A view lists by name (the original server's order and shape: ``id``, ``name``, ``model``),
or by recent activity (pinned chats first, then by ``updated_at``, newest first; archived
chats left out, shown or alone), whose entries also carry ``title``, ``updated_at``,
``pinned`` and ``archived`` (and, on the folder, damaged files with ``damaged`` saying why).
"""

from __future__ import annotations

BY_NAME, RECENT = "name", "recent"  # the orders of a view
HIDE_ARCHIVED, WITH_ARCHIVED, ONLY_ARCHIVED = "hide", "include", "only"  # archived chats in a recent view
SEED_KEYS = ("id", "name", "model")


def summary(name: str, chat: dict) -> dict:
    """The chat's entry in a recent view (its first three keys: in a view by name)."""
    model, title, updated_at = chat.get("model"), chat.get("title"), chat.get("updated_at")
    return {
        "id": name,
        "name": name,
        "model": model if isinstance(model, str) else None,
        "title": title if isinstance(title, str) else None,
        "updated_at": updated_at if isinstance(updated_at, str) else None,
        "pinned": chat.get("pinned") is True,
        "archived": chat.get("archived") is True,
    }


def by_name(summary: dict) -> dict:
    return {key: summary[key] for key in SEED_KEYS}


def recent(summaries: list[dict], damaged: list[dict], archived: str) -> list[dict]:
    """Pinned chats first, then the others, each newest activity first; damaged files among
    them by the time they were last written, unless only archived chats are asked for."""
    if archived == ONLY_ARCHIVED:
        chosen = [summary for summary in summaries if summary["archived"]]
    else:
        chosen = summaries if archived == WITH_ARCHIVED else [s for s in summaries if not s["archived"]]
        chosen = chosen + damaged
    chosen = sorted(chosen, key=lambda summary: summary["updated_at"] or "", reverse=True)
    chosen.sort(key=lambda summary: not summary["pinned"])  # stable: each part stays newest first
    return chosen
