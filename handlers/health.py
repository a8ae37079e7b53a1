"""GET /health: is LM Studio reachable, can chats be written; 200 when all is well, else 503.

Never needs the token (load balancers and uptime checks call it) and answers within about
two seconds whatever LM Studio does.
"""

from __future__ import annotations

import time

from .base import BaseHandler
from .upstream import UpstreamError
from .version import __version__

UPSTREAM_CHECK_TIMEOUT_S = 1.5


class HealthHandler(BaseHandler):
    route = "/health"
    requires_token = False

    async def get(self) -> None:
        upstream = self.services.upstream
        try:
            models = await upstream.list_models(UPSTREAM_CHECK_TIMEOUT_S)
            reachable, problem = True, None
        except UpstreamError as error:
            models, reachable, problem = [], False, error.message
        writable = await self.store.is_writable()
        report = {
            "status": "ok" if reachable and writable else "degraded",
            "upstream": {"url": upstream.base_url, "reachable": reachable, "models": models},
            "chats_dir_writable": writable,
            "active_streams": len(self.services.streams),
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.services.started_at, 1),
        }
        if problem:
            report["upstream"]["error"] = problem
        self.set_header("Cache-Control", "no-store")
        self.send_json(report, 200 if report["status"] == "ok" else 503)
