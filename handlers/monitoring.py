"""GET /health and GET /metrics.

/health: each upstream's state (asked afresh: its models, context lengths, circuit, open
requests), and can chats be written (``store``: the engine, whether it can store a change
now, and if not why). "ok" when all is well; 200 while chats can be served (at least one
upstream up and the store writable), else 503. It never needs the token (load balancers
and uptime checks call it) and answers within about two seconds whatever the upstreams
and the database do.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CONTENT_TYPE_LATEST

from .base import BaseHandler
from .version import __version__

UPSTREAM_CHECK_TIMEOUT_S = 1.5


class HealthHandler(BaseHandler):
    route = "/health"
    requires_token = False

    async def get(self) -> None:
        upstreams = self.services.upstreams
        checking_store = asyncio.ensure_future(self.store.health())  # beside the upstreams': both within the time
        await upstreams.checked(UPSTREAM_CHECK_TIMEOUT_S)
        states = [upstreams.describe(upstream) for upstream in upstreams]
        store = await checking_store
        writable = store["writable"]
        serving = writable and any(state["state"] == "up" for state in states)
        report = {
            "status": "ok" if writable and all(state["state"] == "up" for state in states) else "degraded",
            "upstreams": states,
            "chats_dir_writable": writable,
            "store": store,
            "active_streams": len(self.services.streams),
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.services.started_at, 1),
        }
        self.set_header("Cache-Control", "no-store")
        self.send_json(report, 200 if serving else 503)


class MetricsHandler(BaseHandler):
    route = "/metrics"

    async def get(self) -> None:
        metrics = self.services.metrics
        metrics.chats_stored.set(await self.store.count_chats())
        metrics.active_streams.set(len(self.services.streams))
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(metrics.exposition())
