"""A fake LM Studio: a real Tornado HTTP server that speaks LM Studio's wire format.

Tests script each reply (``Reply``): status and error body, the tokens, how the event
stream is cut into network writes (whole events, one byte at a time, everything at once,
odd-sized pieces), CRLF line ends, ``: ping`` comments, pauses, a dropped connection. The
fake records every request body and every connection the client closed before the end, and
tests wait on what it has seen with ``wait_requests``, ``wait_held``, ``wait_closed`` and
``wait_idle``: each wakes when the fake's state changes and fails after its deadline.

Run alone (for benchmarks): ``python -m tests.fake_lmstudio --port 1234``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
from collections import deque
from dataclasses import dataclass, field

from tornado.iostream import StreamClosedError
from tornado.web import Application, HTTPError, RequestHandler

MODEL = "test-model"
NO_MODELS = (
    "No models loaded. Please load a model in the developer page or use the `lms load` command."
)


@dataclass
class Reply:
    """One scripted answer to POST /v1/chat/completions."""

    tokens: list[str] = field(default_factory=lambda: ["Hello", ", ", "world", "!"])
    status: int = 200
    error: str | None = None  # with status >= 400: LM Studio's error body
    cut: str = "events"  # events | bytes | all | odd
    crlf: bool = False
    comments: bool = False  # a ": ping" comment before every event
    interval: float = 0.0  # seconds between events
    hold: asyncio.Event | None = None  # wait for this before token number ``hold_at``
    hold_at: int = 0
    drop_after: int | None = None  # close the connection after this many tokens
    garbage: bytes | None = None  # sent after the first token instead of the rest
    stream_error: str | None = None  # an OpenAI-style error event after the first token, then the end
    reasoning: list[str] = field(default_factory=list)  # reasoning deltas first
    reasoning_field: str = "reasoning_content"  # DeepSeek-R1 style; "reasoning" is gpt-oss's
    usage: bool = False  # a final choices-less usage chunk
    content_type: str = "text/event-stream"
    stamp: bool = False  # each token is the monotonic send time (benchmarks)
    first_delay: float = 0.0  # seconds of "prompt processing" between the headers and the first token
    error_body: dict | bytes | None = None  # with status >= 400: this body instead of LM Studio's (bytes: an HTML page)
    timings: dict | None = None  # llama.cpp's own speeds, in the last chunk
    head_hold: asyncio.Event | None = None  # wait for this before the headers: a server that took the request and says nothing


def reply_for_model(model: object) -> Reply | None:
    """Benchmarks script the fake through the model name: ``bench:tokens=50:interval=0.1:first=0.02``."""
    if not isinstance(model, str) or not model.startswith("bench:"):
        return None
    params = dict(part.split("=", 1) for part in model.split(":")[1:])
    return Reply(
        tokens=["tok"] * int(params.get("tokens", 1)),
        interval=float(params.get("interval", 0)),
        stamp=params.get("stamp") == "1",
        first_delay=float(params.get("first", 0)),
    )


def chunk(delta: dict, finish_reason: str | None = None, created: int = 0) -> dict:
    return {
        "id": "chatcmpl-fake123",
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL,
        "system_fingerprint": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def event_bytes(payload: dict | str, crlf: bool = False) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    end = "\r\n" if crlf else "\n"
    # A lone surrogate (half an emoji, a token boundary inside a pair) goes out as a \uXXXX
    # escape, as LM Studio's JSON.stringify writes it.
    return f"data: {data}{end}{end}".encode("utf-8", "backslashreplace")


def cut_pieces(stream: bytes, how: str) -> list[bytes]:
    if how == "bytes":
        return [stream[i : i + 1] for i in range(len(stream))]
    if how == "all":
        return [stream]
    if how == "odd":
        return [stream[i : i + 7] for i in range(0, len(stream), 7)]
    raise ValueError(how)


class FakeLMStudio:
    def __init__(self, record: bool = True) -> None:
        self.record = record
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self.requests: list[dict] = []  # recorded only with ``record``
        self.headers: list[dict[str, str]] = []
        self.closed_early = 0  # connections the client closed before the reply ended
        self.held = 0  # replies that reached their hold point
        self.replying = 0  # completions received and neither answered nor closed yet
        self.on_request = None  # called with each chat completion body as it arrives
        self.models = [MODEL]
        # Another server's ways: "llama.cpp" answers /props and /tokenize, and unknown routes
        # with 404 (LM Studio: /api/v0/models, and 200 with an error for unknown routes).
        self.flavor = "lmstudio"
        self.context_length: int | None = None  # LM Studio: each model loaded with it; llama.cpp: n_ctx
        self.models_hold: asyncio.Event | None = None  # GET /v1/models waits for it: a slow upstream
        self.tokenized: list[str] = []  # the texts POST /tokenize was given
        self._changed = asyncio.Event()

    def changed(self) -> None:
        """Wake every waiter to look again; later waiters wait on a fresh event."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_requests(self, count: int = 1, timeout: float = 5) -> list[dict]:
        """Until at least ``count`` chat completions were received; returns their bodies."""
        await self._until(lambda: len(self.requests) >= count, f"{count} request(s)", timeout)
        return self.requests

    async def wait_held(self, count: int = 1, timeout: float = 5) -> None:
        """Until at least ``count`` replies reached their hold point (``Reply.hold``)."""
        await self._until(lambda: self.held >= count, f"{count} reply(ies) at the hold point", timeout)

    async def wait_closed(self, count: int = 1, timeout: float = 5) -> int:
        """Until the client closed at least ``count`` connections before their reply ended;
        returns how many it closed, for the caller to check there were no more."""
        await self._until(lambda: self.closed_early >= count, f"{count} connection(s) closed early", timeout)
        return self.closed_early

    async def wait_idle(self, timeout: float = 5) -> None:
        """Until every chat completion received was answered in full or closed by the client."""
        await self._until(lambda: self.replying == 0, "every reply to end", timeout)

    async def _until(self, ready, what: str, timeout: float) -> None:
        async def settle() -> None:
            while not ready():
                await self._changed.wait()

        try:
            await asyncio.wait_for(settle(), timeout)
        except TimeoutError:
            seen = f"{len(self.requests)} requests, {self.held} held, {self.closed_early} closed early, {self.replying} replying"
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; the fake saw {seen}") from None

    def next_reply(self) -> Reply:
        return self.script.popleft() if self.script else self.default

    def app(self) -> Application:
        return Application(
            [
                (r"/v1/models", ModelsHandler, {"fake": self}),
                (r"/v1/chat/completions", CompletionsHandler, {"fake": self}),
                (r"/api/v0/models", LMStudioModelsHandler, {"fake": self}),
                (r"/(props|tokenize)", LlamaHandler, {"fake": self}),
                (r"/.*", UnknownRouteHandler, {"fake": self}),
            ]
        )


class ModelsHandler(RequestHandler):
    def initialize(self, fake: FakeLMStudio) -> None:
        self.fake = fake

    async def get(self) -> None:
        if self.fake.models_hold is not None:
            await self.fake.models_hold.wait()
        self.fake.headers.append(dict(self.request.headers))
        self.write({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "organization_owner"} for m in self.fake.models]})


class UnknownRouteHandler(RequestHandler):
    """LM Studio answers unknown routes with 200 and a plain-string error; llama.cpp (and any
    other ``flavor``, as vLLM does) with 404."""

    def initialize(self, fake: FakeLMStudio) -> None:
        self.fake = fake

    def prepare(self) -> None:
        if self.fake.flavor != "lmstudio":
            self.set_status(404)
            self.finish({"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})
            return
        self.finish({"error": f"Unexpected endpoint or method. ({self.request.method} {self.request.path})"})


class LMStudioModelsHandler(UnknownRouteHandler):
    """LM Studio's own model list: each model's state, and the context it was loaded with."""

    def prepare(self) -> None:
        if self.fake.flavor != "lmstudio":
            super().prepare()

    def get(self) -> None:
        loaded = self.fake.context_length
        entries = [
            {"id": model, "object": "model", "type": "llm", "state": "loaded" if loaded else "not-loaded", "max_context_length": 131072}
            | ({"loaded_context_length": loaded} if loaded else {})
            for model in self.fake.models
        ]
        self.finish({"object": "list", "data": entries})


class LlamaHandler(UnknownRouteHandler):
    """llama.cpp's /props (the context it serves with) and /tokenize (a token per word here)."""

    def prepare(self) -> None:
        if self.fake.flavor != "llama.cpp":
            super().prepare()

    def get(self, route: str) -> None:
        if route != "props":
            raise HTTPError(405)
        settings = {"n_ctx": self.fake.context_length or 4096, "params": {"temperature": 0.8}}
        self.finish({"default_generation_settings": settings, "total_slots": 1, "model_path": f"/models/{self.fake.models[0]}.gguf"})

    def post(self, route: str) -> None:
        if route != "tokenize":
            raise HTTPError(405)
        content = json.loads(self.request.body)["content"]
        self.fake.tokenized.append(content)
        self.finish({"tokens": list(range(len(content.split())))})


class CompletionsHandler(RequestHandler):
    def initialize(self, fake: FakeLMStudio) -> None:
        self.fake = fake
        self.done = False
        self.replying = False  # counted in ``fake.replying``

    def on_connection_close(self) -> None:
        if not self.done:
            self.fake.closed_early += 1
            self._end()

    def _end(self) -> None:
        """Answered or abandoned, whichever comes first: a held reply never finishes once closed."""
        if self.replying:
            self.replying = False
            self.fake.replying -= 1
        self.fake.changed()

    async def post(self) -> None:
        try:
            body = json.loads(self.request.body)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            # LM Studio's answer to a body it cannot read.
            self.set_status(400)
            self.finish({"error": {"message": "Invalid JSON body", "type": "invalid_request_error", "param": None, "code": None}})
            return
        self.replying = True
        self.fake.replying += 1
        if self.fake.record:
            self.fake.requests.append(body)
            self.fake.headers.append(dict(self.request.headers))
        if self.fake.on_request is not None:
            self.fake.on_request(body)
        self.fake.changed()
        reply = reply_for_model(body.get("model")) or self.fake.next_reply()
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            reply = dataclasses.replace(reply, usage=True)  # as LM Studio does when asked
        try:
            if reply.head_hold is not None:
                await reply.head_hold.wait()
            if reply.status >= 400:
                self.set_status(reply.status)
                if isinstance(reply.error_body, bytes):
                    self.set_header("Content-Type", "text/html")
                self.finish(reply.error_body or {"error": {"message": reply.error or NO_MODELS, "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})
            elif not body.get("stream"):
                self.finish(self._completion(reply))
            else:
                await self._stream(reply)
        except StreamClosedError:
            pass
        finally:
            self.done = True
            self._end()

    def _completion(self, reply: Reply) -> dict:
        return {
            "id": "chatcmpl-fake123",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(reply.tokens)}, "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": len(reply.tokens), "total_tokens": 5 + len(reply.tokens)},
        }

    async def _send(self, reply: Reply, data: bytes) -> None:
        if reply.cut == "events":
            self.write(data)
            await self.flush()
            return
        for piece in cut_pieces(data, reply.cut):
            self.write(piece)
            await self.flush()

    async def _stream(self, reply: Reply) -> None:
        self.set_header("Content-Type", reply.content_type)
        self.set_header("Cache-Control", "no-cache")
        await self.flush()
        created = int(time.time())
        first = True
        if reply.first_delay:
            await asyncio.sleep(reply.first_delay)
        deltas = [{reply.reasoning_field: text} for text in reply.reasoning]
        deltas += [{"content": text} for text in reply.tokens]
        pending = bytearray()
        for number, delta in enumerate(deltas):
            if reply.hold is not None and number == reply.hold_at:
                self.fake.held += 1
                self.fake.changed()
                await reply.hold.wait()
            if reply.drop_after is not None and number == reply.drop_after:
                self.request.connection.stream.close()
                return
            if first:
                delta = {"role": "assistant", **delta}
                first = False
            if reply.stamp:
                delta["content"] = repr(time.monotonic())
            data = (b": ping\n\n" if reply.comments else b"") + event_bytes(chunk(delta, created=created), reply.crlf)
            if reply.cut == "all":
                pending += data
                continue
            await self._send(reply, data)
            if reply.garbage is not None:
                await self._send(reply, reply.garbage)
                return
            if reply.stream_error is not None:
                await self._send(reply, event_bytes({"error": {"message": reply.stream_error, "type": "server_error"}}))
                return
            if reply.interval:
                await asyncio.sleep(reply.interval)
        last = chunk({}, "stop", created) | ({"timings": reply.timings} if reply.timings else {})
        tail = event_bytes(last, reply.crlf)
        if reply.usage:
            usage = {"id": "chatcmpl-fake123", "object": "chat.completion.chunk", "created": created, "model": MODEL, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": len(deltas), "total_tokens": 5 + len(deltas)}}
            tail += event_bytes(usage, reply.crlf)
        tail += event_bytes("[DONE]", reply.crlf)
        await self._send(reply, bytes(pending) + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake LM Studio for benchmarks.")
    parser.add_argument("--port", type=int, default=1234)
    parser.add_argument("--models", help="the model ids GET /v1/models lists, comma-separated")
    args = parser.parse_args()

    async def run() -> None:
        fake = FakeLMStudio(record=False)
        if args.models:
            fake.models = args.models.split(",")
        fake.app().listen(args.port, "127.0.0.1", backlog=2048)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
