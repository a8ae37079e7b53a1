"""Chat persistence: one JSON file per chat in the chats folder. See chats.ChatStore."""

from .chats import ChatStore
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
