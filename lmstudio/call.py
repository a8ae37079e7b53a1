"""UpstreamCall: one request as its caller sees it, tried on each chosen upstream in turn
until one answers with its head.

Failover happens only before the head, so never after anything reached the client: a
connection refused, a connect or idle timeout, a connection closed before answering, or a
5xx status while another upstream is left to try. Once an upstream has answered with its
head, the call is that upstream's to the end; a failure mid-stream is the caller's to
report. Each failure before the head counts against that upstream's circuit breaker, an
answer below 500 for it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from tornado.httputil import HTTPHeaders

from .client import Attempt
from .errors import UpstreamError, error_message_from_body, http_error
from .upstream import Upstream


@dataclass(frozen=True, slots=True)
class Target:
    """An upstream to try, and the body to send it (the model's id as that upstream knows it)."""

    upstream: Upstream
    body: bytes | None


class UpstreamCall:
    """Started at construction. ``await head()``, then ``attach(consumer)`` and
    ``finished()``, or ``read_body()``; ``abort(reason)`` at any moment (then ``head()`` or
    ``finished()`` raises ``reason``). After the head: ``upstream`` answered, ``failed_over``
    lists the upstreams tried before it and why they failed."""

    def __init__(self, targets: list[Target] | Awaitable[list[Target]], method: str, path: str, headers: dict) -> None:
        self._method, self._path, self._headers = method, path, headers
        self._loop = asyncio.get_running_loop()
        self._head: asyncio.Future[tuple[int, HTTPHeaders]] = self._loop.create_future()
        self.started_at = self._loop.time()
        self.failures: list[tuple[Upstream, UpstreamError]] = []
        self.upstream: Upstream | None = None
        self._attempt: Attempt | None = None
        self._abort_reason: BaseException | None = None
        self._targets: list[Target] = []
        self._next_target = 0
        self._planning: asyncio.Future[list[Target]] | None = None
        if isinstance(targets, list):
            self._start(targets)
        else:  # the model lists are being fetched: routing waits for them
            self._planning = asyncio.ensure_future(targets)
            self._planning.add_done_callback(self._planned)

    # -- the caller's side -----------------------------------------------------------------

    async def head(self) -> tuple[int, HTTPHeaders]:
        return await self._head

    @property
    def who(self) -> str:
        """How messages name the upstream that answered (or was tried last)."""
        return self.upstream.who if self.upstream is not None else "The upstream"

    @property
    def failed_over(self) -> list[dict]:
        """The upstreams tried before the one that answered: [{"upstream", "error"}]."""
        return [{"upstream": upstream.name, "error": error.message} for upstream, error in self.failures]

    @property
    def head_at(self) -> float:
        return self._attempt.head_at if self._attempt is not None else self.started_at

    async def attach(self, consumer: Callable[[bytes], Awaitable[None] | None]) -> None:
        await self._answered().attach(consumer)

    async def finished(self) -> None:
        await self._answered().finished()

    async def read_body(self, limit: int | None = None) -> bytes:
        attempt = self._answered()
        return await (attempt.read_body() if limit is None else attempt.read_body(limit))

    def touch(self) -> None:
        self._answered().touch()

    def abort(self, reason: BaseException) -> None:
        if self._abort_reason is None:
            self._abort_reason = reason
        if self._attempt is not None:
            self._attempt.abort(reason)  # before the head: _on_head sees the reason
        elif self._planning is not None:
            self._planning.cancel()

    async def refusal(self, status: int, headers: HTTPHeaders) -> UpstreamError:
        """The error for a head that is not the 200 event stream asked for, with the
        upstream's own sentence, type and figures (read from its body)."""
        body = await self.read_body()
        if status == 200:  # LM Studio answers unknown routes with 200 and an error body
            content_type = headers.get("Content-Type") or "no content type"
            detail = error_message_from_body(body)
            return UpstreamError(502, f"{self.who} did not answer with an event stream ({content_type}): {detail}", "not_a_stream")
        return http_error(self.who, status, body, status if status >= 400 else 502)

    # -- trying each target ----------------------------------------------------------------

    def _answered(self) -> Attempt:
        if self._attempt is None or not self._head.done():
            raise RuntimeError("the upstream has not answered yet: await head() first")
        return self._attempt

    def _planned(self, planning: asyncio.Future) -> None:
        if planning.cancelled() or self._abort_reason is not None:
            self._fail(self._abort_reason or UpstreamError(503, "The request was ended before it was sent", "aborted"))
        elif planning.exception() is not None:
            self._fail(planning.exception())
        else:
            self._start(planning.result())

    def _start(self, targets: list[Target]) -> None:
        self._targets = targets
        self._try_next()

    def _try_next(self) -> None:
        target = self._targets[self._next_target]
        self._next_target += 1
        breaker = target.upstream.breaker
        if breaker.state(time.monotonic()) == "half-open":
            breaker.trial = True
        self.upstream = target.upstream
        self._attempt = target.upstream.open(self._method, self._path, target.body, self._headers)
        self._attempt.on_head(self._on_head)

    def _on_head(self, attempt: Attempt, future: asyncio.Future) -> None:
        if attempt is not self._attempt or self._head.done():
            return
        breaker = attempt.upstream.breaker
        if self._abort_reason is not None:
            breaker.trial = False  # it never answered: the next request may try it again
            self._fail(self._abort_reason)
            return
        error = future.exception()
        if error is not None:
            breaker.failure(time.monotonic())
            self._failed_before_head(attempt.upstream, error)
            return
        status, headers = future.result()
        if status < 500:
            breaker.success()
        else:
            breaker.failure(time.monotonic(), answered=True)
            if self._next_target < len(self._targets):
                asyncio.ensure_future(self._fail_over_from(attempt, status))
                return
        self._head.set_result((status, headers))

    async def _fail_over_from(self, attempt: Attempt, status: int) -> None:
        """Read the 5xx answer's sentence for the record, then try the next upstream."""
        try:
            body = await attempt.read_body()
        except Exception:  # the call was aborted meanwhile: its reason is what the caller gets
            body = b""
        if self._abort_reason is not None:
            self._fail(self._abort_reason)
            return
        self._failed_before_head(attempt.upstream, http_error(attempt.upstream.who, status, body))

    def _failed_before_head(self, upstream: Upstream, error: BaseException) -> None:
        if not isinstance(error, UpstreamError):
            error = UpstreamError(502, f"{upstream.who} failed: {error}", "upstream")
        self.failures.append((upstream, error))
        if self._next_target < len(self._targets):
            self._try_next()
            return
        if len(self.failures) == 1:
            self._fail(error)
            return
        status = 504 if all(failure.status == 504 for _, failure in self.failures) else 502
        reasons = "; ".join(failure.message for _, failure in self.failures)
        self._fail(UpstreamError(status, f"No upstream could answer: {reasons}", "unreachable"))

    def _fail(self, error: BaseException) -> None:
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # retrieved here: a caller that never asks is no bug
