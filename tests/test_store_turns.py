"""A turn at the store: hold, begin, journal, end, and what a stopped holder leaves behind.

Two ChatStores on one folder stand for two processes: each holds its chats through flocks
of its own. A holder "dies" by leaving ``hold`` without ending its turn: its flock goes, its
journal and its chat's running mark stay, as after a kill (test_process.py kills a real one).
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from store import ChatNotFound, ChatStore, turnfile
from tests.helpers import begin_turn, wait_for

QUESTION = {"role": "user", "content": "why?"}
PARTIAL = {"role": "assistant", "content": "Because", "finish_reason": None}
WHOLE = {"role": "assistant", "content": "Because it is.", "finish_reason": "stop"}


@pytest.fixture
def stores(tmp_path, io_loop):
    """Two stores on one folder, as two processes on it."""
    pair = [ChatStore(tmp_path / "chats"), ChatStore(tmp_path / "chats")]
    for store in pair:
        store.open()
    yield pair
    for store in pair:
        io_loop.run_sync(store.close)


def on_disk(tmp_path, name: str = "demo") -> dict:
    return json.loads((tmp_path / "chats" / f"{name}.json").read_text())


def journal_size(tmp_path, name: str = "demo") -> int:
    return os.stat(tmp_path / "chats" / ".locks" / f"{name}.turn").st_size


async def left_running(store, name: str = "demo") -> None:
    """A turn begun and journaled whose holder then stopped."""
    async with store.hold(name):
        await begin_turn(store, name, {"append": QUESTION}, {"id": "t1", "started_at": "now"})
        await store.journal_turn(name, "t1", PARTIAL)


@pytest.mark.gen_test
async def test_a_turn_is_marked_running_while_held_and_ends_with_its_reply(stores, tmp_path):
    mine, other = stores
    await mine.create("demo", "m", 0.7, -1)
    async with mine.hold("demo"):
        chat = await begin_turn(mine, "demo", {"append": QUESTION}, {"id": "t1", "started_at": "now"})
        assert chat["messages"] == [QUESTION] and chat["running_turn"]["id"] == "t1"
        assert on_disk(tmp_path)["running_turn"]["id"] == "t1"  # durable before it returned
        await mine.journal_turn("demo", "t1", PARTIAL)
        for store in stores:  # this process's own turn, and one another process sees
            assert (await store.get("demo"))["running_turn"]["id"] == "t1"
            assert (await store.list_chats()) == [{"id": "demo", "name": "demo", "model": "m", "running": True}]
        await mine.end_turn("demo", "t1", WHOLE)
        saved = on_disk(tmp_path)
        assert saved["messages"] == [QUESTION, WHOLE] and "running_turn" not in saved
        assert journal_size(tmp_path) == 0
    for store in stores:
        assert "running_turn" not in await store.get("demo")
        assert (await store.list_chats()) == [{"id": "demo", "name": "demo", "model": "m"}]


@pytest.mark.gen_test
async def test_a_stopped_holders_turn_is_hidden_then_finished_once_by_recover(stores, tmp_path):
    dead, restarted = stores
    await dead.create("demo", "m", 0.7, -1)
    await left_running(dead)
    assert on_disk(tmp_path)["running_turn"]["id"] == "t1"
    assert "running_turn" not in await restarted.get("demo")  # nobody holds it: not live
    assert "running" not in (await restarted.list_chats())[0]
    assert await restarted.recover() == 1
    saved = on_disk(tmp_path)
    assert saved["messages"] == [QUESTION, {**PARTIAL, "finish_reason": None, "interrupted": True}]
    assert "running_turn" not in saved and journal_size(tmp_path) == 0
    assert await restarted.recover() == 0
    assert on_disk(tmp_path) == saved


@pytest.mark.gen_test
async def test_hold_finishes_a_stopped_holders_turn_before_it_returns(stores, tmp_path):
    dead, alive = stores
    await dead.create("demo", "m", 0.7, -1)
    await left_running(dead)
    async with alive.hold("demo"):
        messages = (await alive.get("demo"))["messages"]
        assert [(m["content"], m.get("interrupted")) for m in messages] == [("why?", None), ("Because", True)]
        assert "running_turn" not in on_disk(tmp_path)


@pytest.mark.gen_test
async def test_a_kill_between_ends_write_and_clearing_the_journal_stores_the_reply_once(stores, tmp_path, monkeypatch):
    dead, restarted = stores
    await dead.create("demo", "m", 0.7, -1)
    monkeypatch.setattr(turnfile.TurnFile, "clear", lambda self: None)  # killed right after the write
    async with dead.hold("demo"):
        await begin_turn(dead, "demo", {"append": QUESTION}, {"id": "t1", "started_at": "now"})
        await dead.journal_turn("demo", "t1", PARTIAL)  # a reply long enough to be journaled
        await dead.end_turn("demo", "t1", WHOLE)
    monkeypatch.undo()
    assert journal_size(tmp_path) > 0  # the journal still names turn t1, with its reply so far
    assert await restarted.recover() == 0
    async with restarted.hold("demo"):
        assert (await restarted.get("demo"))["messages"] == [QUESTION, WHOLE]
    assert journal_size(tmp_path) == 0


@pytest.mark.gen_test
async def test_hold_waits_for_another_process_holding_the_chat(stores):
    first, second = stores
    await first.create("demo", "m", 0.7, -1)
    entered = asyncio.Event()

    async def hold_second() -> None:
        async with second.hold("demo"):
            entered.set()

    async with first.hold("demo"):
        waiting = asyncio.ensure_future(hold_second())
        await wait_for(lambda: second.turn_waiters("demo") == 1, what="the second store to ask for the chat")
        assert not entered.is_set()  # it asked, and was refused: the flock is the first's
    await asyncio.wait_for(waiting, 5)
    assert entered.is_set()


@pytest.mark.gen_test
async def test_a_chat_deleted_or_renamed_during_its_turn_leaves_no_lock_files(stores, tmp_path):
    store = stores[0]
    for name in ("gone", "moved"):
        await store.create(name, "m", 0.7, -1)
    async with store.hold("gone"):
        await begin_turn(store, "gone", {"append": QUESTION}, {"id": "t1", "started_at": "now"})
        await store.delete("gone")
        with pytest.raises(ChatNotFound):
            await store.end_turn("gone", "t1", WHOLE)
    async with store.hold("moved"):
        await store.rename("moved", "there")
    await store.delete("there")  # not held: its files go at once
    assert os.listdir(tmp_path / "chats" / ".locks") == []


@pytest.mark.gen_test
async def test_a_turn_outside_hold_is_refused(stores):
    store = stores[0]
    await store.create("demo", "m", 0.7, -1)
    with pytest.raises(RuntimeError, match="not held"):
        await begin_turn(store, "demo", {"append": QUESTION}, {"id": "t1", "started_at": "now"})


def test_a_journal_write_cut_short_leaves_the_previous_record_whole(tmp_path, monkeypatch):
    """A write of several pages can stop part-way when its process is killed: the record
    it was replacing is what the next holder reads."""
    path = str(tmp_path / "x.turn")
    journal = turnfile.TurnFile.take(path)
    records = [{"turn": "t1", "reply": {"content": "word " * size}} for size in (10, 2000, 4000, 9000, 9500)]
    journal.write(records[0])
    for before, record in zip(records, records[1:]):
        real = turnfile._write_all
        monkeypatch.setattr(turnfile, "_write_all", lambda fd, data, offset: real(fd, data[: len(data) // 2], offset) or 1 / 0)
        with pytest.raises(ZeroDivisionError):
            journal.write(record)  # killed half-way through its body
        monkeypatch.undo()
        assert journal.read() == before
        journal.write(record)
        assert journal.read() == record
        assert os.path.getsize(path) <= 3 * len(json.dumps(record)) + 64
    journal.release()
    again = turnfile.TurnFile.take(path)
    assert again.read() == records[-1]
    again.release(remove=True)
    assert not os.path.exists(path)


@pytest.mark.gen_test
async def test_a_damaged_journal_is_ignored_and_its_chat_still_finished(stores, tmp_path, caplog):
    dead, restarted = stores
    await dead.create("demo", "m", 0.7, -1)
    await left_running(dead)
    (tmp_path / "chats" / ".locks" / "demo.turn").write_bytes(b"CPJ1" + b"\xff" * 40)  # by hand
    assert await restarted.recover() == 1
    saved = on_disk(tmp_path)
    assert saved["messages"] == [{**QUESTION, "unanswered": True}] and "running_turn" not in saved
    assert "Ignoring the turn journal" in caplog.text
