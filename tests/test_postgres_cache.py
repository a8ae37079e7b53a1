"""store/postgres/cache.py: an instance keeps the chats it read or wrote, and never shows one
another instance has changed since. Two stores on one database stand for two instances."""

from __future__ import annotations

import pytest

from store import MessageIndexError, StorageFailure
from store.postgres.engine import PostgresStore
from tests.helpers import begin_turn
from tests.postgres import new_chat

QUESTION = {"role": "user", "content": "why?"}
REPLY = {"role": "assistant", "content": "Because.", "finish_reason": "stop"}


@pytest.fixture
def two(postgres_url, io_loop):
    stores = [PostgresStore(postgres_url, sweep_s=0), PostgresStore(postgres_url, sweep_s=0)]
    yield stores
    for store in stores:
        io_loop.run_sync(store.close)


async def versions(pg_conn, stem: str) -> tuple[int, int]:
    cursor = await pg_conn.execute("SELECT id, version FROM chats WHERE stem = %s", (stem,))
    return await cursor.fetchone()


def kept(store: PostgresStore, stem: str) -> tuple[int, int] | None:
    entry = store._cache._entries.get(stem)
    return (entry.chat_id, entry.version) if entry else None


async def a_turn(store: PostgresStore, name: str, number: int) -> None:
    async with store.hold(name):
        await begin_turn(store, name, {"append": {**QUESTION, "content": f"q{number}"}}, {"id": f"t{number}", "started_at": "now"})
        await store.end_turn(name, f"t{number}", {**REPLY, "content": f"a{number}"})


@pytest.mark.gen_test
async def test_what_an_instance_keeps_follows_its_own_turns_and_never_hides_another_instances_change(two, pg_conn):
    mine, other = two
    await mine.add("c", new_chat("q0", "a0"))
    await a_turn(mine, "c", 1)
    assert kept(mine, "c") == await versions(pg_conn, "c")  # its own turn is kept as written
    assert [m["content"] for m in (await mine.get("c"))["messages"]] == ["q0", "a0", "q1", "a1"]
    await other.get("c")
    await other.edit_message("c", 0, "edited by the other")
    await a_turn(other, "c", 2)
    assert kept(mine, "c") != await versions(pg_conn, "c")
    seen = [m["content"] for m in (await mine.get("c"))["messages"]]
    assert seen == ["edited by the other", "a0", "q1", "a1", "q2", "a2"]
    assert (await mine.branches("c"))[0]["index"] == 0  # the other's edit kept the old text aside
    await a_turn(mine, "c", 3)
    assert [m["content"] for m in (await other.get("c"))["messages"]][-2:] == ["q3", "a3"]


@pytest.mark.gen_test
async def test_a_chat_made_again_under_a_kept_name_is_read_anew(two):
    mine, other = two
    await mine.add("c", new_chat("old question"))
    assert (await mine.get("c"))["messages"][0]["content"] == "old question"
    await other.rename("c", "moved")
    await other.add("c", new_chat("new question"))  # its version may be the old one's
    assert (await mine.get("c"))["messages"][0]["content"] == "new question"
    assert (await mine.get("moved"))["messages"][0]["content"] == "old question"


@pytest.mark.gen_test
async def test_a_change_that_fails_leaves_nothing_kept_that_was_not_stored(two, pg_conn):
    mine, _ = two
    await mine.add("c", new_chat("q0", "a0"))
    await mine.get("c")
    before = kept(mine, "c")
    with pytest.raises(MessageIndexError):
        await mine.edit_message("c", 7, "no such message")
    assert kept(mine, "c") == before == await versions(pg_conn, "c")
    async with mine.hold("c"):
        await begin_turn(mine, "c", {"append": QUESTION}, {"id": "t", "started_at": "now"})
        await pg_conn.execute("DELETE FROM leases")  # the hold is lost: the end is refused
        with pytest.raises(StorageFailure):
            await mine.end_turn("c", "t", REPLY)
        assert kept(mine, "c") == await versions(pg_conn, "c")
    assert [m["content"] for m in (await mine.get("c"))["messages"]] == ["q0", "a0", "why?"]


@pytest.mark.gen_test
async def test_a_listing_kept_by_one_instance_shows_every_change_another_makes(two):
    mine, other = two
    await mine.add("a", new_chat("q"))
    assert [entry["name"] for entry in await mine.list_chats()] == ["a"]
    changes = [
        lambda: other.add("b", new_chat("q")),
        lambda: other.rename("b", "c"),
        lambda: other.update_settings("c", {"model": "another"}),
        lambda: other.delete("a"),
    ]
    for change in changes:
        before = await mine.list_chats_json()
        await change()
        assert await mine.list_chats_json() != before
    assert await mine.list_chats() == [{"id": "c", "name": "c", "model": "another"}]
    async with other.hold("c"):
        await begin_turn(other, "c", {"append": QUESTION}, {"id": "t", "started_at": "now"})
        assert (await mine.list_chats())[0]["running"] is True
        await other.end_turn("c", "t", REPLY)
    assert "running" not in (await mine.list_chats())[0]
