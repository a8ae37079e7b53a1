"""The real server process: start-up, and graceful shutdown with a stream in flight."""

from __future__ import annotations

import asyncio
import json
import signal
import socket

import pytest

from tests.fake_lmstudio import MODEL, Reply
from tests.helpers import call, child_pids, has_exited, start_server, stop_server, stream, wait_for


@pytest.mark.gen_test(timeout=30)
async def test_sigterm_ends_streams_after_grace_keeps_partial_reply_exits_0(project_root, clean_env, tmp_path, fake):
    process, base = await start_server(project_root, clean_env, tmp_path, fake, shutdown__grace=0.3)
    try:
        fake.script.append(Reply(tokens=["Before", " after"], hold=asyncio.Event(), hold_at=1))
        assert (await call(base, "POST", "/chat", {"name": "demo", "model": MODEL})).status == 200
        seen_first = asyncio.Event()

        def note_first(result):
            if "Before" in result.content():
                seen_first.set()
            return False

        running = asyncio.ensure_future(stream(base, "/chat", {"name": "demo", "message": {"role": "user", "content": "hi"}}, stop=note_first))
        await asyncio.wait_for(seen_first.wait(), 10)
        process.send_signal(signal.SIGTERM)
        result = await running
        last = json.loads(result.data[-1])
        assert last["error"]["type"] == "shutdown"
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        await stop_server(process)
    saved = json.loads((tmp_path / "chats" / "demo.json").read_text())
    assert [(m["role"], m["content"]) for m in saved["messages"]] == [("user", "hi"), ("assistant", "Before")]
    assert saved["messages"][-1]["interrupted"] is True
    log = (await process.stdout.read()).decode()
    assert "Shutting down" in log and "Stopped" in log


@pytest.mark.gen_test(timeout=30)
async def test_sigterm_lets_a_stream_finish_within_grace(project_root, clean_env, tmp_path, fake):
    process, base = await start_server(project_root, clean_env, tmp_path, fake, shutdown__grace=20)
    try:
        hold = asyncio.Event()
        fake.script.append(Reply(tokens=["All", " of", " it"], hold=hold, hold_at=1))
        assert (await call(base, "POST", "/chat", {"name": "demo", "model": MODEL})).status == 200
        running = asyncio.ensure_future(stream(base, "/chat", {"name": "demo", "message": {"role": "user", "content": "hi"}}))
        await fake.wait_held(timeout=10)
        process.send_signal(signal.SIGTERM)
        # The listener closes at once; the running stream goes on.
        await wait_for(lambda: _refused(base), timeout=10, what="the listener to close")
        hold.set()
        result = await running
        assert result.content() == "All of it" and result.data[-1] == "[DONE]"
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        await stop_server(process)
    saved = json.loads((tmp_path / "chats" / "demo.json").read_text())
    assert (saved["messages"][-1]["role"], saved["messages"][-1]["content"]) == ("assistant", "All of it")
    assert saved["messages"][-1]["finish_reason"] == "stop"


def _refused(base: str) -> bool:
    port = int(base.rsplit(":", 1)[1])
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.gen_test(timeout=60)
async def test_sigkill_during_writes_and_streams_leaves_every_file_whole(project_root, clean_env, tmp_path, fake):
    fake.default = Reply(tokens=["tok"] * 20, interval=0.002)
    process, base = await start_server(project_root, clean_env, tmp_path, fake)
    acknowledged: list[str] = []

    async def writer(worker: int) -> None:
        for i in range(200):
            name = f"w{worker}-{i}"
            try:
                if (await call(base, "POST", "/chat", {"name": name, "model": MODEL})).status != 200:
                    return
                acknowledged.append(name)
                await stream(base, "/chat", {"name": name, "message": {"role": "user", "content": "x" * 2000}})
            except Exception:
                return  # the server died under us: that is the point

    writers = [asyncio.ensure_future(writer(n)) for n in range(4)]
    try:
        await fake.wait_requests(10, timeout=30)
        await wait_for(lambda: len(acknowledged) >= 20, timeout=30, what="traffic")
        [store_worker] = child_pids(process.pid)
        process.kill()  # SIGKILL, mid-write and mid-stream
        await process.wait()
        await asyncio.gather(*writers)
        # Its stdin closed, the store's worker finishes the writes it had and exits.
        await wait_for(lambda: has_exited(store_worker), what="the orphaned store worker to exit")
    finally:
        await stop_server(process)
    folder = tmp_path / "chats"
    for path in folder.glob("*.json"):
        chat = json.loads(path.read_text())  # every chat file is whole
        assert isinstance(chat["messages"], list)
    assert {p.stem for p in folder.glob("*.json")} >= set(acknowledged)
    process, base = await start_server(project_root, clean_env, tmp_path, fake)
    try:
        listing = (await call(base, "GET", "/chats")).json["chats"]
        assert {chat["name"] for chat in listing} >= set(acknowledged)
        assert list(folder.glob(".*.tmp")) == []  # cleaned at start-up
    finally:
        await stop_server(process)


@pytest.mark.gen_test(timeout=60)
async def test_two_processes_on_one_folder_lose_no_update(project_root, clean_env, tmp_path, fake):
    first, base_a = await start_server(project_root, clean_env, tmp_path, fake)
    second, base_b = await start_server(project_root, clean_env, tmp_path, fake)
    try:
        creates = await asyncio.gather(*(call(b, "POST", "/chat", {"name": "shared", "model": MODEL}) for b in (base_a, base_b)))
        assert sorted(r.status for r in creates) == [200, 409]
        turns = [
            stream(base, "/chat", {"name": "shared", "message": {"role": "user", "content": f"{tag}{i}"}})
            for i in range(10)
            for base, tag in ((base_a, "a"), (base_b, "b"))
        ]
        results = await asyncio.gather(*turns)
        assert all(r.data[-1] == "[DONE]" for r in results)
    finally:
        await stop_server(first)
        await stop_server(second)
    saved = json.loads((tmp_path / "chats" / "shared.json").read_text())
    users = sorted(m["content"] for m in saved["messages"] if m["role"] == "user")
    assert users == sorted([f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)])
    assert sum(m["role"] == "assistant" for m in saved["messages"]) == 20
