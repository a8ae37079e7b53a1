"""PostgreSQL benchmark (issue 15): chatproxy instances on one database.

    python -m bench.postgres            # the full run (about half an hour here)
    python -m bench.postgres --quick    # smaller counts, for a smoke run

Everything runs on 127.0.0.1: a PostgreSQL of the benchmark's own (Debian's package, fsync
on, as a deployment keeps it), the fake LM Studio of the tests, chatproxy processes and the
benchmark's client, all on this machine's cores at once.

1. Turns per second on distinct chats with 1, 2 and 4 instances on one database (1-token
   replies, CONCURRENCY turns in flight; one instance on a folder beside), and the CPU each turn costs: user + system CPU
   (/proc) of the chatproxy processes, of PostgreSQL (the postmaster and its backends) and
   of the fake, read before and after, divided by the turns. On a machine this small the
   rate says how the three share two cores; the CPU per turn is what sizes a deployment.
   Beside them, the fake reached directly with the same requests and concurrency.
2. OPEN_STREAMS streams across 2 instances (50 events 0.2 s apart, opened over a second):
   the database connections in use (pg_stat_activity, every 0.25 s) against the pools'
   size, and the CPU per stream-second of chatproxy and of PostgreSQL.
3. 50,000 chats with 1,000,000 messages (written as a chats folder, then moved with
   ``chatproxy.py migrate``: its time; then VACUUM ANALYZE, what autovacuum does in time),
   and one chatproxy on them: GET /chats p50, GET /chat of a 2,000-message chat p50, search
   p50 / p99 for a rare word, a common word and a prefix; the same on the folder beside.
4. A turn to its end on a 2,000-message chat against one on a 10-message chat, p50, on
   PostgreSQL and on the folder; the fake reached directly with the same messages beside it
   (its own time, reading 2,000 messages, is part of every turn's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench.common import (
    ROOT,
    chatproxy,
    completion_body,
    create_chats,
    fake_upstream_process,
    http_call,
    http_stream,
    percentile,
    postgres_server,
    table,
    tree_cpu_seconds,
    turn_body,
)
from store import chatfile
from store.postgres.pool import POOL_SIZE

ONE_TOKEN = "bench:tokens=1"
STREAM_MODEL = "bench:tokens=50:interval=0.2"
CONCURRENCY = 32
LONG_CHAT, SHORT_CHAT = 2000, 10
RARE_WORD = "quixotical"
SYLLABLES = ["ka", "to", "ri", "mu", "sel", "dor", "an", "vi", "plo", "quen", "bra", "ne", "ti", "gor", "lu", "sa", "fen", "or", "chi", "mal"]


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cpu(pids: list[int]) -> float:
    return sum(tree_cpu_seconds(pid) for pid in pids)


async def run_requests(requests: list[tuple[int, str, str, dict]], concurrency: int, timeout: float = 60) -> None:
    """Each (port, method, path, body) streamed to its end, ``concurrency`` at a time."""
    slots = asyncio.Semaphore(concurrency)

    async def one(port: int, method: str, path: str, body: dict) -> None:
        async with slots:
            result = await http_stream(port, method, path, body, timeout=timeout)
        assert result.status == 200 and result.done, (path, body, result)

    await asyncio.gather(*(one(*request) for request in requests))


async def run_turns(ports: list[int], names: list[str], concurrency: int) -> None:
    """A turn on each chat, chat i through instance i mod n, ``concurrency`` at a time."""
    await run_requests([(ports[number % len(ports)], "PUT", "/chat", turn_body(name)) for number, name in enumerate(names)], concurrency)


async def throughput(server, upstream: tuple[int, int], count: int, turns: int, folder: bool = False) -> dict:
    """``count`` instances on a new database (or, ``folder``, one on a chats folder)."""
    where = {"chats_dir": None} if folder else {"store": server.url(server.new_database())}
    names = [f"t{number:05}" for number in range(turns + 50)]
    with contextlib.ExitStack() as stack:
        started = [stack.enter_context(chatproxy(upstream[0], **where)) for _ in range(count)]
        ports, pids = [port for port, _ in started], [process.pid for _, process in started]
        await create_chats(ports[0], names, ONE_TOKEN)
        await run_turns(ports, names[:50], CONCURRENCY)  # warm-up
        before = cpu(pids), tree_cpu_seconds(server.pid), tree_cpu_seconds(upstream[1].pid)
        began = time.monotonic()
        await run_turns(ports, names[50:], CONCURRENCY)
        wall = time.monotonic() - began
        after = cpu(pids), tree_cpu_seconds(server.pid), tree_cpu_seconds(upstream[1].pid)
    proxy, database, fake = (1000 * (end - start) / turns for start, end in zip(before, after))
    return {"rate": turns / wall, "proxy": proxy, "database": database, "fake": fake}


async def direct_throughput(upstream: tuple[int, int], turns: int) -> dict:
    """The fake reached directly (POST /v1/chat/completions), CONCURRENCY at a time: the
    rate and CPU per request that every turn above includes."""
    request = (upstream[0], "POST", "/v1/chat/completions", completion_body(ONE_TOKEN))
    await run_requests([request] * 50, CONCURRENCY)  # warm-up
    before, began = tree_cpu_seconds(upstream[1].pid), time.monotonic()
    await run_requests([request] * turns, CONCURRENCY)
    wall, fake = time.monotonic() - began, tree_cpu_seconds(upstream[1].pid) - before
    return {"rate": turns / wall, "fake": 1000 * fake / turns}


def connections(server, database: str) -> tuple[int, int]:
    """(connections to ``database``, of them running a statement now)."""
    with server.admin() as admin:
        return admin.execute(
            "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchone()


async def open_streams(server, upstream_port: int, count: int) -> dict:
    database = server.new_database()
    names = [f"s{number:05}" for number in range(count)]
    peaks = {"total": 0, "active": 0}
    with contextlib.ExitStack() as stack:
        started = [stack.enter_context(chatproxy(upstream_port, store=server.url(database))) for _ in range(2)]
        ports, pids = [port for port, _ in started], [process.pid for _, process in started]
        await create_chats(ports[0], names, STREAM_MODEL)
        done = asyncio.Event()

        async def sample() -> None:
            for _ in range(2000):  # bounded: 500 s
                total, active = connections(server, database)
                peaks["total"], peaks["active"] = max(peaks["total"], total), max(peaks["active"], active)
                if done.is_set():
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.25)

        async def one(number: int, name: str):
            await asyncio.sleep(number / count)  # opened over one second
            return await http_stream(ports[number % 2], "PUT", "/chat", turn_body(name), timeout=120)

        sampler = asyncio.ensure_future(sample())
        before, database_before, began = cpu(pids), tree_cpu_seconds(server.pid), time.monotonic()
        results = await asyncio.gather(*(one(number, name) for number, name in enumerate(names)), return_exceptions=True)
        stream_seconds = sum(r.ended_at - r.sent_at for r in results if not isinstance(r, BaseException))
        spent, database_spent = cpu(pids) - before, tree_cpu_seconds(server.pid) - database_before
        wall = time.monotonic() - began
        done.set()
        await sampler
    failed = sum(1 for r in results if isinstance(r, BaseException) or r.status != 200 or not r.done)
    return peaks | {"failed": failed, "wall": wall, "proxy": 1000 * spent / stream_seconds, "database": 1000 * database_spent / stream_seconds}


def write_corpus(folder: Path, chats: int, messages: int) -> dict[str, str]:
    """``chats`` chat files holding ``messages`` messages in all, one of them LONG_CHAT long,
    words drawn from a Zipf vocabulary; RARE_WORD in ten chats. The words to search for."""
    random_ = random.Random(15)
    vocabulary = sorted({"".join(random_.choices(SYLLABLES, k=random_.randint(2, 4))) for _ in range(40_000)})
    random_.shuffle(vocabulary)
    vocabulary = vocabulary[:20_000]
    weights = [1 / rank for rank in range(1, len(vocabulary) + 1)]
    per_chat = (messages - LONG_CHAT) // (chats - 1)
    words = iter(random_.choices(vocabulary, weights, k=12 * messages))
    rare = set(random_.sample(range(1, chats), 10))
    folder.mkdir(parents=True)
    for number in range(chats):
        chat = chatfile.new_chat(ONE_TOKEN, 0.7, -1)
        length = LONG_CHAT if number == 0 else per_chat
        chat["messages"] = [
            {"role": ("user", "assistant")[i % 2], "content": " ".join(next(words) for _ in range(12))} for i in range(length)
        ]
        if number in rare:
            chat["messages"][-1]["content"] += f" {RARE_WORD}"
        (folder / f"chat-{number:05}.json").write_bytes(chatfile.encode(chat))
    prefix = next(word[:4] for word in vocabulary[100:] if len(word) >= 6)
    return {"rare word": RARE_WORD, "common word": vocabulary[0], "prefix": prefix}


async def timed(port: int, path: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        status, elapsed, _ = await http_call(port, "GET", path, timeout=120)
        assert status == 200, (path, status)
        times.append(elapsed)
    return times


def migrate(source: str, target: str) -> float:
    began = time.monotonic()
    done = subprocess.run([sys.executable, "chatproxy.py", "migrate", "--from", source, "--to", target],
                          cwd=ROOT, capture_output=True, text=True, timeout=7200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return time.monotonic() - began


def vacuum(server, database: str) -> float:
    """What autovacuum does in time after a bulk load (statistics, the visibility map that
    lets a search read its index alone), done at once."""
    began = time.monotonic()
    with psycopg.connect(server.url(database), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.monotonic() - began


async def engine_figures(port: int, words: dict[str, str], calls: int) -> dict:
    figures = {"listing": await timed(port, "/chats", max(3, calls // 5)), "long chat": await timed(port, "/chat?name=chat-00000", calls)}
    for kind, word in words.items():
        figures[kind] = await timed(port, f"/chats?q={word}", calls)
    return figures


async def many_chats(server, upstream_port: int, chats: int, messages: int, calls: int) -> dict:
    database = server.new_database()
    with tempfile.TemporaryDirectory(prefix="bench-postgres-") as scratch:
        folder = Path(scratch) / "chats"
        began = time.monotonic()
        words = write_corpus(folder, chats, messages)
        log(f"  corpus written in {time.monotonic() - began:.0f} s; migrating")
        figures = {"words": words, "migration": migrate(str(folder), server.url(database)), "vacuum": vacuum(server, database)}
        with server.admin() as admin:
            figures["size"] = admin.execute("SELECT pg_database_size(%s)", (database,)).fetchone()[0] / 2**20
        with chatproxy(upstream_port, store=server.url(database)) as (port, _):
            figures["postgres"] = await engine_figures(port, words, calls)
        log("  the same chats on the folder")
        with chatproxy(upstream_port, chats_dir=str(folder)) as (port, _):
            figures["first folder search"] = (await timed(port, "/chats?q=first", 1))[0]  # builds its index
            figures["folder"] = await engine_figures(port, words, calls)
    return figures


async def long_against_short(server, upstream_port: int, turns: int) -> dict[str, list[float]]:
    """Turn times (to the end of the answer) on each engine and on the fake reached directly."""
    database = server.new_database()
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-postgres-") as scratch:
        folder = Path(scratch) / "chats"
        folder.mkdir()
        direct = {}
        for name, length in (("long", LONG_CHAT), ("short", SHORT_CHAT)):
            chat = chatfile.new_chat(ONE_TOKEN, 0.7, -1)
            chat["messages"] = [{"role": ("user", "assistant")[i % 2], "content": f"message {i} " + "lorem ipsum " * 20} for i in range(length)]
            (folder / f"{name}.json").write_bytes(chatfile.encode(chat))
            direct[name] = completion_body(ONE_TOKEN) | {"messages": chat["messages"] + [{"role": "user", "content": "hi"}]}
        migrate(str(folder), server.url(database))
        for engine, where in (("postgres", {"store": server.url(database)}), ("folder", {"chats_dir": str(folder)})):
            with chatproxy(upstream_port, **where) as (port, _):
                for _ in range(turns):  # interleaved, so that drift touches all alike
                    for name in ("long", "short"):
                        result = await http_stream(port, "PUT", "/chat", turn_body(name), timeout=60)
                        assert result.status == 200 and result.done, result
                        times.setdefault(f"{engine} {name}", []).append(result.ended_at - result.sent_at)
                        result = await http_stream(upstream_port, "POST", "/v1/chat/completions", direct[name], timeout=60)
                        times.setdefault(f"direct {name}", []).append(result.ended_at - result.sent_at)
    return times


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


async def run(args) -> None:
    with postgres_server() as server, fake_upstream_process() as upstream:
        log(f"1. the fake reached directly: {args.turns} requests")
        direct = await direct_throughput(upstream, args.turns)
        rows = [("1. the fake reached directly: requests/s", f"{direct['rate']:.0f}", f"CPU per request: the fake {direct['fake']:.2f} ms")]
        for count, folder in ((1, True), (1, False), (2, False), (4, False)):
            log(f"1. {count} instance(s){' on the folder' if folder else ''}: {args.turns} turns")
            figures = await throughput(server, upstream, count, args.turns, folder)
            what = "the folder, 1 instance (for comparison)" if folder else f"{count} instance(s) on PostgreSQL"
            rows.append((f"1. {what}: turns/s on distinct chats", f"{figures['rate']:.0f}",
                         f"CPU per turn: chatproxy {figures['proxy']:.2f} ms, PostgreSQL {figures['database']:.2f} ms, the fake {figures['fake']:.2f} ms"))
        log(f"2. {args.streams} open streams")
        streams = await open_streams(server, upstream[0], args.streams)
        pools = 2 * (POOL_SIZE + 1)
        rows += [
            (f"2. {args.streams} streams on 2 instances: failed", str(streams["failed"]), f"over {streams['wall']:.0f} s"),
            (f"2. {args.streams} streams: database connections, most at once", str(streams["total"]),
             f"of them running a statement: {streams['active']}; the pools hold at most {pools} (2 x {POOL_SIZE} + a listener each)"),
            (f"2. {args.streams} streams: CPU per stream-second (ms)", f"{streams['proxy']:.2f}",
             f"PostgreSQL {streams['database']:.3f} ms (5 events/s per stream, a journal a second)"),
        ]
        log(f"3. {args.chats:,} chats, {args.messages:,} messages")
        big = await many_chats(server, upstream[0], args.chats, args.messages, args.calls)
        postgres, folder = big["postgres"], big["folder"]

        def p50(times: list[float]) -> str:
            return ms(percentile(times, 0.5))

        rows += [
            ("3. migrate from the folder (s)", f"{big['migration']:.0f}",
             f"{args.messages / big['migration']:,.0f} messages/s; then VACUUM ANALYZE {big['vacuum']:.0f} s; the database holds {big['size']:,.0f} MB"),
            ("3. GET /chats p50 (ms)", p50(postgres["listing"]), f"{args.chats:,} chats; folder {p50(folder['listing'])}"),
            (f"3. GET /chat of a {LONG_CHAT:,}-message chat p50 (ms)", p50(postgres["long chat"]), f"folder {p50(folder['long chat'])}"),
        ]
        for kind, word in big["words"].items():
            times, there = postgres[kind], folder[kind]
            rows.append((f"3. search for a {kind} ({word!r}) p50 / p99 (ms)", f"{p50(times)} / {ms(percentile(times, 0.99))}",
                         f"target p50 <= 50; folder {p50(there)} / {ms(percentile(there, 0.99))}"))
        rows.append(("3. folder: the first search, which builds its index (s)", f"{big['first folder search']:.1f}", "once"))
        log(f"4. {args.long_turns} turns on a long and a short chat")
        turns = await long_against_short(server, upstream[0], args.long_turns)
        p50 = {key: percentile(values, 0.5) for key, values in turns.items()}
        for engine in ("postgres", "folder"):
            long_, short = p50[f"{engine} long"], p50[f"{engine} short"]
            added = (long_ - p50["direct long"]) / (short - p50["direct short"])
            rows.append((f"4. {engine}: turn to end, {LONG_CHAT:,} against {SHORT_CHAT} messages, p50 (ms)", f"{ms(long_)} / {ms(short)}",
                         f"{long_ / short:.2f} x (target <= 1.5); what chatproxy adds to the fake's own time: {added:.2f} x"))
        rows.append(("4. the fake alone with the same messages, p50 (ms)", f"{ms(p50['direct long'])} / {ms(p50['direct short'])}", ""))
    print(table("chatproxy on PostgreSQL (issue 15)", rows, ("measure", "figure", "notes")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts for a smoke run")
    args = parser.parse_args()
    args.turns, args.streams, args.chats, args.messages, args.calls, args.long_turns = (
        (200, 100, 2_000, 40_000, 10, 5) if args.quick else (2_000, 1_000, 50_000, 1_000_000, 50, 30)
    )
    started = time.monotonic()
    asyncio.run(run(args))
    print(f"({'quick run, ' if args.quick else ''}took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
