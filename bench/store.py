"""Storage benchmark: listing, reading and growing chats through a running chatproxy.

    python -m bench.store            # 1,000 and 10,000 chats, a 2,000-message chat, listing under load
    python -m bench.store --quick    # smaller counts, for a smoke run

The "direct" column is what the work costs without chatproxy's index: reading and parsing
every chat file in the folder (the original server's listing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from bench.common import chatproxy, create_chats, fake_upstream, http_call, http_stream, percentile, table, turn_body
from store import chatfile

AN_HOUR_AGO = time.time() - 3600


def write_chats(folder: Path, count: int, messages: int, prefix: str = "chat", model: str = "bench:tokens=1") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        chat = chatfile.new_chat(model, 0.7, -1)
        chat["messages"] = [
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "lorem ipsum " * 20}
            for i in range(messages)
        ]
        (folder / f"{prefix}-{number:05}.json").write_bytes(chatfile.encode(chat))
    # A folder that has not changed in the last moments, as most folders most of the time.
    os.utime(folder, (AN_HOUR_AGO, AN_HOUR_AGO))


def read_every_file(folder: Path) -> float:
    started = time.perf_counter()
    for path in folder.glob("*.json"):
        json.loads(path.read_bytes())
    return time.perf_counter() - started


async def timed_gets(port: int, path: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        status, elapsed, _ = await http_call(port, "GET", path)
        assert status == 200, status
        times.append(elapsed)
    return times


async def listing_rows(upstream_port: int, count: int, warm_calls: int) -> list[tuple]:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as scratch:
        folder = Path(scratch) / "chats"
        write_chats(folder, count, 20)
        naive = read_every_file(folder)
        with chatproxy(upstream_port, str(folder)) as (port, _):
            status, cold, body = await http_call(port, "GET", "/chats")
            assert status == 200 and body.count(b'"id"') == count
            warm = await timed_gets(port, "/chats", warm_calls)
            one = await timed_gets(port, "/chat?name=chat-00000", warm_calls)
    return [
        (f"GET /chats, {count:,} chats: cold (ms)", f"{naive * 1e3:.0f}", f"{cold * 1e3:.0f}", "direct = read every file"),
        (f"GET /chats, {count:,} chats: warm p50 (ms)", f"{naive * 1e3:.0f}", f"{percentile(warm, 0.5) * 1e3:.2f}", f"p99 {percentile(warm, 0.99) * 1e3:.2f} ms"),
        (f"GET /chat, one of {count:,} (ms)", "", f"{percentile(one, 0.5) * 1e3:.2f}", "p50"),
    ]


async def turn_cost_rows(upstream_port: int, sizes: list[int], turns: int) -> list[tuple]:
    """The time of a whole one-token turn as the chat grows (two appends: question, reply)."""
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as scratch:
        folder = Path(scratch) / "chats"
        for size in sizes:
            write_chats(folder, 1, size, prefix=f"size{size}")
        costs = {}
        with chatproxy(upstream_port, str(folder)) as (port, _):
            await http_stream(port, "PUT", "/chat", turn_body(f"size{sizes[0]}-00000"))  # warm-up, not counted
            for size in sizes:
                times = []
                for _ in range(turns):
                    result = await http_stream(port, "PUT", "/chat", turn_body(f"size{size}-00000"))
                    assert result.done
                    times.append(result.last_event_at - result.sent_at)
                costs[size] = percentile(times, 0.5) * 1e3
    empty = costs[sizes[0]]
    return [
        (f"PUT /chat turn on a {size:,}-message chat, p50 (ms)", f"{empty:.2f} (empty chat)", f"{costs[size]:.2f}", f"+{costs[size] - empty:.2f} ms per turn")
        for size in sizes[1:]
    ]


async def listing_under_load_rows(upstream_port: int, chats: int, streams: int) -> list[tuple]:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as scratch:
        folder = Path(scratch) / "chats"
        write_chats(folder, chats, 20)
        with chatproxy(upstream_port, str(folder)) as (port, _):
            names = [f"load-{i}" for i in range(streams)]
            await create_chats(port, names, "bench:tokens=50:interval=0.1")
            await http_call(port, "GET", "/chats")
            running = [asyncio.ensure_future(http_stream(port, "PUT", "/chat", turn_body(n))) for n in names]
            times = []
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline and len(times) < 2000:
                times.append((await http_call(port, "GET", "/chats"))[1])
            results = await asyncio.gather(*running)
            assert all(r.done for r in results)
    return [(f"GET /chats ({chats:,} chats) while {streams} streams run (ms)", "", f"p50 {percentile(times, 0.5) * 1e3:.2f}", f"p99 {percentile(times, 0.99) * 1e3:.2f} ms")]


async def run(args) -> None:
    rows = []
    with fake_upstream() as upstream_port:
        for count in args.counts:
            rows += await listing_rows(upstream_port, count, args.warm_calls)
        rows += await turn_cost_rows(upstream_port, [0, *args.sizes], args.turns)
        rows += await listing_under_load_rows(upstream_port, args.counts[0], args.streams)
    print(table("chatproxy storage benchmark", rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts for a smoke run")
    args = parser.parse_args()
    args.counts, args.warm_calls, args.sizes, args.turns, args.streams = (
        ([200, 1000], 20, [100, 500], 10, 20) if args.quick else ([1000, 10000], 100, [500, 1000, 2000], 30, 100)
    )
    started = time.monotonic()
    asyncio.run(run(args))
    print(f"(took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
