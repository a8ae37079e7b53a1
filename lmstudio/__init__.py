"""The upstream client: how chatproxy talks to LM Studio and any OpenAI-compatible server.

``upstreams`` is the front (routing, failover, model lists, context lengths), ``call`` one
routed request, ``client`` one HTTP request to one upstream over ``http`` (libcurl);
``catalog`` reads what the servers say they offer, ``prompt`` sizes and fits prompts,
``reply`` reads a streamed reply; ``sse`` is the pure wire-format decoder.
Nothing here knows a route or a chat.
"""

from .call import UpstreamCall
from .errors import ClientGone, UpstreamError, error_message_from_body
from .http import UpstreamHTTPClient
from .prompt import Fit, PromptTooLong, estimate_tokens, fit_messages, reply_room
from .reply import ReplyCollector
from .upstream import Upstream
from .upstreams import Upstreams

__all__ = [
    "ClientGone",
    "Fit",
    "PromptTooLong",
    "ReplyCollector",
    "Upstream",
    "UpstreamCall",
    "UpstreamError",
    "UpstreamHTTPClient",
    "Upstreams",
    "error_message_from_body",
    "estimate_tokens",
    "fit_messages",
    "reply_room",
]
