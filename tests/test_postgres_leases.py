"""store/postgres/turns.py: leases that hold a chat across instances, and a turn's begin,
journal, end and recovery, against a real PostgreSQL. A lease taken for 0 seconds has
expired at once: no test waits for a clock."""

from __future__ import annotations

import asyncio
import copy

import pytest

from store import ChatNotFound, StoreError, history, running
from store.postgres import chats, turns
from store.postgres.connection import connect
from tests.postgres import journal_turn, new_chat, without_stamp

USER = {"role": "user", "content": "question"}
LONG = 60.0


def turn_of(number: int) -> dict:
    return {"id": f"turn-{number}", "started_at": "2026-01-01T00:00:00+00:00"}


def contents(chat: dict) -> list[str]:
    return [message["content"] for message in chat["messages"]]


@pytest.mark.gen_test
async def test_one_holder_at_a_time_and_each_taking_has_a_new_epoch(pg_conn):
    first = await turns.take_lease(pg_conn, "c", "instance A", LONG)
    assert first is not None
    assert await turns.take_lease(pg_conn, "c", "instance B", LONG) is None
    assert await turns.take_lease(pg_conn, "another chat", "instance B", LONG) is not None
    assert await turns.renew_leases(pg_conn, [first.epoch], LONG) == {first.epoch}
    await turns.release_lease(pg_conn, first)
    second = await turns.take_lease(pg_conn, "c", "instance B", LONG)
    assert second is not None and second.epoch > first.epoch
    assert not await turns.renew_leases(pg_conn, [first.epoch], LONG)


@pytest.mark.gen_test
async def test_instances_taking_one_chat_at_once_get_one_lease(postgres_url):
    connections = [await connect(postgres_url, autocommit=True) for _ in range(4)]
    try:
        leases = await asyncio.gather(*(turns.take_lease(conn, "c", f"instance {n}", LONG) for n, conn in enumerate(connections)))
    finally:
        for conn in connections:
            await conn.close()
    assert sum(lease is not None for lease in leases) == 1


@pytest.mark.gen_test
async def test_a_turn_begins_shows_as_running_and_ends_with_its_reply(pg_conn):
    await chats.create(pg_conn, "c", new_chat())
    lease = await turns.take_lease(pg_conn, "c", "A", LONG)
    started = await turns.begin_turn(pg_conn, lease, "c", {"append": USER}, turn_of(1))
    assert started["messages"] == [USER] and started["running_turn"] == turn_of(1)
    assert await chats.get(pg_conn, "c") == started
    assert (await chats.listing(pg_conn))[0]["running"] is True
    assert await journal_turn(pg_conn, "c", "turn-1", {"role": "assistant", "content": "so f"})
    await turns.end_turn(pg_conn, lease, "c", "turn-1", {"role": "assistant", "content": "so far, whole"})
    await turns.release_lease(pg_conn, lease)
    chat = await chats.get(pg_conn, "c")
    assert contents(chat) == ["question", "so far, whole"] and "running_turn" not in chat
    assert "running" not in (await chats.listing(pg_conn))[0]
    assert not await journal_turn(pg_conn, "c", "turn-1", {"content": "late"})


@pytest.mark.gen_test
async def test_regenerate_and_rerun_plans_follow_the_folder_rules(pg_conn):
    expected = new_chat("q1", "a1", "q2", "a2")
    await chats.create(pg_conn, "c", copy.deepcopy(expected))
    for number, plan in enumerate(({"regenerate": True}, {"rerun": [0, "q1 again"]})):
        lease = await turns.take_lease(pg_conn, "c", "A", LONG)
        started = await turns.begin_turn(pg_conn, lease, "c", plan, turn_of(number))
        running.begin(expected, plan, turn_of(number))
        assert without_stamp(started) == without_stamp(expected)
        await turns.end_turn(pg_conn, lease, "c", f"turn-{number}", None)
        running.end(expected, f"turn-{number}", None)  # no reply: the question is marked unanswered
        await turns.release_lease(pg_conn, lease)
    assert without_stamp(await chats.get(pg_conn, "c")) == without_stamp(expected)
    assert len(history.branches(expected)) == 1


@pytest.mark.gen_test
async def test_a_stale_holder_is_fenced_out_and_its_turn_finished_from_the_journal(pg_conn):
    await chats.create(pg_conn, "c", new_chat())
    stale = await turns.take_lease(pg_conn, "c", "A", 0)  # A stops renewing: expired at once
    await turns.begin_turn(pg_conn, stale, "c", {"append": USER}, turn_of(1))
    await journal_turn(pg_conn, "c", "turn-1", {"role": "assistant", "content": "partial"})
    assert "running_turn" not in await chats.get(pg_conn, "c")  # its lease is no longer live
    taker = await turns.take_lease(pg_conn, "c", "B", LONG)
    assert taker is not None and taker.epoch > stale.epoch
    finished = await chats.get(pg_conn, "c")
    assert finished["messages"] == [USER, {"role": "assistant", "content": "partial", "finish_reason": None, "interrupted": True}]
    with pytest.raises(turns.LeaseLost):
        await turns.end_turn(pg_conn, stale, "c", "turn-1", {"role": "assistant", "content": "too late"})
    with pytest.raises(turns.LeaseLost):
        await turns.begin_turn(pg_conn, stale, "c", {"append": USER}, turn_of(2))
    assert not await journal_turn(pg_conn, "c", "turn-1", {"content": "too late"})
    assert not await turns.renew_leases(pg_conn, [stale.epoch], LONG)
    assert await chats.get(pg_conn, "c") == finished
    started = await turns.begin_turn(pg_conn, taker, "c", {"append": USER}, turn_of(3))  # takes new turns
    assert contents(started) == ["question", "partial", "question"]


@pytest.mark.gen_test
async def test_recover_finishes_turns_of_dead_instances_and_leaves_live_ones(pg_conn):
    for name in ("dead", "dead before a word", "alive"):
        await chats.create(pg_conn, name, new_chat())
    dead = await turns.take_lease(pg_conn, "dead", "A", 0)
    await turns.begin_turn(pg_conn, dead, "dead", {"append": USER}, turn_of(1))
    await journal_turn(pg_conn, "dead", "turn-1", {"role": "assistant", "content": "half"})
    silent = await turns.take_lease(pg_conn, "dead before a word", "A", 0)
    await turns.begin_turn(pg_conn, silent, "dead before a word", {"append": USER}, turn_of(2))
    alive = await turns.take_lease(pg_conn, "alive", "C", LONG)
    running = await turns.begin_turn(pg_conn, alive, "alive", {"append": USER}, turn_of(3))
    assert sorted(await turns.recover(pg_conn, "B", LONG)) == ["dead", "dead before a word"]
    assert contents(await chats.get(pg_conn, "dead")) == ["question", "half"]
    assert (await chats.get(pg_conn, "dead"))["messages"][1]["interrupted"] is True
    assert (await chats.get(pg_conn, "dead before a word"))["messages"] == [{**USER, "unanswered": True}]
    assert await chats.get(pg_conn, "alive") == running
    assert await turns.recover(pg_conn, "B", LONG) == []
    assert await turns.take_lease(pg_conn, "dead", "B", LONG) is not None  # recover let go of it


@pytest.mark.gen_test
async def test_recover_renews_the_callers_running_turns_and_finishes_the_rest_whoever_owned_them(pg_conn):
    for name in ("running here", "gone here", "elsewhere"):
        await chats.create(pg_conn, name, new_chat())
    running = await turns.take_lease(pg_conn, "running here", "A", 0)  # lapsed: renewals failed
    await turns.begin_turn(pg_conn, running, "running here", {"append": USER}, turn_of(1))
    gone = await turns.take_lease(pg_conn, "gone here", "A", 0)  # A's too, but no longer running in A
    await turns.begin_turn(pg_conn, gone, "gone here", {"append": USER}, turn_of(2))
    elsewhere = await turns.take_lease(pg_conn, "elsewhere", "C", 0)  # an epoch A runs is only A's own
    await turns.begin_turn(pg_conn, elsewhere, "elsewhere", {"append": USER}, turn_of(3))
    assert sorted(await turns.recover(pg_conn, "A", LONG, [running.epoch, elsewhere.epoch])) == ["elsewhere", "gone here"]
    cursor = await pg_conn.execute("SELECT expires_at > now() + interval '50 s' FROM leases WHERE epoch = %s", (running.epoch,))
    assert await cursor.fetchone() == (True,)  # renewed for A, as its missed renewal would have
    with pytest.raises(turns.LeaseLost):
        await turns.end_turn(pg_conn, elsewhere, "elsewhere", "turn-3", {"role": "assistant", "content": "late"})
    await pg_conn.execute("UPDATE leases SET expires_at = now()")  # lapsed again: another instance may take it
    assert await turns.recover(pg_conn, "B", LONG, [running.epoch]) == ["running here"]
    with pytest.raises(turns.LeaseLost):
        await turns.end_turn(pg_conn, running, "running here", "turn-1", {"role": "assistant", "content": "late"})
    assert contents(await chats.get(pg_conn, "running here")) == ["question"]


@pytest.mark.gen_test
async def test_a_chat_deleted_during_its_turn(pg_conn):
    await chats.create(pg_conn, "c", new_chat())
    lease = await turns.take_lease(pg_conn, "c", "A", LONG)
    await turns.begin_turn(pg_conn, lease, "c", {"append": USER}, turn_of(1))
    await chats.delete(pg_conn, "c")
    assert not await journal_turn(pg_conn, "c", "turn-1", {"content": "x"})
    with pytest.raises(ChatNotFound):
        await turns.end_turn(pg_conn, lease, "c", "turn-1", {"role": "assistant", "content": "x"})
    with pytest.raises(ChatNotFound):
        await turns.begin_turn(pg_conn, lease, "c", {"append": USER}, turn_of(2))


@pytest.mark.gen_test
async def test_a_refused_plan_changes_nothing(pg_conn):
    await chats.create(pg_conn, "c", new_chat("q1", "a1"))
    before = await chats.get(pg_conn, "c")
    lease = await turns.take_lease(pg_conn, "c", "A", LONG)
    for plan in ({"rerun": [1, "x"]}, {"rerun": [5, "x"]}):
        with pytest.raises(StoreError):
            await turns.begin_turn(pg_conn, lease, "c", copy.deepcopy(plan), turn_of(1))
    assert await chats.get(pg_conn, "c") == before
