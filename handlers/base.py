"""BaseHandler: JSON in and out, CORS, auth, limits, and the one place errors become responses.

Handlers raise ``ApiError`` (or let a store error or Tornado's own HTTPError fly); Tornado
routes every exception to ``send_error``/``write_error`` here, which answers
``{"status": "error", "message": ...}``: never an HTML page, never a traceback.

Bodies are streamed in (``stream_request_body``) so that ``prepare`` sees the headers first:
a request without the token, or with a body over ``limits.max_body_size``, is answered
before its body is read.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import random
from typing import Any

from tornado.web import HTTPError, RequestHandler, stream_request_body

import jsonbytes
from store import ChatCorrupt, StoreError

from . import params
from .errors import ApiError, headers_for_store_error, status_for_store_error
from .services import Services

log = logging.getLogger("chatproxy")

# Deeper JSON is no chat, and would reach the recursion limits of the JSON encoders.
MAX_JSON_DEPTH = 64

# Request ids need to be unique, not secret: a seeded PRNG costs no system call per request
# (uuid4 reads the kernel's random source each time).
_request_ids = random.Random()
os.register_at_fork(after_in_child=_request_ids.seed)  # --workers: no two workers share ids


@stream_request_body
class BaseHandler(RequestHandler):
    route = "unknown"  # the route's name in logs and metrics: never the raw path
    requires_token = True
    # The client closed the connection before the answer was complete (for the log): "before"
    # any of it was sent, or "during" it.
    client_left: str | None = None
    log_chat: str | None = None
    upstream_ms: float | None = None

    def initialize(self, services: Services) -> None:
        self.services = services
        self.config = services.config
        self.store = services.store
        self._body = bytearray()
        self._body_too_large = False
        self._when_client_leaves: list = []

    # -- before the body: auth and size ----------------------------------------------------

    def prepare(self) -> None:
        if self.request.method == "OPTIONS":
            return
        if self.requires_token and self.config.token is not None:
            presented = self.request.headers.get("Authorization", "")
            expected = f"Bearer {self.config.token}"
            if not hmac.compare_digest(presented.encode(), expected.encode()):
                raise ApiError(401, "A valid 'Authorization: Bearer <token>' header is required", {"WWW-Authenticate": "Bearer"})
        if self.body_limit != self.config.max_body_size:
            self.request.connection.set_max_body_size(self.body_limit)
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.body_limit:
            raise self._too_large()

    @property
    def body_limit(self) -> int:
        """The largest body this route takes (``limits.max_body_size``; imports take more)."""
        return self.config.max_body_size

    def data_received(self, chunk: bytes) -> None:
        if len(self._body) + len(chunk) > self.body_limit:
            self._body_too_large = True  # a chunked body without Content-Length
        elif not self._body_too_large:
            self._body += chunk

    @property
    def body(self) -> bytes:
        if self._body_too_large:
            raise self._too_large()
        return bytes(self._body)

    def take_body(self) -> bytearray:
        """The body without a copy; the handler keeps no reference to it afterwards."""
        if self._body_too_large:
            raise self._too_large()
        body, self._body = self._body, bytearray()
        return body

    def _too_large(self) -> ApiError:
        return ApiError(413, f"Request body is larger than the limit of {self.body_limit} bytes")

    # -- CORS and the request id -----------------------------------------------------------

    def set_default_headers(self) -> None:
        if not hasattr(self, "request_id"):
            self.request_id = f"{_request_ids.getrandbits(128):032x}"
        self.set_header("X-Request-Id", self.request_id)
        origins = self.settings["cors_origins"]
        origin = self.request.headers.get("Origin")
        if "*" in origins:
            self.set_header("Access-Control-Allow-Origin", "*")
        elif origin in origins:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.add_header("Vary", "Origin")
        self.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", "Content-Type, Authorization")
        self.set_header("Access-Control-Expose-Headers", "X-Request-Id, Retry-After")
        self.set_header("Access-Control-Max-Age", "600")

    def options(self, *args: str) -> None:
        self.set_status(204)
        self.finish()

    def when_client_leaves(self, callback) -> None:
        """Call ``callback`` if the client closes the connection before the answer is done."""
        self._when_client_leaves.append(callback)

    def on_connection_close(self) -> None:
        if not self._finished:
            self.client_left = "during" if self._headers_written else "before"
        for callback in self._when_client_leaves:
            callback()

    # -- JSON in and out -------------------------------------------------------------------

    def json_body(self) -> dict[str, Any]:
        body = self.body
        if not body:
            raise ApiError(400, "Request body is empty: expected a JSON object")
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, ValueError) as error:
            raise ApiError(400, f"Request body is not valid JSON: {error}") from None
        except RecursionError:
            raise self._too_deep() from None
        if not isinstance(parsed, dict):
            raise ApiError(400, "Request body must be a JSON object")
        if _depth_over(parsed, MAX_JSON_DEPTH):
            raise self._too_deep()
        return parsed

    def _too_deep(self) -> ApiError:
        return ApiError(400, f"Request body is nested more than {MAX_JSON_DEPTH} levels deep")

    def text_argument(self, key: str) -> str | None:
        """The last ``?key=`` exactly as sent (None if absent). Not get_query_argument: it
        turns control characters into spaces, and a name must reach the store as it was."""
        values = self.request.query_arguments.get(key)
        if not values:
            return None
        try:
            return values[-1].decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, f"'{key}' is not valid UTF-8") from None

    def integer_argument(self, key: str, default: int, low: int, high: int) -> int:
        value = self.text_argument(key)
        if value is None:
            return default
        if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
            raise ApiError(400, f"'{key}' must be a whole number from {low} to {high}")
        return int(value)

    def chat_name_argument(self) -> str:
        """``?name=`` as in the original server; a JSON body's ``name`` also works (DELETE)."""
        name = self.text_argument("name")
        if name is None and self.body:
            return self.chat_name(self.json_body())
        if not name:
            raise ApiError(400, "'name' is required (?name=...)")
        self.log_chat = name
        return name

    def chat_name(self, body: dict[str, Any]) -> str:
        """The body's ``name``, checked, and noted for the request's log line."""
        self.log_chat = params.text(body, "name")
        return self.log_chat

    def send_json(self, payload: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(jsonbytes.dumps(payload))

    def success(self, **fields: Any) -> None:
        self.send_json({"status": "success", **fields})

    # -- the error funnel ------------------------------------------------------------------

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        super().send_error(status_for_store_error(error) or status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        write_json_error(self, status_code, kwargs.get("exc_info", (None, None, None))[1])

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, ChatCorrupt):
            log.warning("%s %s: %s", self.request.method, self.request.path, value)
        elif isinstance(value, (ApiError, StoreError)):
            log.info("%s %s: %s", self.request.method, self.request.path, value)
        else:
            super().log_exception(typ, value, tb)

    def on_finish(self) -> None:
        self.services.metrics.requests.labels(self.route, self.request.method, str(self.get_status())).inc()


class NotFoundHandler(BaseHandler):
    """Every unknown URL, whatever the method, gets the JSON 404."""

    def prepare(self) -> None:
        super().prepare()
        if self.request.method != "OPTIONS":
            raise ApiError(404, f"No route for {self.request.method} {self.request.path}")


def write_json_error(handler: RequestHandler, status_code: int, error: BaseException | None) -> None:
    """The one error shape, ``{"status": "error", "message": ...}``, for every handler
    (the static files' too): never an HTML page, never a traceback."""
    if isinstance(error, ApiError):
        message = error.message
        for name, value in error.headers.items():
            handler.set_header(name, value)
    elif isinstance(error, StoreError):
        message = str(error)
        for name, value in headers_for_store_error(error).items():
            handler.set_header(name, value)
    elif status_code == 405:
        message = f"Method {handler.request.method} is not allowed on {handler.request.path}"
    elif isinstance(error, HTTPError) and status_code < 500:
        message = error.log_message or handler._reason
    elif status_code >= 500:
        message = "Internal server error; the details are in the server log"
    else:
        message = handler._reason
    handler.set_header("Content-Type", "application/json; charset=UTF-8")
    handler.finish(jsonbytes.dumps({"status": "error", "message": message}))


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers more than ``limit`` deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return False
