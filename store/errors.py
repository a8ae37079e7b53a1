"""The store's own errors. They speak of chats, never of HTTP: handlers/errors.py maps them."""

import errno
from contextlib import contextmanager
from typing import Iterator


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
        self.detail = f"{file_name} {problem}"  # what the listing says of it
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
    """A file operation failed for a reason that is not the request's (disk full, a read-only folder)."""


class StorageFull(StorageFailure):
    """The disk (or the user's quota) is full: nothing was changed."""


class StoreUnavailable(StorageFailure):
    """The database cannot be reached now (down, restarting, the network away): nothing was
    changed by the operation that failed; the same request may work again shortly."""


def from_os_error(error: OSError, doing: str) -> StorageFailure:
    """The sentence a user can act on for a failed file operation ``doing`` (e.g. "saving
    chat 'x'"): a full disk, a read-only folder and a permission problem each say so."""
    detail = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"Storage is full while {doing}: {detail}. Free some space; the chat file was not replaced")
    if error.errno == errno.EROFS:
        return StorageFailure(f"The chats folder is read-only while {doing}: {detail}")
    if error.errno in (errno.EACCES, errno.EPERM):
        where = f" ({error.filename})" if error.filename else ""
        return StorageFailure(f"chatproxy may not write in the chats folder while {doing}: {detail}{where}")
    return StorageFailure(f"Storage failed while {doing}: {detail}")


@contextmanager
def storage_errors(doing: str) -> Iterator[None]:
    """An OS error in the block becomes the store's own (from_os_error), naming ``doing``."""
    try:
        yield
    except OSError as error:
        raise from_os_error(error, doing) from None
