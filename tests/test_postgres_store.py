"""PostgresStore (store/postgres/engine.py): holding chats across instances through leases,
and what an instance that stops renewing them leaves behind.

Two stores on one database stand for two instances. An instance "dies" by ceasing to renew
its leases without letting go (its renewals stopped, as a kill stops them); the leases
here last a second, so their expiry is waited for as a condition, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from store.postgres import leases
from store.postgres.engine import PostgresStore
from tests.helpers import begin_turn, eventually, wait_for

QUESTION = {"role": "user", "content": "why?"}
PARTIAL = {"role": "assistant", "content": "Because", "finish_reason": None}
WHOLE = {"role": "assistant", "content": "Because it is.", "finish_reason": "stop"}
SHORT_LEASE = {"lease_s": 1.0, "renew_s": 0.2}


@pytest.fixture
def make_store(postgres_url, io_loop):
    made = []

    def make(**options) -> PostgresStore:
        store = PostgresStore(postgres_url, sweep_s=0, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        io_loop.run_sync(store.close)


async def lease_expiry(store: PostgresStore, name: str):
    async with store._connection() as conn:
        cursor = await conn.execute("SELECT expires_at FROM leases WHERE stem = %s", (name,))
        row = await cursor.fetchone()
    return row[0] if row else None


async def died_mid_turn(store: PostgresStore, name: str = "demo") -> None:
    """A turn begun and journaled, then its instance stops renewing (a kill): it never lets go."""
    lease = await store._leases.take(name)
    store._leases_held[lease.stem] = lease  # held as hold() holds it, never to be let go
    await begin_turn(store, name, {"append": QUESTION}, {"id": "t1", "started_at": "now"})
    await store.journal_turn(name, "t1", PARTIAL)
    await store._leases.close()  # renewals end; the lease is left to expire


@pytest.mark.gen_test
async def test_a_turn_shows_as_running_on_every_instance_and_ends_with_its_reply(make_store):
    mine, other = make_store(), make_store()
    await mine.create("demo", "m", 0.7, -1)
    async with mine.hold("demo"):
        chat = await begin_turn(mine, "demo", {"append": QUESTION}, {"id": "t1", "started_at": "now", "owner": "http://a"})
        assert chat["messages"] == [QUESTION] and chat["running_turn"]["id"] == "t1"
        await mine.journal_turn("demo", "t1", PARTIAL)
        for store in (mine, other):
            assert (await store.get("demo"))["running_turn"]["owner"] == "http://a"
            assert await store.list_chats() == [{"id": "demo", "name": "demo", "model": "m", "running": True}]
        await mine.end_turn("demo", "t1", WHOLE)
    for store in (mine, other):
        chat = await store.get("demo")
        assert chat["messages"] == [QUESTION, WHOLE] and "running_turn" not in chat
        assert await store.list_chats() == [{"id": "demo", "name": "demo", "model": "m"}]


@pytest.mark.gen_test
async def test_a_waiting_hold_is_woken_by_the_other_instances_notify_not_a_poll(make_store, monkeypatch):
    monkeypatch.setattr(leases, "FIRST_POLL_S", 60.0)  # a poll would come too late for the test
    first, second = make_store(), make_store()
    await first.create("demo", "m", 0.7, -1)
    async with first.hold("demo"):
        async with second.hold("other"):  # its listening connection is up
            pass
        taking = asyncio.ensure_future(second._leases.take("demo"))
        await wait_for(lambda: "demo" in second._leases._waiting, what="the second instance to wait")
    lease = await asyncio.wait_for(taking, 5)
    await second._leases.release(lease)


@pytest.mark.gen_test(timeout=30)
async def test_a_renewed_lease_outlives_its_length_and_a_dead_one_expires_and_is_finished(make_store):
    dead, taker = make_store(**SHORT_LEASE), make_store(**SHORT_LEASE)
    await dead.create("demo", "m", 0.7, -1)
    async with dead.hold("demo"):
        first_expiry = await lease_expiry(dead, "demo")

        async def take_it() -> None:
            async with taker.hold("demo"):
                pass

        waiting = asyncio.ensure_future(take_it())

        async def renewed_past_first_expiry() -> bool:
            return (await lease_expiry(dead, "demo") - first_expiry).total_seconds() > 1.5

        await eventually(renewed_past_first_expiry, what="renewals beyond the lease's first expiry")
        assert not waiting.done()  # held for longer than a lease lasts: renewals work
    await asyncio.wait_for(waiting, 5)

    await died_mid_turn(dead)
    assert (await taker.get("demo"))["running_turn"]["id"] == "t1"  # live until the lease expires
    async with taker.hold("demo"):  # waits out the lease, then finishes the dead turn first
        messages = (await taker.get("demo"))["messages"]
    assert messages == [QUESTION, {**PARTIAL, "interrupted": True}]


@pytest.mark.gen_test(timeout=30)
async def test_the_sweep_finishes_a_dead_instances_turn_nobody_asks_for(make_store, postgres_url):
    dead = make_store(**SHORT_LEASE)
    await dead.create("demo", "m", 0.7, -1)
    await died_mid_turn(dead)
    sweeper = PostgresStore(postgres_url, sweep_s=0.2)
    try:
        await sweeper.start()
        messages: list = []

        async def finished() -> bool:
            messages[:] = (await sweeper.get("demo"))["messages"]
            return len(messages) == 2

        await eventually(finished, what="the sweep to finish the dead turn")
        assert messages == [QUESTION, {**PARTIAL, "interrupted": True}]
        assert await sweeper.recover() == 0  # once
    finally:
        await sweeper.close()


@pytest.mark.gen_test
async def test_an_instances_sweep_finishes_its_own_gone_turn_but_not_its_running_one(make_store, pg_conn):
    store = make_store()
    assert store._leases.owner != make_store()._leases.owner  # a process started again (same pid or not) is another owner
    for name in ("running", "gone"):
        await store.create(name, "m", 0.7, -1)
    gone = await store._leases.take("gone")
    store._leases_held[gone.stem] = gone
    await begin_turn(store, "gone", {"append": QUESTION}, {"id": "t1", "started_at": "now"})
    await store.journal_turn("gone", "t1", PARTIAL)
    del store._leases_held[gone.stem]
    del store._leases._held[gone.epoch]  # its hold ended, and letting go never reached the database
    async with store.hold("running"):
        await begin_turn(store, "running", {"append": QUESTION}, {"id": "t2", "started_at": "now"})
        await pg_conn.execute("UPDATE leases SET expires_at = now()")  # both lapsed, as after a long outage
        assert await store.recover() == 1
        assert (await store.get("gone"))["messages"] == [QUESTION, {**PARTIAL, "interrupted": True}]
        assert (await store.get("running"))["running_turn"]["id"] == "t2"
        await store.end_turn("running", "t2", WHOLE)
    assert (await store.get("running"))["messages"] == [QUESTION, WHOLE]


@pytest.mark.gen_test
async def test_start_finishes_turns_whose_leases_expired(make_store, postgres_url):
    dead = make_store(lease_s=0.001, renew_s=60)  # expired as soon as it is taken
    await dead.create("demo", "m", 0.7, -1)
    await died_mid_turn(dead)
    restarted = make_store()
    assert await restarted.recover() == 1
    assert (await restarted.get("demo"))["messages"] == [QUESTION, {**PARTIAL, "interrupted": True}]


@pytest.mark.gen_test
async def test_turns_journaling_together_are_written_in_one_statement(make_store, postgres_url, pg_conn):
    store = make_store()
    statements = []
    call = store._journal._call

    async def counted(function, *arguments):
        statements.append(function.__name__)
        return await call(function, *arguments)

    store._journal._call = counted
    async with contextlib.AsyncExitStack() as holding:
        for number in range(3):
            await store.create(f"c{number}", "m", 0.7, -1)
            await holding.enter_async_context(store.hold(f"c{number}"))
            await begin_turn(store, f"c{number}", {"append": QUESTION}, {"id": f"t{number}", "started_at": "now"})
        await asyncio.gather(*(store.journal_turn(f"c{n}", f"t{n}", {**PARTIAL, "content": f"so far {n}"}) for n in range(3)))
        cursor = await pg_conn.execute("SELECT turn_id, reply->>'content' FROM turns ORDER BY turn_id")
        assert await cursor.fetchall() == [("t0", "so far 0"), ("t1", "so far 1"), ("t2", "so far 2")]
        assert statements == ["journal_turns"]
