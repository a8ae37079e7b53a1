"""Upstreams: every configured upstream as one, the only object handlers and turns ask.

- Routing: a request goes to an upstream that offers its model (``NAME/MODEL`` names one
  upstream's model); among several, the healthy one with the fewest open requests first,
  and the others after it for failover (call.py). An upstream whose circuit is open is
  skipped while another is left; after its cooldown one request tries it again. With one
  upstream every request goes to it, whatever its model (LM Studio loads models on demand).
- Model lists: each upstream's is cached (upstream.py) and refreshed in the background
  every ``REFRESH_INTERVAL`` seconds and when a caller finds it older than ``FRESH_FOR``;
  a caller waits for a refresh until ``REFRESH_WAIT`` seconds after it began, and never
  for an upstream whose last refresh failed: an upstream slower than that keeps its last
  good list, marked stale, and one sleeping backend does not delay every request.
- Context lengths and token counts for the prompt fitting of prompt.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Iterator, Sequence

import jsonbytes

from . import catalog, prompt
from .call import Target, UpstreamCall
from .catalog import NotThisKind
from .errors import UpstreamError
from .http import UpstreamHTTPClient
from .upstream import Upstream

SHORTHAND_NAME = "lmstudio"  # the one upstream of upstream.url / --lm-studio-url / LM_STUDIO_URL
COMPLETIONS_PATH = "/v1/chat/completions"
CHAT_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}
REFRESH_WAIT = 2.0
REFRESH_TIMEOUT = 10.0  # a refresh running in the background gives up after this
FRESH_FOR = 5.0
REFRESH_INTERVAL = 30.0
TOKENIZE_TIMEOUT = 2.0


class Upstreams:
    def __init__(self, members: Sequence[Upstream], client: UpstreamHTTPClient) -> None:
        self.members = list(members)
        self._by_name = {upstream.name: upstream for upstream in self.members}
        self._client = client
        self._refreshing_forever: asyncio.Task | None = None

    @classmethod
    def build(cls, settings: Sequence, shorthand_url: str, connect_timeout: float, idle_timeout: float, max_requests: int) -> "Upstreams":
        """From config.py's UpstreamSettings; none: one LM Studio at ``shorthand_url``."""
        client = UpstreamHTTPClient(force_instance=True, max_clients=max_requests)
        timeouts = {"client": client, "connect_timeout": connect_timeout, "idle_timeout": idle_timeout}
        if not settings:
            return cls([Upstream(SHORTHAND_NAME, shorthand_url, who="LM Studio", **timeouts)], client)
        return cls([Upstream(s.name, s.url, api_key=s.api_key, context_length=s.context_length, **timeouts) for s in settings], client)

    def __iter__(self) -> Iterator[Upstream]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def start(self) -> None:
        """Refresh every upstream's model list now and every REFRESH_INTERVAL seconds."""
        self._refreshing_forever = asyncio.ensure_future(self._refresh_forever())

    def close(self) -> None:
        for task in [self._refreshing_forever] + [upstream.refreshing for upstream in self.members]:
            if task is not None:
                task.cancel()
        self._client.close()

    # -- calls -----------------------------------------------------------------------------

    def open_chat(self, model: str | None, body: dict, headers: dict | None = None) -> UpstreamCall:
        """POST /v1/chat/completions with ``body`` (its "model" set as the chosen upstream
        knows it) to an upstream offering ``model``, failing over until one answers with its
        head. A model no upstream offers: the head raises UpstreamError 404."""

        def encode(model_id: str | None) -> bytes:
            return jsonbytes.dumps({**body, "model": model_id} if model_id != body.get("model") else body)

        return UpstreamCall(self._targets(model, encode), "POST", COMPLETIONS_PATH, headers or CHAT_HEADERS)

    def open(self, method: str, path: str, body: bytes | None, headers: dict) -> UpstreamCall:
        """The /v1 pass-through: routed by the body's "model" when it has one, sent as it came
        unless the model was named ``NAME/MODEL``."""
        parsed = None
        if body and (len(self.members) > 1 or self._names_an_upstream(body)):
            try:
                parsed = jsonbytes.loads(body)
            except (ValueError, RecursionError):
                pass
        model = parsed.get("model") if isinstance(parsed, dict) and isinstance(parsed.get("model"), str) else None

        def encode(model_id: str | None) -> bytes | None:
            return body if model_id == model else jsonbytes.dumps({**parsed, "model": model_id})

        return UpstreamCall(self._targets(model, encode), method, path, headers)

    def _names_an_upstream(self, body: bytes) -> bool:
        return any(f'"{upstream.name}/'.encode() in body for upstream in self.members)

    def _targets(self, model: str | None, encode) -> list[Target] | asyncio.Future:
        if len(self.members) > 1:  # routing by model needs the model lists
            if any(self._never_asked(upstream) for upstream in self.members):
                return asyncio.ensure_future(self._targets_when_known(model, encode))
            self._refresh_in_background()
        try:
            return self._route(model, encode)
        except UpstreamError as error:
            failed: asyncio.Future = asyncio.get_running_loop().create_future()
            failed.set_exception(error)
            return failed

    async def _targets_when_known(self, model: str | None, encode) -> list[Target]:
        await self.refreshed()  # at most REFRESH_WAIT: a slow upstream is routed around
        return self._route(model, encode)

    def _route(self, model: str | None, encode) -> list[Target]:
        encoded: dict[str | None, bytes | None] = {}
        targets = []
        for upstream, model_id in self.choose(model):
            if model_id not in encoded:
                encoded[model_id] = encode(model_id)
            targets.append(Target(upstream, encoded[model_id]))
        return targets

    # -- routing ---------------------------------------------------------------------------

    def choose(self, model: str | None) -> list[tuple[Upstream, str | None]]:
        """The upstreams to try for ``model``, best first, each with the model's id there."""
        if len(self.members) == 1:
            only = self.members[0]
            if model is not None and model.startswith(only.name + "/") and model not in only.catalog.models:
                model = model[len(only.name) + 1 :] or model
            return [(only, model)]
        offering = self._offering(model)
        if not offering:
            unknown = [upstream.name for upstream in self.members if upstream.catalog.fetched_at is None]
            hint = f" (the models of {', '.join(unknown)} are not known: not reachable)" if unknown else ""
            raise UpstreamError(404, f"No upstream offers the model '{model}'{hint}; GET /v1/models lists them", "unknown_model")
        return _best_first(offering)

    def _offering(self, model: str | None) -> list[tuple[Upstream, str | None]]:
        if model is None:
            return [(upstream, None) for upstream in self.members]
        name, slash, rest = model.partition("/")
        named = self._by_name.get(name) if slash and rest else None
        offered = [(upstream, model) for upstream in self.members if model in upstream.catalog.models]
        if named is not None and (rest in named.catalog.models or not offered):
            return [(named, rest)]
        if offered:
            return offered
        # Nobody's list has it: an upstream whose list was never fetched may.
        return [(upstream, model) for upstream in self.members if upstream.catalog.fetched_at is None]

    # -- model lists -----------------------------------------------------------------------

    async def refreshed(self, max_age: float = FRESH_FOR) -> None:
        """Refresh the lists older than ``max_age`` seconds; wait for each until REFRESH_WAIT
        seconds after its refresh began, and not at all for one whose last refresh failed."""
        now = asyncio.get_running_loop().time()
        waited = [upstream for upstream in self._refresh_in_background(max_age) if upstream.catalog.error is None]
        deadline = max((upstream.refresh_began + REFRESH_WAIT for upstream in waited), default=now)
        if deadline > now:
            await asyncio.wait([upstream.refreshing for upstream in waited], timeout=deadline - now)

    async def checked(self, timeout: float) -> None:
        """Ask every upstream afresh and wait for the answers, ``timeout`` seconds at most
        (/health and the start-up report: what is true now, not the last answer)."""
        refreshing = self._refresh_in_background(max_age=0)
        if refreshing:
            await asyncio.wait([upstream.refreshing for upstream in refreshing], timeout=timeout)

    def _refresh_in_background(self, max_age: float = FRESH_FOR) -> list[Upstream]:
        """Start a refresh of each list older than ``max_age`` seconds (or failed) that is not
        being refreshed already; the upstreams whose lists are being refreshed."""
        now = asyncio.get_running_loop().time()
        refreshing = []
        for upstream in self.members:
            found = upstream.catalog
            if found.fetched_at is not None and found.error is None and now - found.fetched_at <= max_age:
                continue
            if upstream.refreshing is None or upstream.refreshing.done():
                upstream.refreshing = asyncio.ensure_future(self._refresh(upstream))
                upstream.refresh_began = now
            refreshing.append(upstream)
        return refreshing

    async def _refresh(self, upstream: Upstream) -> None:
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT):  # no inner task: a cancel stops it at once
                await upstream.refresh()
        except TimeoutError:
            upstream.failed(f"{upstream.who} at {upstream.base_url} did not answer within {REFRESH_TIMEOUT:g} s")

    async def _refresh_forever(self) -> None:
        while True:
            await self.checked(REFRESH_TIMEOUT)
            await asyncio.sleep(REFRESH_INTERVAL)

    @staticmethod
    def _never_asked(upstream: Upstream) -> bool:
        return upstream.catalog.fetched_at is None and upstream.catalog.error is None

    def is_stale(self, upstream: Upstream) -> bool:
        """Its list is not the answer to the latest request for it (failed, or still coming)."""
        refreshing = upstream.refreshing is not None and not upstream.refreshing.done()
        return refreshing or upstream.catalog.error is not None or upstream.catalog.fetched_at is None

    async def model_list(self) -> dict:
        """GET /v1/models of several upstreams: each model once (with the upstreams offering
        it), then each upstream's as NAME/MODEL; entries of a stale list say ``"stale": true``."""
        await self.refreshed()
        merged: dict[str, dict] = {}
        named = []
        for upstream in self.members:
            stale = self.is_stale(upstream)
            for model_id, entry in upstream.catalog.models.items():
                plain = merged.setdefault(model_id, {**entry, "upstreams": [], "stale": True})
                plain["upstreams"].append(upstream.name)
                plain["stale"] = plain["stale"] and stale
                named.append({**entry, "id": f"{upstream.name}/{model_id}", "upstream": upstream.name, "stale": stale})
        data = list(merged.values()) + named
        for entry in data:
            if not entry["stale"]:
                del entry["stale"]
        return {"object": "list", "data": data, "upstreams": [self.describe(upstream) for upstream in self.members]}

    def describe(self, upstream: Upstream) -> dict:
        """One upstream's state, for /health and the model list."""
        found = upstream.catalog
        report = {
            "name": upstream.name,
            "url": upstream.base_url,
            "state": upstream.state,
            "kind": found.kind,
            "circuit": upstream.breaker.state(time.monotonic()),
            "open_requests": upstream.open_requests,
            "models": list(found.models),
            "context_lengths": found.context_lengths,
        }
        if self.is_stale(upstream):
            report["stale"] = True
        if found.error is not None:
            report["error"] = found.error
        return report

    # -- prompt sizes ----------------------------------------------------------------------

    async def context_length(self, model: str | None) -> int | None:
        """The context length ``model`` is served with (the smallest among the upstreams that
        may serve it), or None when no upstream says and the config sets none."""
        choices = await self._known_choices(model)
        lengths = [length for upstream, model_id in choices if (length := upstream.context_length_of(model_id))]
        return min(lengths) if lengths else None

    async def count_tokens(self, model: str | None, messages: list[dict]) -> list[int]:
        """Each message's size in tokens: counted by the upstream's own tokenizer where it has
        one (llama.cpp), else a conservative estimate (prompt.estimate_tokens)."""
        estimates = [prompt.estimate_tokens(message) for message in messages]
        choices = await self._known_choices(model)
        upstream = choices[0][0] if choices else None
        if upstream is None or upstream.catalog.kind != catalog.LLAMA_CPP:
            return estimates
        try:
            async with asyncio.timeout(TOKENIZE_TIMEOUT):
                counted = await upstream.count_tokens(prompt.joined_text(messages))
        except (UpstreamError, NotThisKind, TimeoutError):
            return estimates
        return prompt.apportion(messages, counted)

    async def _known_choices(self, model: str | None) -> list[tuple[Upstream, str | None]]:
        if any(self._never_asked(upstream) for upstream in self.members):
            await self.refreshed()
        try:
            return self.choose(model)
        except UpstreamError:
            return []


def _best_first(offering: list[tuple[Upstream, str | None]]) -> list[tuple[Upstream, str | None]]:
    """One upstream due to be tried again (half-open) first, then the closed ones, up ones
    before others and the least busy first; the open ones only when nothing else is left."""
    now = time.monotonic()
    states = {upstream.name: upstream.breaker.state(now) for upstream, _ in offering}
    trial = [choice for choice in offering if states[choice[0].name] == "half-open"][:1]
    closed = sorted(
        (choice for choice in offering if states[choice[0].name] == "closed"),
        key=lambda choice: (choice[0].state != "up", choice[0].open_requests),
    )
    return trial + closed or sorted(offering, key=lambda choice: choice[0].breaker.open_until)
