"""Turns as server-owned jobs: ids, attach and re-attach, detach, stop, several watchers,
a watcher that stops reading. Through real sockets against the fake LM Studio."""

from __future__ import annotations

import asyncio
import json

import pytest

from handlers import watch
from tests.fake_lmstudio import Reply
from tests.helpers import assert_error, call, stored_reply, stream, turn, wait_for
from tests.helpers import create_chat as create

pytestmark = pytest.mark.both_engines

HI = {"role": "user", "content": "hi"}
TOKENS = [f"part{i} " for i in range(8)]


def ids(result) -> list[int]:
    return [int(event.id) for event in result.events]


def content(result) -> str:
    """The reply a client builds from the events it got (a snapshot is one of them)."""
    text = []
    for data in result.data:
        if data == "[DONE]":
            continue
        for choice in json.loads(data).get("choices") or []:
            text.append(choice.get("delta", {}).get("content") or "")
    return "".join(text)


def after_events(count: int):
    """A stream() stop condition: hang up once ``count`` events have arrived."""
    return lambda result: len(result.events) >= count


async def attach(proxy, name="demo", after: int | None = None, last_event_id: int | None = None, **kwargs):
    query = f"/chat/stream?name={name}" + (f"&after={after}" if after is not None else "")
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else None
    return await stream(proxy, query, None, method="GET", headers=headers, **kwargs)


async def watching(services, count: int, name: str = "demo") -> None:
    """Wait until the chat's turn has ``count`` watchers (server-side state)."""
    await wait_for(lambda: services.turns.current(name) is not None and services.turns.current(name).log.watchers == count, what=f"{count} watcher(s)")


async def relayed(services, count: int, name: str = "demo") -> None:
    """Wait until the chat's turn has taken ``count`` events from LM Studio (server-side)."""
    await wait_for(lambda: services.turns.current(name) is not None and services.turns.current(name).log.seq >= count, what=f"{count} event(s)")


async def held_turn(proxy, fake, services, hold_at: int = 4, **body):
    """A turn whose reply stops after ``hold_at`` tokens (all of them relayed) until the
    returned event is set; the starter's result comes from the returned task."""
    release = asyncio.Event()
    fake.script.append(Reply(tokens=TOKENS, hold=release, hold_at=hold_at))
    await create(proxy)
    held = fake.held
    starter = asyncio.ensure_future(stream(proxy, "/chat", {"name": "demo", "message": HI, **body}))
    await fake.wait_held(held + 1)
    await relayed(services, hold_at)
    return release, starter


@pytest.mark.gen_test
async def test_every_event_of_a_turn_carries_an_increasing_id(proxy, fake):
    fake.script.append(Reply(tokens=TOKENS, usage=True))
    await create(proxy)
    result = await turn(proxy)
    assert result.data[-1] == "[DONE]"
    assert ids(result) == list(range(1, len(result.events) + 1))
    assert content(result) == (await stored_reply(proxy))["content"] == "".join(TOKENS)


@pytest.mark.gen_test
async def test_a_detached_turn_runs_on_and_a_client_that_comes_back_joins_into_the_stored_reply(proxy, fake, services):
    release = asyncio.Event()
    fake.script.append(Reply(tokens=TOKENS, hold=release, hold_at=4))
    await create(proxy)
    body = {"name": "demo", "message": HI, "detach": True}
    first = await stream(proxy, "/chat", body, stop=after_events(4))  # then the client leaves
    assert ids(first) == [1, 2, 3, 4]
    await watching(services, 0)  # the server has seen it go
    back = asyncio.ensure_future(attach(proxy, last_event_id=4))
    await watching(services, 1)  # released only once it is back, or the turn may end first (204)
    release.set()
    rest = await back
    assert rest.status == 200
    assert ids(rest) == list(range(5, 5 + len(rest.events)))
    assert rest.data[-1] == "[DONE]"
    reply = await stored_reply(proxy)
    assert reply["content"] == "".join(TOKENS) and "interrupted" not in reply  # whole: never stopped
    assert content(first) + content(rest) == reply["content"]
    assert not fake.closed_early


@pytest.mark.gen_test
async def test_reattaching_with_after_or_last_event_id_misses_and_repeats_nothing(proxy, fake, services):
    release, starter = await held_turn(proxy, fake, services, detach=True)
    seen = await attach(proxy, stop=after_events(1))  # a snapshot, then it hangs up
    assert [e.id for e in seen.events] == ["4"]
    await watching(services, 1)  # the starter alone
    by_after = asyncio.ensure_future(attach(proxy, after=2))
    by_header = asyncio.ensure_future(attach(proxy, last_event_id=2))
    await watching(services, 3)
    release.set()
    first = await starter
    for other in (await by_after, await by_header):
        assert other.chunks and other.events[0].id == "3"
        assert [e.data for e in other.events] == first.data[2:]
    assert content(first) == (await stored_reply(proxy))["content"]


@pytest.mark.gen_test
async def test_attaching_starts_with_a_snapshot_of_everything_so_far_then_the_live_events(proxy, fake, services):
    fake.script.append(Reply(tokens=TOKENS, reasoning=["think ", "hard"], hold=(release := asyncio.Event()), hold_at=5))
    await create(proxy)
    starter = asyncio.ensure_future(turn(proxy))
    await fake.wait_held()
    await relayed(services, 5)
    watcher = asyncio.ensure_future(attach(proxy))
    await watching(services, 2)
    release.set()
    first, second = await starter, await watcher
    snapshot = json.loads(second.events[0].data)
    assert snapshot["snapshot"] is True
    assert snapshot["choices"][0]["delta"]["reasoning_content"] == "think hard"
    assert int(second.events[0].id) == 5  # two reasoning events, three tokens
    assert [e.data for e in second.events[1:]] == first.data[5:]
    assert content(second) == content(first) == (await stored_reply(proxy))["content"]


@pytest.mark.gen_test
async def test_two_watchers_get_the_same_events_and_last_word(proxy, fake, services):
    release, starter = await held_turn(proxy, fake, services)
    watchers = [asyncio.ensure_future(attach(proxy, after=0)) for _ in range(2)]
    await watching(services, 3)
    release.set()
    first = await starter
    for watcher in watchers:
        result = await watcher
        assert result.data == first.data and ids(result) == ids(first)


@pytest.mark.gen_test
async def test_the_starter_leaving_stops_an_undetached_turn_and_keeps_the_part_written(proxy, fake, services):
    release, starter = await held_turn(proxy, fake, services)
    watcher = asyncio.ensure_future(attach(proxy, after=0))
    await watching(services, 2)
    starter.cancel()
    assert await fake.wait_closed() == 1  # LM Studio's request closed
    result = await watcher
    assert json.loads(result.data[-1])["error"]["type"] == "client_gone"
    reply = await stored_reply(proxy)
    assert reply["content"] == "".join(TOKENS[:4]) and reply["interrupted"] is True
    release.set()


@pytest.mark.gen_test
@pytest.mark.config(on_disconnect="continue")
async def test_on_disconnect_continue_lets_a_turn_run_on_when_its_request_says_nothing(proxy, fake, services):
    release, starter = await held_turn(proxy, fake, services)
    starter.cancel()
    await watching(services, 0)
    watcher = asyncio.ensure_future(attach(proxy, after=4))
    await watching(services, 1)
    release.set()
    assert (await watcher).data[-1] == "[DONE]"
    assert (await stored_reply(proxy))["content"] == "".join(TOKENS)


@pytest.mark.gen_test
async def test_stop_ends_the_turn_stores_the_part_written_and_every_watcher_gets_the_last_word(proxy, fake, services):
    release, starter = await held_turn(proxy, fake, services, detach=True)
    watcher = asyncio.ensure_future(attach(proxy))
    await watching(services, 2)
    answer = await call(proxy, "POST", "/chat/stop", {"name": "demo"})
    assert answer.status == 200 and answer.json["status"] == "success"
    assert await fake.wait_closed(timeout=1) == 1  # LM Studio's request closed within 1 s
    reply = await stored_reply(proxy)  # stored before the answer
    assert reply["content"] == "".join(TOKENS[:4]) and reply["interrupted"] is True
    for result in (await starter, await watcher):
        assert json.loads(result.data[-1])["error"]["type"] == "stopped"
    assert_error(await call(proxy, "POST", "/chat/stop", {"name": "demo"}), 409)
    release.set()


@pytest.mark.gen_test
async def test_no_running_turn_is_204_on_attach_and_409_on_stop_unknown_chat_404_bad_name_400(proxy):
    await create(proxy)
    assert (await attach(proxy)).status == 204
    assert_error(await call(proxy, "POST", "/chat/stop", {"name": "demo"}), 409)
    assert_error(await call(proxy, "GET", "/chat/stream?name=nope"), 404)
    assert_error(await call(proxy, "POST", "/chat/stop", {"name": "nope"}), 404)
    long_name = "x" * 201
    assert_error(await call(proxy, "GET", f"/chat/stream?name={long_name}"), 400)
    assert_error(await call(proxy, "POST", "/chat/stop", {"name": long_name}), 400)


@pytest.mark.gen_test
async def test_bad_after_last_event_id_and_detach_are_400(proxy):
    await create(proxy)
    for query in ("after=x", "after=-1", "after=1.5"):
        assert "after" in assert_error(await call(proxy, "GET", f"/chat/stream?name=demo&{query}"), 400)
    message = assert_error(await call(proxy, "GET", "/chat/stream?name=demo", headers={"Last-Event-ID": "abc"}), 400)
    assert "Last-Event-ID" in message
    for detach in ("yes", 1, None):
        body = {"name": "demo", "message": HI, "detach": detach}
        assert "detach" in assert_error(await call(proxy, "PUT", "/chat", body), 400)
    assert (await call(proxy, "GET", "/chat?name=demo")).json["chat"]["messages"] == []


@pytest.mark.gen_test(timeout=60)
async def test_a_watcher_that_stops_reading_is_cut_off_without_holding_the_turn_back(proxy, fake, monkeypatch):
    monkeypatch.setattr(watch, "LAG_LIMIT", 1024 * 1024)
    # ~8 MB of events at a pace a reading client keeps up with: more than the stuck
    # client's socket buffers and the lag limit together.
    big = ["x" * 8192] * 1000
    release = asyncio.Event()
    fake.script.append(Reply(tokens=big, hold=release, hold_at=1, interval=0.001))
    await create(proxy)
    starter = asyncio.ensure_future(turn(proxy, timeout=30))
    await fake.wait_held()
    stuck = await stuck_watcher(proxy)
    release.set()
    result = await asyncio.wait_for(starter, 30)
    assert result.data[-1] == "[DONE]" and content(result) == "".join(big)
    assert await asyncio.wait_for(stuck.read_until_close(), 10) is not None  # cut off: closed
    assert (await stored_reply(proxy))["content"] == "".join(big)


async def stuck_watcher(proxy):
    """A client that attaches and then never reads (a tiny receive buffer)."""
    import socket
    from urllib.parse import urlsplit

    from tornado.iostream import IOStream

    url = urlsplit(proxy)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    connection = IOStream(sock)
    await connection.connect((url.hostname, url.port))
    connection.write(f"GET /chat/stream?name=demo HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode())
    await connection.read_until(b"\r\n\r\n")
    return connection
