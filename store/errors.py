"""The store's own errors. They speak of chats, never of HTTP: handlers/base.py maps them."""


class StoreError(Exception):
    """Base class; ``str(error)`` is a sentence fit to show the user."""


class InvalidChatName(StoreError):
    pass


class InvalidChatValue(StoreError):
    """A value the chat cannot hold (a message index that is not there, a bad import item)."""


class ChatNotFound(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Chat '{name}' not found")


class ChatExists(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Chat '{name}' already exists")


class ChatCorrupt(StoreError):
    """The file is there but is not a chat; it is never overwritten, so the user can rescue it."""

    def __init__(self, name: str, file_name: str, problem: str) -> None:
        super().__init__(
            f"Chat '{name}' is damaged: {file_name} {problem}. "
            "The file is left untouched; repair or remove it by hand."
        )


class MessageIndexError(StoreError):
    def __init__(self, index: int, count: int) -> None:
        super().__init__(
            f"Message index {index} is out of range: the chat has {count} messages"
        )


class StorageFailure(StoreError):
    """A file operation failed for a reason that is not the request's (disk full, worker gone)."""


class StorageFull(StorageFailure):
    """The disk (or the user's quota) is full: nothing was changed."""
