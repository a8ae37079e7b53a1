"""PostgreSQL going away under a running chatproxy, and coming back: chat routes answer 503
with Retry-After, /health says the store is down, a stream already running finishes and its
reply is stored once the database is back (or, if it stays away, the stream's last word
says the reply could not be stored), and its own sweep does not take that turn over, though
its lease lapsed meanwhile. The server here is the module's own: its tests stop it.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from store.postgres import engine
from tests.fake_lmstudio import Reply
from tests.helpers import assert_error, call, create_chat, eventually, stored_messages, stream, wait_for

HI = {"role": "user", "content": "hi"}


@pytest.fixture
def store_url(own_postgres_server):
    name = own_postgres_server.new_database()
    yield own_postgres_server.url(name)
    if not own_postgres_server.is_running():
        own_postgres_server.resume()
    own_postgres_server.drop_database(name)


async def answers_again(proxy) -> bool:
    return (await call(proxy, "GET", "/chats")).status == 200


async def lease_expires_in(conn) -> float:
    """Seconds until the lease of chat 'demo' expires (negative: lapsed)."""
    cursor = await conn.execute("SELECT extract(epoch FROM expires_at - now()) FROM leases WHERE stem = 'demo'")
    return float((await cursor.fetchone())[0])


async def mid_turn(proxy, fake, tokens: list[str]) -> tuple[asyncio.Event, asyncio.Future, list]:
    """A turn whose start is stored, LM Studio holding the rest of its reply: the event that
    lets it go on, the reading of the stream, and its chunks so far."""
    release = asyncio.Event()
    fake.script.append(Reply(tokens=tokens, hold=release, hold_at=1))
    await create_chat(proxy, "demo")
    received: list = []
    reading = asyncio.ensure_future(stream(proxy, "/chat", {"name": "demo", "message": HI}, stop=lambda r: received.append(r) and False, timeout=60))
    await wait_for(lambda: received and received[-1].content() == tokens[0], what="the first word (the turn's start is stored)")
    return release, reading, received


async def away_mid_turn(proxy, server, fake, tokens: list[str]) -> tuple[asyncio.Future, list]:
    """A turn whose start is stored, then the database stops and LM Studio sends the rest:
    the reading of the stream, and its chunks so far."""
    release, reading, received = await mid_turn(proxy, fake, tokens)
    server.halt()
    release.set()
    return reading, received


@pytest.mark.gen_test(timeout=60)
async def test_chat_routes_answer_503_with_retry_after_and_health_says_why_until_it_is_back(proxy, own_postgres_server, fake):
    await create_chat(proxy, "demo")
    own_postgres_server.halt()
    for method, path, body in (
        ("GET", "/chats", None), ("GET", "/chat?name=demo", None), ("POST", "/chat", {"name": "new", "model": "m"}),
        ("PUT", "/chat", {"name": "demo", "message": HI}), ("GET", "/chats?q=x", None),
    ):
        response = await call(proxy, method, path, body)
        assert "PostgreSQL" in assert_error(response, 503), (method, path)
        assert response.headers["Retry-After"] == "5"
    health = await call(proxy, "GET", "/health")
    assert health.status == 503
    assert health.json["store"]["engine"] == "postgresql" and health.json["store"]["writable"] is False
    assert "PostgreSQL" in health.json["store"]["error"]
    assert len(fake.requests) == 0  # a turn that cannot begin asks nothing
    own_postgres_server.resume()
    await eventually(lambda: answers_again(proxy), what="chatproxy to reconnect (no restart)", timeout=30)
    assert (await call(proxy, "GET", "/health")).json["store"] == {"engine": "postgresql", "writable": True}
    assert (await stream(proxy, "/chat", {"name": "demo", "message": HI})).data[-1] == "[DONE]"


@pytest.mark.gen_test(timeout=60)
async def test_health_answers_in_time_while_the_database_takes_queries_and_never_answers(proxy, own_postgres_server):
    await create_chat(proxy, "demo")
    own_postgres_server.freeze()
    try:
        health = await asyncio.wait_for(call(proxy, "GET", "/health"), 10)
        assert health.status == 503 and health.json["store"]["writable"] is False
        assert "did not answer" in health.json["store"]["error"]
    finally:
        own_postgres_server.freeze(False)
    await eventually(lambda: answers_again(proxy), what="chatproxy to answer again", timeout=30)
    assert (await call(proxy, "GET", "/health")).json["store"] == {"engine": "postgresql", "writable": True}


@pytest.mark.gen_test(timeout=90)
async def test_a_running_stream_finishes_and_its_reply_is_stored_when_the_database_is_back(proxy, own_postgres_server, fake):
    reading, received = await away_mid_turn(proxy, own_postgres_server, fake, ["one ", "two ", "three"])
    await wait_for(lambda: received and received[-1].content() == "one two three", timeout=20, what="the whole reply relayed")
    assert "[DONE]" not in received[-1].data  # held back until the reply is stored
    own_postgres_server.resume()
    result = await asyncio.wait_for(reading, 60)
    assert result.data[-1] == "[DONE]"
    chat = (await call(proxy, "GET", "/chat?name=demo")).json["chat"]
    assert [m["content"] for m in chat["messages"]] == ["hi", "one two three"]
    assert "running_turn" not in chat


@pytest.mark.gen_test(timeout=60)
async def test_a_stream_whose_reply_cannot_be_stored_in_time_ends_with_the_storage_error(proxy, own_postgres_server, fake, monkeypatch):
    monkeypatch.setattr(engine, "COMMIT_RETRY_S", 1.0)
    reading, _ = await away_mid_turn(proxy, own_postgres_server, fake, ["one ", "two"])
    result = await reading
    assert result.content() == "one two"
    last = json.loads(result.data[-1])["error"]
    assert last["type"] == "storage" and "PostgreSQL" in last["message"]


@pytest.mark.gen_test(timeout=60)
async def test_a_turn_whose_lease_lapsed_while_the_database_was_away_is_not_taken_over_by_its_own_sweep(proxy, services, own_postgres_server, fake, stored):
    release, reading, _ = await mid_turn(proxy, fake, ["one ", "two ", "three"])
    own_postgres_server.halt()
    own_postgres_server.resume()
    await eventually(lambda: answers_again(proxy), what="chatproxy to reconnect", timeout=30)
    conn = await stored.connection()
    await conn.execute("UPDATE leases SET expires_at = now()")  # as an outage longer than the lease leaves it
    assert await services.store.recover() == 0  # what the sweep does: the turn still runs here
    assert await lease_expires_in(conn) > engine.LEASE_S - 5  # renewed instead, at once
    release.set()
    result = await asyncio.wait_for(reading, 30)
    assert result.content() == "one two three" and result.data[-1] == "[DONE]"
    chat = (await call(proxy, "GET", "/chat?name=demo")).json["chat"]
    assert [m["content"] for m in chat["messages"]] == ["hi", "one two three"] and "running_turn" not in chat
    fake.script.append(Reply(tokens=["again"]))
    assert (await stream(proxy, "/chat", {"name": "demo", "message": {"role": "user", "content": "more"}})).data[-1] == "[DONE]"
    assert [m["content"] for m in await stored_messages(proxy)] == ["hi", "one two three", "more", "again"]
