"""Logging set-up: text for people or one JSON object per line, and the access log line.

Handlers put what a log line should carry on themselves (``request_id``, ``log_chat``,
``upstream_ms``); ``log_request`` reads it once per request. No header is ever logged, so
the auth token never reaches a log.
"""

from __future__ import annotations

import json
import logging
import time

access_log = logging.getLogger("chatproxy.access")

# Fields a record may carry as ``extra`` that the JSON format writes out.
FIELDS = ("request_id", "method", "route", "path", "status", "duration_ms", "chat", "upstream_ms", "client_left")
# nginx's code for "the client closed the connection before the answer": a request whose
# client left before any response went out is not logged as if it had been answered.
CLIENT_CLOSED_REQUEST = 499


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(debug: bool, fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def log_request(handler) -> None:
    """Tornado's ``log_function``: one line per finished request, with status and duration,
    and whether the client left before the answer was complete."""
    status = handler.get_status()
    left = getattr(handler, "client_left", None)
    if left == "before":
        status = CLIENT_CLOSED_REQUEST
    duration_ms = round(1000.0 * handler.request.request_time(), 2)
    # ERROR is for faults of ours; a 502 from LM Studio or a 503 from /health is a warning.
    level = logging.INFO if status < 400 or status == CLIENT_CLOSED_REQUEST else logging.ERROR if status == 500 else logging.WARNING
    fields = {
        "request_id": getattr(handler, "request_id", None),
        "method": handler.request.method,
        "route": getattr(handler, "route", None),
        "path": handler.request.path,
        "status": status,
        "duration_ms": duration_ms,
        "chat": getattr(handler, "log_chat", None),
        "upstream_ms": getattr(handler, "upstream_ms", None),
        "client_left": left,
    }
    access_log.log(
        level,
        "%d %s %s %.2fms id=%s%s",
        status,
        handler.request.method,
        handler.request.path,
        duration_ms,
        fields["request_id"],
        " (client left)" if left else "",
        extra=fields,
    )
