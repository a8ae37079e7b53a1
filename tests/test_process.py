"""The real server process: start-up, graceful shutdown with a stream in flight, kill -9,
and two processes on one folder."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys

import pytest

from store import ChatStore
from tests.fake_lmstudio import MODEL, Reply
from tests.helpers import call, start_server, stop_server, stream, wait_for


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
        process.kill()  # SIGKILL, mid-write and mid-stream
        await process.wait()
        await asyncio.gather(*writers)
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
        # The turns the kill cut short were finished at start-up.
        assert not [chat for chat in listing if chat.get("running")]
        assert not [path for path in folder.glob("*.json") if "running_turn" in json.loads(path.read_text())]
        assert all(path.stat().st_size == 0 for path in (folder / ".locks").glob("*.turn"))  # no journal left
    finally:
        await stop_server(process)


@pytest.mark.gen_test(timeout=60)
async def test_two_processes_on_one_folder_lose_no_update_and_never_interleave_turns(project_root, clean_env, tmp_path, fake):
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
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"] * 20


# Holds chats "a" and "b" mid-turn, each with a journaled reply, until it is killed.
HOLDER = """
import asyncio, contextlib, sys
from store import ChatStore

async def main(folder):
    store = ChatStore(folder)
    store.open()
    async with contextlib.AsyncExitStack() as holding:
        for name in ("a", "b"):
            await store.create(name, "m", 0.7, -1)
            await holding.enter_async_context(store.hold(name))
            _, durable = await store.begin_turn(name, {"append": {"role": "user", "content": "why?"}}, {"id": "t-" + name, "started_at": "now"})
            await durable
            await store.journal_turn(name, "t-" + name, {"role": "assistant", "content": "Because", "finish_reason": None})
        print("holding", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.gen_test(timeout=60)
async def test_a_process_killed_mid_turn_leaves_its_reply_to_the_next_holder_and_to_a_restart(project_root, clean_env, tmp_path, fake):
    folder = tmp_path / "chats"
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(folder), cwd=project_root, env=clean_env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    store = ChatStore(folder)
    try:
        assert await asyncio.wait_for(holder.stdout.readline(), 15) == b"holding\n"
        store.open()
        assert (await store.get("a"))["running_turn"]["id"] == "t-a"  # live: the other process holds it
        assert [chat.get("running") for chat in await store.list_chats()] == [True, True]
        entered = asyncio.Event()

        async def hold_a() -> list[dict]:
            async with store.hold("a"):
                entered.set()
                return (await store.get("a"))["messages"]

        waiting = asyncio.ensure_future(hold_a())
        await wait_for(lambda: store.turn_waiters("a") == 1, what="this process to ask for chat a")
        assert not entered.is_set()  # refused while the other process holds it
        holder.kill()
        await holder.wait()
        messages = await asyncio.wait_for(waiting, 10)
        assert [(m["content"], m.get("interrupted")) for m in messages] == [("why?", None), ("Because", True)]
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
        await store.close()
    process, base = await start_server(project_root, clean_env, tmp_path, fake)
    try:
        chat = (await call(base, "GET", "/chat?name=b")).json["chat"]
        assert [(m["content"], m.get("interrupted")) for m in chat["messages"]] == [("why?", None), ("Because", True)]
        assert "running_turn" not in json.loads((folder / "b.json").read_text())  # finished at start-up
        assert [chat.get("running") for chat in (await call(base, "GET", "/chats")).json["chats"]] == [None, None]
    finally:
        await stop_server(process)
