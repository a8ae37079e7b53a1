"""The LM Studio client: how chatproxy talks to any OpenAI-compatible server.

``client`` is the HTTP side (status gate, timeouts, abort, error sentences); ``chunked``
and ``sse`` are the pure wire-format decoders it and the relay read with. Nothing here
knows a route or a chat.
"""

from .client import ClientGone, Upstream, UpstreamCall, UpstreamError, error_message_from_body
from .reply import ReplyCollector

__all__ = ["ClientGone", "ReplyCollector", "Upstream", "UpstreamCall", "UpstreamError", "error_message_from_body"]
