"""GET /health and GET /metrics.

/health: is LM Studio reachable, can chats be written; 200 when all is well, else 503. It
never needs the token (load balancers and uptime checks call it) and answers within about
two seconds whatever LM Studio does.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST

from lmstudio import UpstreamError

from .base import BaseHandler
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


class MetricsHandler(BaseHandler):
    route = "/metrics"

    async def get(self) -> None:
        metrics = self.services.metrics
        metrics.chats_stored.set(await self.store.count_chats())
        metrics.active_streams.set(len(self.services.streams))
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(metrics.exposition())
