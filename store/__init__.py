"""Chat persistence: one JSON file per chat in the chats folder. See chats.ChatStore."""

from .chats import ChatStore
from .index import BY_NAME, HIDE_ARCHIVED, ONLY_ARCHIVED, RECENT, WITH_ARCHIVED
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
)

__all__ = [
    "BY_NAME",
    "HIDE_ARCHIVED",
    "ONLY_ARCHIVED",
    "RECENT",
    "WITH_ARCHIVED",
    "ChatStore",
    "ChatCorrupt",
    "ChatExists",
    "ChatNotFound",
    "InvalidChatName",
    "InvalidChatValue",
    "MessageIndexError",
    "StorageFailure",
    "StorageFull",
    "StoreError",
]
