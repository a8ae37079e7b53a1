"""HTTP handlers, one per route; ``routes()`` is the route table."""

from __future__ import annotations

from .base import NotFoundHandler, Services
from .chats import ChatHandler, ChatListHandler, MessageHandler


def routes(services: Services) -> list[tuple]:
    args = {"services": services}
    return [
        (r"/chats", ChatListHandler, args),
        (r"/chat", ChatHandler, args),
        (r"/chat/message", MessageHandler, args),
    ]


__all__ = ["NotFoundHandler", "Services", "routes"]
