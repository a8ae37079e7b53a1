"""The chat page at ``/`` and its files under ``/static/``: plain files from static/, no build
step, nothing from another origin. They need no token (they hold no chat; the page asks for
the token and sends it with every call), and a strict Content-Security-Policy means a
message can never bring a script of its own, whatever reaches the page."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from tornado.web import StaticFileHandler

from .base import BaseHandler, write_json_error
from .errors import ApiError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def _secure(handler) -> None:
    handler.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "no-referrer")


@functools.cache
def _page() -> bytes:
    """index.html, read once: it is part of the program, and no file is read on the loop."""
    return (STATIC_DIR / "index.html").read_bytes()


class PageHandler(BaseHandler):
    route = "/"
    requires_token = False

    def get(self) -> None:
        _secure(self)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(_page())

    head = get  # Tornado sends no body for HEAD


class StaticHandler(StaticFileHandler):
    """Tornado's static files (ETags, ranges, no path outside static/), with chatproxy's JSON
    errors: the one error shape holds here too."""

    def set_default_headers(self) -> None:
        _secure(self)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if status_code in (403, 404):  # Tornado's own messages name absolute paths
            error = ApiError(404, f"No file {self.request.path}")
            self.set_status(404)
        write_json_error(self, self.get_status(), error)
