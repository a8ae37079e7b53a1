"""Streaming benchmark: chatproxy's PUT /chat against the fake LM Studio reached directly.

    python -m bench.streams            # all measures, PUT /chat and /v1 pass-through
    python -m bench.streams --quick    # smaller counts, for a smoke run

Measures PUT /chat (each reply stored) and the /v1/ pass-through (nothing stored). Prints
one table; "direct" is the fake upstream reached without chatproxy: the limit a proxy can
approach. Everything runs on 127.0.0.1; the processes are started and stopped
here.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.common import (
    chatproxy,
    completion_body,
    create_chats,
    fake_upstream,
    http_stream,
    percentile,
    process_memory,
    table,
    turn_body,
)
from tests.helpers import child_pids

COMPLETIONS = "/v1/chat/completions"


async def first_event_times(port: int, requests: list[tuple[str, str, dict]]) -> list[float]:
    times = []
    for method, path, body in requests:
        result = await http_stream(port, method, path, body)
        assert result.done and result.first_event_at, result
        times.append(result.first_event_at - result.sent_at)
    return times


async def long_reply_rate(port: int, method: str, path: str, body: dict, tokens: int) -> float:
    result = await http_stream(port, method, path, body, timeout=300)
    assert result.done and result.events >= tokens, (result.events, tokens)
    return result.events / (result.last_event_at - result.sent_at)


async def many_streams(port: int, requests: list[tuple[str, str, dict]], pid: int | None, ramp: float) -> dict:
    threads = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set() and pid:
            threads.append(process_memory(pid)["Threads"])
            try:
                await asyncio.wait_for(done.wait(), 0.2)
            except asyncio.TimeoutError:
                pass

    sampler = asyncio.ensure_future(sample())
    async def one(number: int, method: str, path: str, body: dict):
        # Streams open over ``ramp`` seconds, as browsers do, and then all run at once.
        await asyncio.sleep(ramp * number / len(requests))
        return await http_stream(port, method, path, body, stamps=True, timeout=120)

    results = await asyncio.gather(*(one(i, *request) for i, request in enumerate(requests)), return_exceptions=True)
    done.set()
    await sampler
    good = [r for r in results if not isinstance(r, BaseException) and r.done and r.status == 200]
    delays = [d for r in good for d in r.delays]
    figures = {"failed": len(results) - len(good), "p50": percentile(delays, 0.5), "p99": percentile(delays, 0.99), "events": len(delays)}
    if pid:
        figures.update(process_memory(pid), max_threads=max(threads or [0]))
        figures["worker_VmHWM"] = sum(process_memory(child)["VmHWM"] for child in child_pids(pid))
    return figures


class Route:
    """How to ask for a streamed reply: PUT /chat (stored turn) or the /v1/ pass-through."""

    def __init__(self, port: int, turn: bool) -> None:
        self.port, self.turn = port, turn

    async def requests(self, model: str, count: int, tag: str) -> list[tuple[str, str, dict]]:
        if not self.turn:
            return [("POST", COMPLETIONS, completion_body(model))] * count
        names = [f"{tag}-{i}" for i in range(count)]
        await create_chats(self.port, names, model)
        return [("PUT", "/chat", turn_body(name)) for name in names]


async def measure(route: Route, direct_port: int, proxy_pid: int, args, label: str) -> list[tuple]:
    one_token, long_model = "bench:tokens=1", f"bench:tokens={args.long_tokens}"
    many_model = f"bench:tokens={args.stream_tokens}:interval=0.1:stamp=1"
    direct_route = Route(direct_port, turn=False)
    rows = []

    # An upstream that answers at once, and one whose first token takes 20 ms (a small
    # model's prompt processing): behind that, the turn's durable write should vanish.
    for model, upstream in ((one_token, "answers at once"), (f"{one_token}:first=0.02", "first token after 20 ms")):
        direct = await first_event_times(direct_port, await direct_route.requests(model, args.first, ""))
        proxied = await first_event_times(route.port, await route.requests(model, args.first, f"first-{len(rows)}"))
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            d, p = percentile(direct, q) * 1e3, percentile(proxied, q) * 1e3
            rows.append((f"{label}: first event {name}, upstream {upstream} (ms)", f"{d:.2f}", f"{p:.2f}", f"+{p - d:.2f} ms"))

    [direct_long] = await direct_route.requests(long_model, 1, "")
    [proxy_long] = await route.requests(long_model, 1, "long")
    direct_rate = await long_reply_rate(direct_port, *direct_long, args.long_tokens)
    proxy_rate = await long_reply_rate(route.port, *proxy_long, args.long_tokens)
    rows.append((f"{label}: events/s, one {args.long_tokens}-token reply", f"{direct_rate:,.0f}", f"{proxy_rate:,.0f}", f"{proxy_rate / direct_rate:.2f} x direct"))

    n = args.streams
    direct_many = await many_streams(direct_port, await direct_route.requests(many_model, n, ""), None, args.ramp)
    requests = await route.requests(many_model, n, "many")
    base_memory = process_memory(proxy_pid)
    proxy_many = await many_streams(route.port, requests, proxy_pid, args.ramp)
    rows.append((f"{label}: {n} streams opened over {args.ramp:g} s: failed", str(direct_many["failed"]), str(proxy_many["failed"]), ""))
    for name in ("p50", "p99"):
        d, p = direct_many[name] * 1e3, proxy_many[name] * 1e3
        rows.append((f"{label}: {n} streams: delay per event {name} (ms)", f"{d:.2f}", f"{p:.2f}", f"+{p - d:.2f} ms added"))
    rows.append((f"{label}: {n} streams: server peak RSS (MB)", "", f"{proxy_many['VmHWM'] / 1024:.0f}", f"idle before: {base_memory['VmRSS'] / 1024:.0f} MB"))
    rows.append((f"{label}: {n} streams: server threads (max)", "", str(proxy_many["max_threads"]), "no thread per stream"))
    if proxy_many["worker_VmHWM"]:
        rows.append((f"{label}: {n} streams: store worker peak RSS (MB)", "", f"{proxy_many['worker_VmHWM'] / 1024:.0f}", "the file-writing process"))
    return rows


async def run(args) -> None:
    rows = []
    with fake_upstream() as upstream_port:
        for label, turn in (("PUT /chat", True), ("/v1 pass-through", False)):
            if args.only and args.only != ("turn" if turn else "v1"):
                continue
            # A fresh server for each, so one's peak memory does not count for the other.
            with chatproxy(upstream_port) as (proxy_port, proxy):
                rows += await measure(Route(proxy_port, turn), upstream_port, proxy.pid, args, label)
    print(table("chatproxy streaming benchmark (vs. the fake LM Studio reached directly)", rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts for a smoke run")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds over which the concurrent streams open (0: all at once)")
    parser.add_argument("--only", choices=("turn", "v1"), help="measure only PUT /chat or only the /v1 pass-through")
    args = parser.parse_args()
    args.first, args.long_tokens, args.streams, args.stream_tokens = (
        (30, 2000, 100, 10) if args.quick else (300, 20000, 1000, 50)
    )
    started = time.monotonic()
    asyncio.run(run(args))
    print(f"(took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
