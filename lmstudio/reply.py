"""What a streamed chat completion says, event by event: the reply to store.

``ReplyCollector`` reads each ``chat.completion.chunk`` the relay passes on and keeps the
answer (``delta.content``), the reasoning apart from it (``delta.reasoning_content``,
DeepSeek-R1 style; ``delta.reasoning``, gpt-oss; or ``<think>…</think>`` inside the
content when LM Studio's "separate reasoning_content" setting is off), the
``finish_reason``, the model that answered, the token ``usage`` (the choices-less chunk
``stream_options.include_usage`` asks for) and the upstream's own ``timings`` (llama.cpp's
prompt and generation speeds), and which upstream answered (``answered_by``). Pieces are
kept in lists and joined once. Reasoning is stored trimmed, wherever it came from.
"""

from __future__ import annotations

import re
import time

import jsonbytes

from .errors import UpstreamError
from .sse import Event

_THINK = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.DOTALL)


def split_reasoning(text: str) -> tuple[str, str]:
    """``(answer, reasoning)`` of content that may hold ``<think>…</think>`` blocks (an
    unclosed one, from a reply cut while thinking, runs to the end)."""
    if "<think>" not in text:
        return text, ""
    reasoning = "\n\n".join(part.strip() for part in _THINK.findall(text) if part.strip())
    return _THINK.sub("", text).lstrip(), reasoning


class ReplyCollector:
    def __init__(self) -> None:
        self.who = "The upstream"  # how errors name the upstream, once known
        self.upstream: str | None = None
        self.failed_over: list[dict] = []
        self.upstream_timings: dict | None = None
        self.started_at = time.monotonic()
        self.first_token_at: float | None = None
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.usage: dict | None = None
        self.error: str | None = None

    def answered_by(self, call) -> None:
        """The UpstreamCall that answered (after its head): named in errors and in the reply."""
        self.who = call.who
        self.upstream = call.upstream.name if call.upstream is not None and call.upstream.named else None
        self.failed_over = call.failed_over

    def __call__(self, event: Event) -> bool:
        """Keep what the event says; true when the event is LM Studio's last word."""
        try:
            chunk = jsonbytes.loads(event.data, exact_integers=False)  # a lone surrogate escape too: orjson refuses it
        except ValueError:
            raise UpstreamError(502, f"{self.who} sent an event that is not JSON", "bad_stream") from None
        if not isinstance(chunk, dict):
            raise UpstreamError(502, f"{self.who} sent an event that is not a JSON object", "bad_stream")
        if "error" in chunk:
            # OpenAI's in-stream error format (LM Studio 0.3.18+): relayed as it is, and
            # nothing comes after it.
            error = chunk["error"]
            self.error = str(error.get("message", error) if isinstance(error, dict) else error)
            return True
        if isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        if isinstance(chunk.get("timings"), dict):
            self.upstream_timings = chunk["timings"]
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            return False
        choice = choices[0]
        if isinstance(choice.get("finish_reason"), str):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            self._delta(delta)
        return False

    def _delta(self, delta: dict) -> None:
        content = delta.get("content")
        reasoning = delta.get("reasoning_content", delta.get("reasoning"))
        if isinstance(content, str) and content:
            self.content.append(content)
        elif isinstance(reasoning, str) and reasoning:
            self.reasoning.append(reasoning)
        else:
            return
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    def message(self) -> dict | None:
        """The assistant message to store, or None when LM Studio said nothing."""
        answer, thought = split_reasoning("".join(self.content))
        reasoning = "\n\n".join(part.strip() for part in ("".join(self.reasoning), thought) if part.strip())
        if reasoning:
            answer = answer.lstrip()  # the blank line a model writes after its reasoning
        if not answer and not reasoning:
            return None
        message: dict = {"role": "assistant", "content": answer}
        if reasoning:
            message["reasoning"] = reasoning
        message["finish_reason"] = self.finish_reason
        if self.finish_reason is None:
            message["interrupted"] = True  # cut short: the client left, or the stream failed
        if self.model:
            message["model"] = self.model
        if self.usage:
            message["usage"] = self.usage
        if self.upstream:
            message["upstream"] = self.upstream
        if self.failed_over:
            message["failed_over"] = self.failed_over
        ended = time.monotonic()
        message["timings"] = {
            "first_token_ms": round(1000 * (self.first_token_at - self.started_at), 1) if self.first_token_at else None,
            "total_ms": round(1000 * (ended - self.started_at), 1),
        }
        if self.upstream_timings:
            message["timings"]["upstream"] = self.upstream_timings
        return message
