"""Storage faults: each step of a write fails in turn, a full disk, a read-only folder. The
old file stays whole, the answer names the cause, the next request works once it is gone."""

from __future__ import annotations

import asyncio
import errno
import json
import sys

import pytest

from chatproxy import make_app
from store import ChatStore
from tests.fake_lmstudio import Reply
from tests.helpers import assert_error, call, serve_app, stream, wait_for

HI = {"role": "user", "content": "hi"}
STEPS = ["temp_create", "write", "fsync", "rename", "folder_fsync", "lock_open"]


@pytest.fixture
def plan(tmp_path):
    path = tmp_path / "fault-plan.json"

    def set_fault(step: str | None, number: int = errno.EIO, delay: float | None = None) -> None:
        if step is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(json.dumps({"step": step, "delay": delay} if delay else {"step": step, "errno": number}))

    set_fault.path = path
    return set_fault


@pytest.fixture
def faulty_proxy(io_loop, request, services, config, plan):
    services.store = ChatStore(
        config.chats_dir, worker_command=[sys.executable, "-m", "tests.faulty_worker", str(plan.path)]
    )
    services.store.open()
    return serve_app(io_loop, request, make_app(services))


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
async def test_a_failed_turn_write_relays_nothing_and_keeps_the_file(faulty_proxy, chats_dir, fake, plan, step, number):
    old = await a_chat_with_one_turn(faulty_proxy, chats_dir)
    generating = asyncio.Event()  # still generating when the write fails: never released
    fake.script.append(Reply(hold=generating))
    plan(step, number)
    result = await stream(faulty_proxy, "/chat", {"name": "demo", "message": {"role": "user", "content": "second"}})
    status, words = expected(step, number)
    message = assert_error(result, status)
    assert words in message and "demo" in message, message
    now = (chats_dir / "demo.json").read_bytes()
    if step == "folder_fsync":
        # Renamed, then the fsync of the folder failed: the new file is whole.
        assert json.loads(now)["messages"][-1] == {"role": "user", "content": "second"}
    else:
        assert now == old
    assert [p.name for p in chats_dir.iterdir() if p.name.endswith(".tmp")] == []
    # LM Studio was asked while the write ran: that request is closed, so it stops generating.
    await fake.wait_idle()
    assert fake.closed_early == len(fake.requests) - 1
    fake.script.clear()  # the held reply, if the aborted request never reached the fake
    plan(None)
    after = await stream(faulty_proxy, "/chat", {"name": "demo", "message": {"role": "user", "content": "third"}})
    assert after.status == 200 and after.content() == "Hello, world!"
    stored = json.loads((chats_dir / "demo.json").read_text())["messages"]
    assert [m["content"] for m in stored[-2:]] == ["third", "Hello, world!"]


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("step,number", CASES)
async def test_a_failed_create_leaves_no_chat_and_the_next_one_works(faulty_proxy, chats_dir, plan, step, number):
    assert (await call(faulty_proxy, "GET", "/chats")).status == 200
    plan(step, number)
    response = await call(faulty_proxy, "POST", "/chat", {"name": "new", "model": "m"})
    status, words = expected(step, number)
    assert words in assert_error(response, status)
    if step != "folder_fsync":
        assert not (chats_dir / "new.json").exists()
    plan(None)
    retry = await call(faulty_proxy, "POST", "/chat", {"name": "other", "model": "m"})
    assert retry.status == 200, retry.body


@pytest.mark.gen_test(timeout=20)
async def test_a_reply_that_cannot_be_stored_ends_with_an_error_event_not_done(faulty_proxy, chats_dir, fake, plan, caplog):
    old = await a_chat_with_one_turn(faulty_proxy, chats_dir)

    def fail_when_the_reply_arrives(result):
        if result.content() and not plan.path.exists():
            plan("write", errno.ENOSPC)
        return False

    fake.script.append(Reply(tokens=["a", "b", "c"], interval=0.05))
    result = await stream(faulty_proxy, "/chat", {"name": "demo", "message": {"role": "user", "content": "q"}}, stop=fail_when_the_reply_arrives)
    assert result.content() == "abc" and "[DONE]" not in result.data
    error = json.loads(result.data[-1])["error"]
    assert error["type"] == "storage" and "could not be stored" in error["message"] and "Storage is full" in error["message"]
    await wait_for(lambda: "could not be stored" in caplog.text, what="the failed commit to be logged")
    stored = json.loads((chats_dir / "demo.json").read_text())
    assert json.loads(old)["messages"] == stored["messages"][:-1]
    assert stored["messages"][-1]["content"] == "q"


@pytest.mark.gen_test(timeout=20)
async def test_lm_studio_is_asked_during_the_write_and_nothing_is_relayed_before_it_is_durable(faulty_proxy, chats_dir, fake, plan):
    """The write is made slow (its fsync takes 0.5 s more): LM Studio gets the request while
    the file does not yet hold the message, and the client's first event comes only once it does."""
    await a_chat_with_one_turn(faulty_proxy, chats_dir)
    on_disk = lambda: json.loads((chats_dir / "demo.json").read_text())["messages"][-1]["content"]  # noqa: E731
    when_asked, at_first_event = [], []
    fake.on_request = lambda body: when_asked.append(on_disk())

    def look_at_the_file(result):
        if result.chunks and not at_first_event:
            at_first_event.append(on_disk())
        return False

    plan("fsync", delay=0.5)
    result = await stream(faulty_proxy, "/chat", {"name": "demo", "message": {"role": "user", "content": "second"}}, stop=look_at_the_file)
    plan(None)
    assert result.status == 200 and result.content() == "Hello, world!"
    assert when_asked == ["Hello, world!"]  # the previous reply: the new message was not on disk yet
    assert at_first_event == ["second"]
