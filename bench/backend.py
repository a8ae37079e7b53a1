"""Chat backend benchmark: search, export and import through a running chatproxy.

    python -m bench.backend            # search at 1,000 and 10,000 chats, export 10,000, import 100 MB
    python -m bench.backend --quick    # smaller counts, for a smoke run

Chats are written as files first (as a folder of the original server would be), then
chatproxy is started on them. "direct" is the same work without chatproxy where there is
one to compare with: reading every file for the export and the import's source size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

from bench.common import chatproxy, fake_upstream, http_call, percentile, process_memory, table
from bench.store import read_every_file
from store import chatfile
from tests.helpers import child_pids

WORDS = ("python rust lifetime borrow tornado stream event loop socket model token prompt "
         "reasoning answer question garden recipe bicycle planet ocean history music guitar "
         "physics energy market budget travel weather coffee library kernel memory").split()


# Text as people write it: a few words are everywhere, most are rare (Zipf's law).
VOCABULARY = WORDS + [f"{WORDS[i % len(WORDS)][:3]}{i:04}" for i in range(5000)]
WEIGHTS = [1 / (rank + 1) for rank in range(len(VOCABULARY))]


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(VOCABULARY, WEIGHTS, k=words))


def write_chats(folder: Path, count: int, rng: random.Random) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        chat = chatfile.new_chat("bench:tokens=1", 0.7, -1)
        chat["messages"] = [
            {"role": "user" if i % 2 == 0 else "assistant", "content": sentence(rng, 12 if i % 2 == 0 else 60)}
            for i in range(10)
        ]
        (folder / f"{sentence(rng, 2)} {number:05}.json").write_bytes(chatfile.encode(chat))


def peak_memory_mb(pid: int) -> tuple[float, float]:
    """Peak RSS of the server and of its store worker, in MB."""
    server = process_memory(pid)["VmHWM"] / 1024
    worker = sum(process_memory(child)["VmHWM"] for child in child_pids(pid)) / 1024
    return server, worker


async def search_rows(upstream_port: int, count: int, queries: int, rng: random.Random) -> list[tuple]:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as scratch:
        folder = Path(scratch) / "chats"
        write_chats(folder, count, rng)
        with chatproxy(upstream_port, str(folder)) as (port, _):
            status, build, _ = await http_call(port, "GET", "/chats?q=python", timeout=600)
            assert status == 200, status
            times, hits = [], 0
            for _ in range(queries):
                query = sentence(rng, rng.choice((1, 2)))
                status, elapsed, body = await http_call(port, "GET", "/chats?q=" + query.replace(" ", "%20"))
                assert status == 200
                hits += body.count(b'"snippet"')
                times.append(elapsed)
        with chatproxy(upstream_port, str(folder)) as (port, _):  # the index kept on disk
            status, reopened, _ = await http_call(port, "GET", "/chats?q=python", timeout=600)
    return [
        (f"GET /chats?q=, {count:,} chats: first search, index built (s)", "", f"{build:.2f}", "once; kept in .search.sqlite"),
        (f"GET /chats?q=, {count:,} chats: first search after a restart (ms)", "", f"{reopened * 1e3:.1f}", "the listing is rebuilt, the search index read back"),
        (f"GET /chats?q=, {count:,} chats: p50 (ms)", "", f"{percentile(times, 0.5) * 1e3:.2f}", f"p99 {percentile(times, 0.99) * 1e3:.2f} ms, {hits / queries:.0f} results each (at most 50)"),
    ]


async def export_rows(upstream_port: int, count: int, rng: random.Random) -> list[tuple]:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as scratch:
        folder = Path(scratch) / "chats"
        write_chats(folder, count, rng)
        direct = read_every_file(folder)
        on_disk = sum(path.stat().st_size for path in folder.glob("*.json")) / 1e6
        with chatproxy(upstream_port, str(folder)) as (port, process):
            await http_call(port, "GET", "/chats")
            before = peak_memory_mb(process.pid)
            status, elapsed, body = await http_call(port, "GET", "/chats/export", timeout=600)
            assert status == 200 and body.count(b'"name":') >= count
            after = peak_memory_mb(process.pid)
    size = len(body) / 1e6
    return [
        (f"GET /chats/export, {count:,} chats ({size:.0f} MB of NDJSON) (s)", f"{direct:.2f}", f"{elapsed:.2f}", f"{size / elapsed:.0f} MB/s; direct = read and parse every file ({on_disk:.0f} MB)"),
        (f"GET /chats/export, {count:,} chats: peak RSS server / worker (MB)", "", f"{after[0]:.0f} / {after[1]:.0f}", f"before: {before[0]:.0f} / {before[1]:.0f}"),
    ]


def chatgpt_conversation(number: int, rng: random.Random, turns: int) -> dict:
    """A ChatGPT conversation: a tree with a regenerated reply at every fifth turn."""
    mapping = {"root": {"id": "root", "message": None, "parent": None, "children": []}}
    parent = "root"
    for turn in range(turns):
        user = f"u{turn}"
        mapping[user] = {"id": user, "parent": parent, "children": [],
                         "message": {"author": {"role": "user"}, "content": {"content_type": "text", "parts": [sentence(rng, 20)]}}}
        mapping[parent]["children"].append(user)
        replies = 2 if turn % 5 == 4 else 1
        for variant in range(replies):
            reply = f"a{turn}.{variant}"
            mapping[reply] = {"id": reply, "parent": user, "children": [],
                              "message": {"author": {"role": "assistant"}, "content": {"content_type": "text", "parts": [sentence(rng, 120)]},
                                          "metadata": {"model_slug": "gpt-4o"}}}
            mapping[user]["children"].append(reply)
        parent = reply
    return {"title": f"{sentence(rng, 3)} {number}", "create_time": 1.7e9 + number, "update_time": 1.7e9 + number + 60,
            "mapping": mapping, "current_node": parent}


async def import_rows(upstream_port: int, megabytes: int, rng: random.Random) -> list[tuple]:
    conversations, size = [], 0
    while size < megabytes * 1e6:
        conversation = chatgpt_conversation(len(conversations), rng, 20)
        conversations.append(conversation)
        size += len(json.dumps(conversation))
    payload = json.dumps(conversations).encode()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as scratch:
        with chatproxy(upstream_port, str(Path(scratch) / "chats")) as (port, process):
            before = peak_memory_mb(process.pid)
            status, elapsed, body = await http_call(port, "POST", "/chats/import", payload, timeout=1200)
            assert status == 200, body[-300:]
            after = peak_memory_mb(process.pid)
            answer = json.loads(body.split(b"\r\n\r\n", 1)[1])
            assert len(answer["imported"]) == len(conversations) and not answer["errors"]
    mb = len(payload) / 1e6
    return [
        (f"POST /chats/import, ChatGPT export of {mb:.0f} MB ({len(conversations):,} conversations) (s)", "", f"{elapsed:.1f}", f"{mb / elapsed:.1f} MB/s, {len(conversations) / elapsed:.0f} chats/s"),
        ("POST /chats/import: peak RSS server / worker (MB)", "", f"{after[0]:.0f} / {after[1]:.0f}", f"before: {before[0]:.0f} / {before[1]:.0f}"),
    ]


async def run(args) -> None:
    rng = random.Random(7)
    rows = []
    with fake_upstream() as upstream_port:
        for count in args.search_counts:
            rows += await search_rows(upstream_port, count, args.queries, rng)
        rows += await export_rows(upstream_port, args.export_count, rng)
        rows += await import_rows(upstream_port, args.import_mb, rng)
    print(table("chatproxy chat backend benchmark", rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts for a smoke run")
    args = parser.parse_args()
    args.search_counts, args.queries, args.export_count, args.import_mb = (
        ([200, 1000], 50, 1000, 5) if args.quick else ([1000, 10000], 300, 10000, 100)
    )
    started = time.monotonic()
    asyncio.run(run(args))
    print(f"(took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
