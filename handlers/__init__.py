"""HTTP handlers, one per route; ``routes()`` is the route table."""

from __future__ import annotations

from .base import NotFoundHandler
from .branches import BranchesHandler, BranchHandler, RegenerateHandler
from .chats import ChatHandler, ChatListHandler, MessageHandler
from .metrics import Metrics
from .monitoring import HealthHandler, MetricsHandler
from .page import STATIC_DIR, PageHandler, StaticHandler
from .passthrough import PassthroughHandler
from .services import Services
from .transfer import ChatExportHandler, ChatsExportHandler, ImportHandler
from .turns import StopHandler, StreamHandler
from .version import __version__


def routes(services: Services) -> list[tuple]:
    args = {"services": services}
    return [
        (r"/chats", ChatListHandler, args),
        (r"/chats/export", ChatsExportHandler, args),
        (r"/chats/import", ImportHandler, args),
        (r"/chat", ChatHandler, args),
        (r"/chat/message", MessageHandler, args),
        (r"/chat/regenerate", RegenerateHandler, args),
        (r"/chat/branches", BranchesHandler, args),
        (r"/chat/branch", BranchHandler, args),
        (r"/chat/export", ChatExportHandler, args),
        (r"/chat/stream", StreamHandler, args),
        (r"/chat/stop", StopHandler, args),
        (r"/v1/(.*)", PassthroughHandler, args),
        (r"/", PageHandler, args),
        (r"/static/(.*)", StaticHandler, {"path": str(STATIC_DIR)}),
        (r"/health", HealthHandler, args),
        (r"/metrics", MetricsHandler, args),
    ]


__all__ = ["Metrics", "NotFoundHandler", "Services", "__version__", "routes"]
