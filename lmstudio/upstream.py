"""One upstream server: who it is, how busy and how healthy, and what it offers.

An Upstream knows its name and URL (and the sentence that names it in errors), its API
key, how many requests it has open, its circuit breaker, and its Catalog: the last good
model list and context lengths, refreshed by ``refresh()`` (Upstreams schedules it).
"""

from __future__ import annotations

import asyncio
import logging
import time

from tornado.httpclient import AsyncHTTPClient

import jsonbytes

from . import catalog
from .catalog import Catalog, NotThisKind
from .client import Attempt
from .errors import UpstreamError, http_error

log = logging.getLogger("chatproxy.upstream")

ANSWER_LIMIT = 4 * 1024 * 1024  # a model list, props, a token list
JSON_HEADERS = {"Content-Type": "application/json"}


class Breaker:
    """A circuit breaker: after ``FAILURES`` failures in a row the upstream is skipped for a
    cooldown (doubling on each failed trial, up to ``MAX_COOLDOWN``); then one request at a
    time tries it again, and a success closes the circuit. An upstream that could not be
    reached and then answers another request (its model list) is closed again at once; one
    whose failures were its own error answers is not (its list may work, its replies not)."""

    FAILURES = 3
    COOLDOWN = 5.0
    MAX_COOLDOWN = 60.0

    def __init__(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.cooldown = self.COOLDOWN
        self.trial = False  # a request is trying the upstream again
        self.answered = False  # the last failure was an error answer, not an upstream out of reach

    def state(self, now: float) -> str:
        if self.failures < self.FAILURES:
            return "closed"
        return "open" if now < self.open_until or self.trial else "half-open"

    def success(self) -> None:
        self.failures = 0
        self.cooldown = self.COOLDOWN
        self.trial = False

    def reached(self) -> None:
        if not self.answered:
            self.success()

    def failure(self, now: float, answered: bool = False) -> None:
        self.failures += 1
        self.answered = answered
        if self.failures >= self.FAILURES:
            if self.trial:
                self.cooldown = min(self.cooldown * 2, self.MAX_COOLDOWN)
            self.open_until = now + self.cooldown
        self.trial = False


class Upstream:
    def __init__(
        self,
        name: str,
        base_url: str,
        client: AsyncHTTPClient,
        connect_timeout: float,
        idle_timeout: float,
        api_key: str | None = None,
        context_length: int | None = None,
        who: str | None = None,
    ) -> None:
        """``who`` is how errors name it when not by its name (the one-upstream shorthand:
        "LM Studio"); such an upstream's name is not recorded on replies either."""
        self.name = name
        self.base_url = base_url
        self.client = client
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.auth = f"Bearer {api_key}" if api_key else None  # never logged, never shown
        self.context_length = context_length  # from the config: for models the server says nothing about
        self.who = who or f'Upstream "{name}"'
        self.named = who is None  # named in the config, not the shorthand
        self.open_requests = 0
        self.breaker = Breaker()
        self.catalog = Catalog()
        self.refreshing: asyncio.Task | None = None
        self.refresh_began = 0.0  # the loop's time

    def open(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Attempt:
        return Attempt(self, method, path, body, headers or {})

    @property
    def state(self) -> str:
        """"up", "down" or "unknown" (never asked yet)."""
        if self.breaker.state(time.monotonic()) == "open":
            return "down"
        if self.catalog.error is not None:
            return "down"
        return "up" if self.catalog.fetched_at is not None else "unknown"

    def context_length_of(self, model: str) -> int | None:
        return self.catalog.context_lengths.get(model) or self.context_length

    # -- asking it -------------------------------------------------------------------------

    async def fetch(self, method: str, path: str, payload: object = None) -> tuple[int, bytes]:
        body = None if payload is None else jsonbytes.dumps(payload)  # /tokenize: the whole chat's text
        attempt = self.open(method, path, body, JSON_HEADERS if body is not None else {})
        try:
            status, _ = await attempt.head()
            return status, await attempt.read_body(ANSWER_LIMIT)
        except asyncio.CancelledError:
            attempt.abort(UpstreamError(504, f"{self.who} at {self.base_url} answered too late", "timeout"))
            raise

    async def ask(self, method: str, path: str, parse, payload: object = None):
        """``parse`` of the answer to a request, or NotThisKind (the server has no such route)."""
        status, body = await self.fetch(method, path, payload)
        if status in (404, 405, 501):
            raise NotThisKind(f"answered {status}")
        if status != 200:
            raise http_error(self.who, status, body)
        return parse(body)

    async def count_tokens(self, text: str) -> int:
        return await self.ask("POST", "/tokenize", catalog.parse_token_count, {"content": text})

    async def refresh(self) -> None:
        """Ask for the model list (and, as the server allows, the context lengths); on
        failure the last good list stays and ``catalog.error`` says why."""
        found = self.catalog
        try:
            try:
                models, lengths = await self.ask("GET", "/v1/models", catalog.parse_model_list)
            except NotThisKind as error:
                raise UpstreamError(502, f"{self.who}'s model list is not what OpenAI's API describes ({error})", "bad_answer") from None
            kind = found.kind
            if kind in (None, catalog.LMSTUDIO):
                kind, lengths = await self._try(catalog.LMSTUDIO, "/api/v0/models", catalog.parse_lmstudio_models, kind, lengths)
            if kind in (None, catalog.LLAMA_CPP):
                kind, served = await self._try(catalog.LLAMA_CPP, "/props", catalog.parse_llama_props, kind, None)
                if kind == catalog.LLAMA_CPP:
                    lengths = {**{model: served for model in models}, **lengths}
        except UpstreamError as error:
            self.failed(error.message)
            return
        found.models, found.context_lengths = models, lengths
        found.kind = kind or catalog.OPENAI
        found.fetched_at = asyncio.get_running_loop().time()
        found.error = None
        self.breaker.reached()

    async def _try(self, kind: str, path: str, parse, known: str | None, fallback):
        try:
            return kind, await self.ask("GET", path, parse)
        except NotThisKind:
            if known == kind:
                raise UpstreamError(502, f"{self.who} no longer answers {path}", "bad_answer") from None
            return None, fallback

    def failed(self, reason: str) -> None:
        if self.catalog.error != reason:
            log.warning("%s: model list not refreshed: %s", self.name, reason)
        self.catalog.error = reason
        self.breaker.failure(time.monotonic())
