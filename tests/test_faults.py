"""Storage faults: each step of a write fails in turn, a full disk, a read-only folder. The
old file stays whole, the answer names the cause, the next request works once it is gone.
The faults are injected into the store's file operations (store/files.py) in this process."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
import time

import pytest

from store import files
from tests.fake_lmstudio import Reply
from tests.helpers import assert_error, call, stream

HI = {"role": "user", "content": "hi"}
STEPS = ["temp_create", "write", "fsync", "rename", "folder_fsync", "lock_open"]


class FaultyOs:
    """``os`` as store/files.py sees it, with the planned fault: ``step`` fails with ``number``,
    or takes ``delay`` seconds longer. Steps: temp_create, write, fsync, rename, folder_fsync,
    lock_open (a chat's .lock or .turn file), journal (a turn's journal record)."""

    def __init__(self) -> None:
        self.step: str | None = None
        self.number = errno.EIO
        self.delay: float | None = None

    def __getattr__(self, name: str):
        return getattr(os, name)

    def _maybe_fail(self, step: str) -> None:
        if step != self.step:
            return
        if self.delay is not None:
            time.sleep(self.delay)  # a slow disk, on the store's thread
        else:
            raise OSError(self.number, os.strerror(self.number))

    def open(self, path, flags, mode=0o777):
        name = os.fspath(path)
        if name.endswith(files.TEMP_SUFFIX):
            self._maybe_fail("temp_create")
        elif name.endswith((".lock", ".turn")):
            self._maybe_fail("lock_open")
        return os.open(path, flags, mode)

    def write(self, fd, data):
        self._maybe_fail("write")
        return os.write(fd, data)

    def fsync(self, fd):
        self._maybe_fail("folder_fsync" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync")
        return os.fsync(fd)

    def fdatasync(self, fd):
        self._maybe_fail("fsync")
        return os.fdatasync(fd)

    def replace(self, source, target):
        self._maybe_fail("rename")
        return os.replace(source, target)

    def pwrite(self, fd, data, offset):
        self._maybe_fail("journal")  # store/turnfile.py's records
        return os.pwrite(fd, data, offset)


@pytest.fixture
def plan(monkeypatch):
    """``plan(step, errno)`` makes the store's next file operations fail at that step,
    ``plan(step, delay=s)`` makes them slow there, ``plan(None)`` heals the disk."""
    faulty = FaultyOs()
    monkeypatch.setattr(files, "os", faulty)

    def set_fault(step: str | None, number: int = errno.EIO, delay: float | None = None) -> None:
        faulty.step, faulty.number, faulty.delay = step, number, delay

    set_fault.faulty = faulty
    return set_fault


async def a_chat_with_one_turn(proxy, chats_dir) -> bytes:
    assert (await call(proxy, "POST", "/chat", {"name": "demo", "model": "m"})).status == 200
    assert (await stream(proxy, "/chat", {"name": "demo", "message": HI})).status == 200
    return (chats_dir / "demo.json").read_bytes()


def expected(step: str, number: int) -> tuple[int, str]:
    if number == errno.ENOSPC:
        return 507, "Storage is full"
    if number == errno.EROFS:
        return 500, "read-only"
    if number == errno.EACCES:
        return 500, "may not write"
    return 500, "Input/output error"


CASES = [(step, errno.EIO) for step in STEPS] + [
    ("write", errno.ENOSPC),
    ("fsync", errno.ENOSPC),
    ("temp_create", errno.ENOSPC),
    ("temp_create", errno.EROFS),
    ("temp_create", errno.EACCES),
    ("lock_open", errno.EROFS),
    ("lock_open", errno.EACCES),
]


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("step,number", CASES)
async def test_a_failed_turn_write_relays_nothing_and_keeps_the_file(proxy, chats_dir, fake, plan, step, number):
    old = await a_chat_with_one_turn(proxy, chats_dir)
    generating = asyncio.Event()  # still generating when the write fails: never released
    fake.script.append(Reply(hold=generating))
    plan(step, number)
    result = await stream(proxy, "/chat", {"name": "demo", "message": {"role": "user", "content": "second"}})
    status, words = expected(step, number)
    message = assert_error(result, status)
    assert words in message and "demo" in message, message
    now = (chats_dir / "demo.json").read_bytes()
    if step == "folder_fsync":
        # Renamed, then the fsync of the folder failed: the new file is whole, and its
        # question, which got no answer, says so.
        assert json.loads(now)["messages"][-1] == {"role": "user", "content": "second", "unanswered": True}
    else:
        assert now == old
    assert [p.name for p in chats_dir.iterdir() if p.name.endswith(".tmp")] == []
    # LM Studio was asked while the write ran: that request is closed, so it stops generating.
    await fake.wait_idle()
    assert fake.closed_early == len(fake.requests) - 1
    fake.script.clear()  # the held reply, if the aborted request never reached the fake
    plan(None)
    after = await stream(proxy, "/chat", {"name": "demo", "message": {"role": "user", "content": "third"}})
    assert after.status == 200 and after.content() == "Hello, world!"
    stored = json.loads((chats_dir / "demo.json").read_text())["messages"]
    assert [m["content"] for m in stored[-2:]] == ["third", "Hello, world!"]


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("step,number", CASES)
async def test_a_failed_create_leaves_no_chat_and_the_next_one_works(proxy, chats_dir, plan, step, number):
    assert (await call(proxy, "GET", "/chats")).status == 200
    plan(step, number)
    response = await call(proxy, "POST", "/chat", {"name": "new", "model": "m"})
    status, words = expected(step, number)
    assert words in assert_error(response, status)
    if step != "folder_fsync":
        assert not (chats_dir / "new.json").exists()
    plan(None)
    retry = await call(proxy, "POST", "/chat", {"name": "other", "model": "m"})
    assert retry.status == 200, retry.body


@pytest.mark.gen_test(timeout=20)
async def test_a_reply_that_cannot_be_stored_ends_with_an_error_event_and_is_stored_once_the_disk_heals(proxy, chats_dir, fake, plan, caplog):
    old = await a_chat_with_one_turn(proxy, chats_dir)

    def fail_when_the_reply_arrives(result):
        if result.content():
            plan("write", errno.ENOSPC)
        return False

    fake.script.append(Reply(tokens=["a", "b", "c"], interval=0.05))
    result = await stream(proxy, "/chat", {"name": "demo", "message": {"role": "user", "content": "q"}}, stop=fail_when_the_reply_arrives)
    assert result.content() == "abc" and "[DONE]" not in result.data
    error = json.loads(result.data[-1])["error"]
    assert error["type"] == "storage" and "could not be stored" in error["message"] and "Storage is full" in error["message"]
    assert "could not be stored" in caplog.text
    stored = json.loads((chats_dir / "demo.json").read_text())
    assert json.loads(old)["messages"] == stored["messages"][:-1]
    assert stored["messages"][-1]["content"] == "q"
    # The reply waited in the turn's journal: the chat's next turn stores it first.
    plan(None)
    assert (await stream(proxy, "/chat", {"name": "demo", "message": {"role": "user", "content": "next"}})).status == 200
    stored = json.loads((chats_dir / "demo.json").read_text())["messages"]
    assert [(m["content"], m.get("interrupted")) for m in stored[-4:]] == [("q", None), ("abc", True), ("next", None), ("Hello, world!", None)]


@pytest.mark.gen_test(timeout=20)
async def test_lm_studio_is_asked_during_the_write_and_nothing_is_relayed_before_it_is_durable(proxy, chats_dir, fake, plan):
    """The write is made slow (its fsync takes 0.5 s more): LM Studio gets the request while
    the file does not yet hold the message, and the client's first event comes only once it does."""
    await a_chat_with_one_turn(proxy, chats_dir)
    on_disk = lambda: json.loads((chats_dir / "demo.json").read_text())["messages"][-1]["content"]  # noqa: E731
    when_asked, at_first_event = [], []
    fake.on_request = lambda body: when_asked.append(on_disk())

    def look_at_the_file(result):
        if result.chunks and not at_first_event:
            at_first_event.append(on_disk())
        return False

    plan("fsync", delay=0.5)
    result = await stream(proxy, "/chat", {"name": "demo", "message": {"role": "user", "content": "second"}}, stop=look_at_the_file)
    plan(None)
    assert result.status == 200 and result.content() == "Hello, world!"
    assert when_asked == ["Hello, world!"]  # the previous reply: the new message was not on disk yet
    assert at_first_event == ["second"]


@pytest.mark.gen_test(timeout=20)
async def test_a_storage_fault_while_journaling_ends_the_turn_with_the_storage_error_and_the_chat_stays_whole(proxy, chats_dir, fake, services, monkeypatch):
    from store import turnfile
    from turns import turn as turn_module

    await a_chat_with_one_turn(proxy, chats_dir)
    monkeypatch.setattr(turn_module, "JOURNAL_INTERVAL_S", 0.05)
    fake.script.append(Reply(tokens=["one ", "two ", "three"], hold=asyncio.Event(), hold_at=2))
    running = asyncio.ensure_future(stream(proxy, "/chat", {"name": "demo", "message": {"role": "user", "content": "second"}}))
    await fake.wait_held()
    full = FaultyOs()
    full.step, full.number = "journal", errno.ENOSPC
    monkeypatch.setattr(turnfile, "os", full)
    result = await running
    last = json.loads(result.data[-1])["error"]
    assert last["type"] == "storage" and "full" in last["message"], last
    assert await fake.wait_closed() == 1  # LM Studio's request was closed
    chat = json.loads((chats_dir / "demo.json").read_text())  # whole: the question, and the part relayed
    assert [(m["content"], m.get("interrupted")) for m in chat["messages"][-2:]] == [("second", None), ("one two ", True)]
    monkeypatch.setattr(turnfile, "os", os)
    after = await stream(proxy, "/chat", {"name": "demo", "message": {"role": "user", "content": "third"}})
    assert after.status == 200 and after.data[-1] == "[DONE]"
    stored = json.loads((chats_dir / "demo.json").read_text())["messages"]
    assert [m["content"] for m in stored[-2:]] == ["third", "Hello, world!"]
    assert "running_turn" not in json.loads((chats_dir / "demo.json").read_text())
    assert [m["content"] for m in stored].count("one two ") == 1
