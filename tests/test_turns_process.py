"""Turns in real processes: a kill -9 mid-reply loses at most about a second of it, and a
turn run by one process is watched and stopped through another on the same chats."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.fake_lmstudio import MODEL, Reply
from tests.helpers import call, start_server, stop_server, stream, wait_for

HI = {"role": "user", "content": "tell me"}


def seen_content(result) -> str:
    text = []
    for data in result.data:
        if data != "[DONE]" and "choices" in data:
            for choice in json.loads(data)["choices"]:
                text.append(choice.get("delta", {}).get("content") or "")
    return "".join(text)


@pytest.mark.gen_test(timeout=90)
async def test_kill_9_mid_reply_keeps_the_question_and_the_reply_up_to_about_a_second_before(project_root, clean_env, tmp_path, fake):
    fake.script.append(Reply(tokens=[f"w{i} " for i in range(500)], interval=0.02))  # ten seconds of reply
    process, base = await start_server(project_root, clean_env, tmp_path, fake)
    seen: list[tuple[float, str]] = []  # (when, everything relayed by then)

    def note(result) -> bool:
        seen.append((time.monotonic(), seen_content(result)))
        return False

    try:
        assert (await call(base, "POST", "/chat", {"name": "demo", "model": MODEL})).status == 200
        reading = asyncio.ensure_future(stream(base, "/chat", {"name": "demo", "message": HI}, stop=note, timeout=60))
        await wait_for(lambda: seen and seen[-1][1].count(" ") >= 150, timeout=30, what="three seconds of reply")
        killed_at = time.monotonic()
        process.kill()
        await process.wait()
        await asyncio.gather(reading, return_exceptions=True)
    finally:
        await stop_server(process)
    before_kill = [text for when, text in seen if when <= killed_at - 1.5][-1]
    process, base = await start_server(project_root, clean_env, tmp_path, fake)
    try:
        chat = (await call(base, "GET", "/chat?name=demo")).json["chat"]
    finally:
        await stop_server(process)
    question, reply = chat["messages"]
    assert question["content"] == HI["content"]
    assert reply["interrupted"] is True and reply["finish_reason"] is None
    assert seen[-1][1].startswith(reply["content"])  # what was relayed, never more
    assert len(reply["content"]) >= len(before_kill) > 0  # at most about a second is lost
    assert "running_turn" not in chat


@pytest.mark.gen_test(timeout=90)
@pytest.mark.both_engines
async def test_a_turn_run_by_one_process_is_watched_and_stopped_through_another(project_root, clean_env, tmp_path, fake, instance_settings):
    release = asyncio.Event()
    fake.script.append(Reply(tokens=[f"t{i} " for i in range(6)], hold=release, hold_at=3))
    settings_a = instance_settings()
    first, base_a = await start_server(project_root, clean_env, tmp_path, fake, **settings_a)
    second, base_b = await start_server(project_root, clean_env, tmp_path, fake, **instance_settings())
    try:
        assert (await call(base_a, "POST", "/chat", {"name": "demo", "model": MODEL})).status == 200
        streaming = asyncio.Event()  # the first event came: the question is stored, the chat marked
        starter = asyncio.ensure_future(
            stream(base_a, "/chat", {"name": "demo", "message": HI}, timeout=30, stop=lambda r: r.events and streaming.set())
        )
        await asyncio.wait_for(streaming.wait(), 10)
        await fake.wait_held()
        listing = (await call(base_b, "GET", "/chats")).json["chats"]
        assert [chat.get("running") for chat in listing] == [True]
        chat = (await call(base_b, "GET", "/chat?name=demo")).json["chat"]
        assert chat["running_turn"]["owner"] != base_b
        if "server__advertise_url" in settings_a:  # reached where it said, not on a port of its own
            assert chat["running_turn"]["owner"] == json.loads(settings_a["server__advertise_url"])
        watcher = await stream(base_b, "/chat/stream?name=demo&after=1", None, method="GET", stop=lambda r: len(r.events) >= 2)
        assert [event.id for event in watcher.events] == ["2", "3"]  # events 2 and 3, from the process that runs it
        attached = asyncio.Event()
        watching = asyncio.ensure_future(
            stream(base_b, "/chat/stream?name=demo", None, method="GET", timeout=30, stop=lambda r: attached.set())
        )
        await asyncio.wait_for(attached.wait(), 10)  # its snapshot came: it watches
        stopped = await call(base_b, "POST", "/chat/stop", {"name": "demo"})
        assert stopped.status == 200, stopped.body
        for result in (await starter, await watching):
            assert json.loads(result.data[-1])["error"]["type"] == "stopped"
        reply = (await call(base_b, "GET", "/chat?name=demo")).json["chat"]["messages"][-1]
        assert reply["content"] == "t0 t1 t2 " and reply["interrupted"] is True
        assert (await call(base_b, "POST", "/chat/stop", {"name": "demo"})).status == 409
    finally:
        release.set()
        await stop_server(first)
        await stop_server(second)
