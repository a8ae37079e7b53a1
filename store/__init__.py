"""Chat persistence: one JSON file per chat in the chats folder. See chats.ChatStore."""

from .chats import ChatStore
from .errors import (
    ChatCorrupt,
    ChatExists,
    ChatNotFound,
    InvalidChatName,
    MessageIndexError,
    StorageFailure,
    StoreError,
)

__all__ = [
    "ChatStore",
    "ChatCorrupt",
    "ChatExists",
    "ChatNotFound",
    "InvalidChatName",
    "MessageIndexError",
    "StorageFailure",
    "StoreError",
]
