"""Chat persistence: the Store interface (engine.py) and its two engines, the chats folder
(chats.ChatStore, one JSON file per chat, the default) and PostgreSQL (postgres/)."""

from .chats import ChatStore
from .engine import Store
from .listing import BY_NAME, HIDE_ARCHIVED, ONLY_ARCHIVED, RECENT, WITH_ARCHIVED
from .errors import (
    ChatCorrupt,
    ChatExists,
    ChatNotFound,
    InvalidChatName,
    InvalidChatValue,
    MessageIndexError,
    StorageFailure,
    StorageFull,
    StoreError,
    StoreUnavailable,
)

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(location: str) -> bool:
    return location.startswith(POSTGRES_SCHEMES)


def store_at(location: str, **options) -> Store:
    """The store at ``location``: a ``postgresql://`` URL (``options`` go to PostgresStore),
    or else the path of a chats folder (``options`` are PostgreSQL's: left aside). psycopg
    is imported only for PostgreSQL."""
    if is_postgres_url(location):
        from .postgres.engine import PostgresStore

        return PostgresStore(location, **options)
    return ChatStore(location)


__all__ = [
    "BY_NAME",
    "HIDE_ARCHIVED",
    "ONLY_ARCHIVED",
    "RECENT",
    "WITH_ARCHIVED",
    "ChatStore",
    "Store",
    "is_postgres_url",
    "store_at",
    "ChatCorrupt",
    "ChatExists",
    "ChatNotFound",
    "InvalidChatName",
    "InvalidChatValue",
    "MessageIndexError",
    "StorageFailure",
    "StorageFull",
    "StoreError",
    "StoreUnavailable",
]
