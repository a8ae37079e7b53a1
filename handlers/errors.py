"""ApiError: an HTTP error whose message is meant for the client, and the one table that
says which HTTP status each of the store's errors answers with."""

from __future__ import annotations

from tornado.web import HTTPError

from store import (
    ChatCorrupt,
    ChatExists,
    ChatNotFound,
    InvalidChatName,
    InvalidChatValue,
    MessageIndexError,
    StorageFull,
    StoreUnavailable,
)


class ApiError(HTTPError):
    """An error whose ``message`` is meant for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.message = message
        self.headers = headers or {}

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}"


# Any other StoreError (StorageFailure) is a 500 that names the cause.
STORE_ERROR_STATUS = {
    InvalidChatName: 400,
    InvalidChatValue: 400,
    MessageIndexError: 400,
    ChatNotFound: 404,
    ChatExists: 409,
    ChatCorrupt: 500,
    StorageFull: 507,
    StoreUnavailable: 503,
}
# The database is away: how long a client should wait before it asks again.
STORE_RETRY_AFTER_S = 5


def status_for_store_error(error: BaseException) -> int | None:
    for error_type, status in STORE_ERROR_STATUS.items():
        if isinstance(error, error_type):
            return status
    return None


def headers_for_store_error(error: BaseException) -> dict[str, str]:
    return {"Retry-After": str(STORE_RETRY_AFTER_S)} if isinstance(error, StoreUnavailable) else {}
