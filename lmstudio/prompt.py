"""A prompt's size in tokens, and fitting a chat's messages into a model's context. Pure code.

Without the model's tokenizer the size is estimated on the safe side: a token per three
UTF-8 bytes (English runs about four characters a token, and a CJK character, three bytes,
is about one), plus a few tokens per message for the chat template's markers. A tokenizer
count (llama.cpp's ``/tokenize``) of the whole text is shared out over the messages in
proportion to their estimates (``apportion``).

``fit_messages`` keeps the system prompt and the first user message, and leaves out the
oldest turns after them until the rest fits with room for the reply (issue 16, item 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import UpstreamError

MESSAGE_OVERHEAD = 8  # role markers and separators of a chat template, per message
BYTES_PER_TOKEN = 3
NON_TEXT_PART = 1024  # an image or audio part of a message, when nothing better is known
DEFAULT_REPLY_ROOM = 1024  # when the chat sets no max_tokens (at most a quarter of the context)


class PromptTooLong(UpstreamError):
    """The prompt does not fit the model's context: 400, naming the sizes."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message, "context_overflow")


def message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def _non_text_parts(message: dict) -> int:
    content = message.get("content")
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if not (isinstance(part, dict) and isinstance(part.get("text"), str)))


def _text_estimate(message: dict) -> int:
    return math.ceil(len(message_text(message).encode("utf-8", "surrogatepass")) / BYTES_PER_TOKEN)


def estimate_tokens(message: dict) -> int:
    """A message's size in tokens, on the safe side."""
    return MESSAGE_OVERHEAD + _text_estimate(message) + NON_TEXT_PART * _non_text_parts(message)


def joined_text(messages: list[dict]) -> str:
    """The messages' texts as one, for a tokenizer to count."""
    return "\n".join(message_text(message) for message in messages)


def apportion(messages: list[dict], counted: int) -> list[int]:
    """Each message's size, given the tokenizer's count of ``joined_text(messages)``."""
    estimates = [_text_estimate(message) for message in messages]
    total = sum(estimates) or 1
    return [
        MESSAGE_OVERHEAD + math.ceil(counted * estimate / total) + NON_TEXT_PART * _non_text_parts(message)
        for message, estimate in zip(messages, estimates)
    ]


def reply_room(context_length: int, max_tokens: object) -> int:
    """Tokens to leave for the reply: the chat's ``max_tokens`` when it sets one."""
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
        return max_tokens
    return min(DEFAULT_REPLY_ROOM, context_length // 4)


@dataclass(frozen=True)
class Fit:
    messages: list[dict]  # what to send
    dropped: range  # the indices (into the messages given) left out; empty when all fit
    prompt_tokens: int  # the size of what is sent
    reply_tokens: int  # the room left for the reply


def fit_messages(messages: list[dict], sizes: list[int], context_length: int, reply_tokens: int, policy: str = "truncate") -> Fit:
    """The messages to send so that the prompt and ``reply_tokens`` fit ``context_length``.

    ``sizes`` are the messages' sizes in tokens (Upstreams.count_tokens). "truncate" leaves
    out the oldest turns (a user message and what answered it) after the leading system
    messages and the first user message; "error", or a prompt that does not fit even so,
    raises PromptTooLong naming the sizes.
    """
    if len(sizes) != len(messages):
        raise ValueError("one size per message")
    budget = context_length - reply_tokens
    total = sum(sizes)
    if total <= budget:
        return Fit(messages, range(0), total, reply_tokens)
    sizes_text = f"about {total} tokens, and {reply_tokens} more are kept for the reply, but the model's context holds {context_length}"
    if policy != "truncate":
        raise PromptTooLong(f"The chat is too long for the model: its prompt is {sizes_text}")
    first_user = next((i for i, m in enumerate(messages) if m.get("role") == "user"), len(messages))
    turn_starts = [i for i in range(first_user + 1, len(messages)) if messages[i].get("role") == "user"]
    kept_head = sum(sizes[: first_user + 1])
    for start in turn_starts:  # leave out everything between the first user message and ``start``
        tail = sum(sizes[start:])
        if kept_head + tail <= budget:
            return Fit(messages[: first_user + 1] + messages[start:], range(first_user + 1, start), kept_head + tail, reply_tokens)
    least = kept_head + (sum(sizes[turn_starts[-1] :]) if turn_starts else 0)
    raise PromptTooLong(
        f"The chat is too long for the model even without its older turns: the system prompt, the first "
        f"message and the last turn are about {least} tokens, and {reply_tokens} more are kept for the "
        f"reply, but the model's context holds {context_length}"
    )
