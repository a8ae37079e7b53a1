"""store/postgres: the migrations and the SQL of the chat operations, against a real
PostgreSQL. (test_postgres_rules.py checks every change against the folder's rules.)"""

from __future__ import annotations

import asyncio
import copy
import json

import pytest

from store import ChatExists, ChatNotFound, InvalidChatName, InvalidChatValue, MessageIndexError, StorageFailure, history, listing
from store.postgres import chats, search
from store.postgres.connection import connect
from store.postgres.migrate import migrate, migrations
from tests.postgres import append, edit_message, new_chat, remove_message, switch_branch, update_settings

NAMES = ["plain", "C++/Rust?", "notes: 1/2", ".hidden", "50% off", "a_b", "emoji 😀", "人工智能", "nul\x00inside", "back\\slash"]


async def rows_of(conn, table: str) -> int:
    cursor = await conn.execute(f"SELECT count(*) FROM {table}")
    return (await cursor.fetchone())[0]


# -- migrations ------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_four_instances_starting_together_apply_each_migration_once(empty_postgres_url):
    connections = [await connect(empty_postgres_url, autocommit=True) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(migrate(conn) for conn in connections))
        versions = [migration.version for migration in migrations()]
        assert sorted(applied, key=len) == [[], [], [], versions]  # one applied all, three found nothing to do
        cursor = await connections[0].execute("SELECT version FROM chatproxy_migrations ORDER BY version")
        assert [row[0] for row in await cursor.fetchall()] == versions
        assert await migrate(connections[1]) == []
    finally:
        for conn in connections:
            await conn.close()


@pytest.mark.gen_test
async def test_a_database_migrated_by_a_newer_chatproxy_is_refused(pg_conn):
    await pg_conn.execute("INSERT INTO chatproxy_migrations (version, name) VALUES (999, 'future')")
    with pytest.raises(StorageFailure, match="newer chatproxy"):
        await migrate(pg_conn)


@pytest.mark.gen_test(timeout=60)
async def test_a_database_holding_chats_is_upgraded_with_them_searchable_titled_and_pinned(empty_postgres_url, tmp_path):
    first_two = tmp_path / "migrations"
    first_two.mkdir()
    for migration in migrations()[:2]:  # the schema as the first release made it
        (first_two / migration.path.name).write_text(migration.path.read_text())
    conn = await connect(empty_postgres_url, autocommit=True)
    try:
        assert await migrate(conn, first_two) == [1, 2]
        settings = {"model": "m", "title": "Trip plans", "pinned": True, "archived": False}
        cursor = await conn.execute(
            "INSERT INTO chats (stem, name, settings, updated_at, model) VALUES ('old', 'old', %s, '2026-01-01T00:00:00', '\"m\"') RETURNING id",
            (json.dumps(settings),),
        )
        chat_id = (await cursor.fetchone())[0]
        for position, (role, text) in enumerate([("user", "a quixotical question"), ("assistant", "an answer")]):
            await conn.execute(
                "INSERT INTO messages (chat_id, branch, position, body, content) VALUES (%s, 0, %s, %s, %s)",
                (chat_id, position, json.dumps({"role": role, "content": text}), text),
            )
        assert await migrate(conn) == [migration.version for migration in migrations()[2:]]
        assert [hit["name"] for hit in await search.search(conn, "quixotical", 10)] == ["old"]  # counted in chat_words
        assert [hit["name"] for hit in await search.search(conn, "trip", 10)] == ["old"]  # the title, searchable
        [entry] = await chats.listing(conn, listing.RECENT)
        assert (entry["name"], entry.get("title"), entry.get("pinned")) == ("old", "Trip plans", True)
        assert [m["content"] for m in (await chats.get(conn, "old"))["messages"]] == ["a quixotical question", "an answer"]
    finally:
        await conn.close()


# -- reads, creating, deleting, renaming ---------------------------------------------------------


@pytest.mark.gen_test
async def test_any_name_is_stored_listed_and_read_back_as_the_folder_sorts_them(pg_conn):
    for number, name in enumerate(NAMES):
        await chats.create(pg_conn, name, new_chat(f"message {number}", model=f"model {number}"))
    listing = await chats.listing(pg_conn)
    assert [summary["name"] for summary in listing] == sorted(NAMES, key=lambda name: name.replace("\x00", ""))
    assert all(summary["id"] == summary["name"] and "running" not in summary for summary in listing)
    for number, name in enumerate(NAMES):
        chat = await chats.get(pg_conn, name)
        assert chat["messages"][0]["content"] == f"message {number}" and chat["model"] == f"model {number}"
    assert await chats.count(pg_conn) == len(NAMES)


@pytest.mark.gen_test
async def test_names_are_refused_and_missing_chats_reported_as_on_the_folder(pg_conn):
    await chats.create(pg_conn, "taken", new_chat())
    with pytest.raises(ChatExists):
        await chats.create(pg_conn, "taken", new_chat())
    for bad in ("", "x" * 201, "lone \ud800 surrogate"):
        with pytest.raises(InvalidChatName):
            await chats.create(pg_conn, bad, new_chat())
    with pytest.raises(ChatNotFound):
        await chats.get(pg_conn, "missing")
    with pytest.raises(ChatNotFound):
        await chats.delete(pg_conn, "missing")
    with pytest.raises(ChatNotFound):
        await edit_message(pg_conn, "missing", 0, "x")
    assert await chats.count(pg_conn) == 1


@pytest.mark.gen_test
async def test_a_chat_of_any_shape_and_text_comes_back_equal(pg_conn):
    chat = new_chat("nul \x00 inside", "lone \ud83d half of an emoji", "big number")
    chat["messages"][2]["tokens"] = 2**64 - 1
    chat["messages"].append("not even an object")
    chat["unknown key"] = {"kept": [1, 2.5, None, True]}
    chat["system_prompt"] = "Be brief \x00"
    chat["alternatives"] = {"1": [{"messages": [{"role": "assistant", "content": "first"}], "alternatives": {}}], "x": 5}
    await chats.create(pg_conn, "odd", copy.deepcopy(chat))
    assert await chats.get(pg_conn, "odd") == chat


@pytest.mark.gen_test
async def test_rename_moves_everything_and_refuses_a_taken_name(pg_conn):
    await chats.create(pg_conn, "old", new_chat("q", "a"))
    await edit_message(pg_conn, "old", 0, "q2")
    before = await chats.get(pg_conn, "old")
    await chats.create(pg_conn, "other", new_chat())
    with pytest.raises(ChatExists):
        await chats.rename(pg_conn, "old", "other")
    await chats.rename(pg_conn, "old", "new/name")
    assert await chats.get(pg_conn, "new/name") == before
    with pytest.raises(ChatNotFound):
        await chats.get(pg_conn, "old")
    with pytest.raises(ChatNotFound):
        await chats.rename(pg_conn, "old", "anything")
    await chats.rename(pg_conn, "other", "other")  # the same name: nothing to do


@pytest.mark.gen_test
async def test_delete_takes_every_row_of_the_chat_with_it(pg_conn):
    await chats.create(pg_conn, "doomed", new_chat("q", "a"))
    await edit_message(pg_conn, "doomed", 1, "a2")  # a branch row too
    await chats.create(pg_conn, "kept", new_chat("q"))
    await chats.delete(pg_conn, "doomed")
    assert (await rows_of(pg_conn, "messages"), await rows_of(pg_conn, "branches")) == (1, 0)
    assert [summary["name"] for summary in await chats.listing(pg_conn)] == ["kept"]


@pytest.mark.gen_test
async def test_create_unique_numbers_names_as_the_folder_does(pg_conn):
    for name in ("50% off", "a_b"):
        made = [await chats.create_unique(pg_conn, name, new_chat()) for _ in range(3)]
        assert made == [name, f"{name} (2)", f"{name} (3)"]
    await chats.create(pg_conn, "50X off (2)", new_chat())  # matches "50% off (_)" unless escaped
    assert await chats.create_unique(pg_conn, "50% off", new_chat()) == "50% off (4)"


@pytest.mark.gen_test
async def test_export_lines_are_the_chats_in_the_order_asked(pg_conn):
    for name in ("b", "a"):
        await chats.create(pg_conn, name, new_chat(f"in {name}"))
    lines = (await chats.export_lines(pg_conn, ["b", "gone", "a"])).splitlines()
    assert [json.loads(line) for line in lines] == [
        {"name": "b", "chat": await chats.get(pg_conn, "b")},
        {"name": "a", "chat": await chats.get(pg_conn, "a")},
    ]


# -- changes -------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_settings_set_and_remove_keys(pg_conn):
    await chats.create(pg_conn, "c", new_chat())
    changed = await update_settings(pg_conn, "c", {"model": "other", "system_prompt": "Be brief", "temperature": 0.2})
    assert await chats.get(pg_conn, "c") == changed and changed["model"] == "other"
    await update_settings(pg_conn, "c", {"system_prompt": None})
    assert "system_prompt" not in await chats.get(pg_conn, "c")
    assert (await chats.listing(pg_conn))[0]["model"] == "other"


@pytest.mark.gen_test
async def test_remove_message_answers_and_refuses_as_the_folder(pg_conn):
    await chats.create(pg_conn, "c", new_chat("q1", "a1", "q2"))
    assert await remove_message(pg_conn, "c", 1) == {"role": "assistant", "content": "a1"}
    assert [m["content"] for m in (await chats.get(pg_conn, "c"))["messages"]] == ["q1", "q2"]
    with pytest.raises(MessageIndexError):
        await remove_message(pg_conn, "c", 2)
    with pytest.raises(InvalidChatValue):
        await switch_branch(pg_conn, "c", 0, 0)


@pytest.mark.gen_test
async def test_edit_and_switch_keep_every_branch(pg_conn):
    await chats.create(pg_conn, "c", new_chat("q1", "a1", "q2", "a2"))
    edited = await edit_message(pg_conn, "c", 2, "q2 fixed")
    assert [m["content"] for m in edited["messages"]] == ["q1", "a1", "q2 fixed", "a2"]
    assert await chats.get(pg_conn, "c") == edited  # its branches too
    switched = await switch_branch(pg_conn, "c", 2, 0)
    assert [m["content"] for m in switched["messages"]] == ["q1", "a1", "q2", "a2"]
    assert await chats.get(pg_conn, "c") == switched


@pytest.mark.gen_test
async def test_appends_from_many_connections_at_once_are_all_kept(pg_conn, postgres_url):
    await chats.create(pg_conn, "c", new_chat())
    connections = [await connect(postgres_url, autocommit=True) for _ in range(4)]

    async def appends(number: int) -> None:  # one at a time on each connection, as a pool lends them
        for step in range(5):
            await append(connections[number], "c", [{"role": "user", "content": f"{number}.{step}"}])

    try:
        await asyncio.gather(*(appends(number) for number in range(4)))
    finally:
        for conn in connections:
            await conn.close()
    contents = [m["content"] for m in (await chats.get(pg_conn, "c"))["messages"]]
    assert sorted(contents) == sorted(f"{n}.{s}" for n in range(4) for s in range(5))


@pytest.mark.gen_test
async def test_a_change_rewrites_only_the_rows_it_touches(pg_conn):
    await chats.create(pg_conn, "long", new_chat(*(f"m{number}" for number in range(200))))

    async def row_versions() -> dict:
        cursor = await pg_conn.execute("SELECT branch, position, xmin::text FROM messages")
        return {(branch, position): version for branch, position, version in await cursor.fetchall()}

    before = await row_versions()
    await append(pg_conn, "long", [{"role": "assistant", "content": "one more"}])
    after = await row_versions()
    assert {key: after[key] for key in before} == before and len(after) == 201
    await chats.change(pg_conn, "long", history.prepare_regenerate)  # sets aside the replies to m198
    regenerated = await row_versions()
    untouched = {key for key, version in after.items() if regenerated.get(key) == version}
    assert set(after) - untouched == {(0, 199), (0, 200)} and set(regenerated) - untouched == {(1, 0), (1, 1)}


@pytest.mark.gen_test
async def test_the_recent_listing_gives_settings_of_any_text_exactly_by_the_folder_rules(pg_conn):
    odd = {"title": 'a "quoted" \\ title with a NUL \x00 and 日本', "model": "m\x00odel", "pinned": True}
    await chats.create(pg_conn, "odd", {**new_chat("q"), **odd})
    await chats.create(pg_conn, "plain", {**new_chat("q"), "archived": True, "pinned": "yes", "title": 5})
    recent = await chats.listing(pg_conn, listing.RECENT, listing.WITH_ARCHIVED)
    expected = [
        listing.summary(name, await chats.get(pg_conn, name)) for name in ("odd", "plain")
    ]
    assert recent == expected
    assert recent[0]["title"] == odd["title"] and recent[0]["model"] == odd["model"] and recent[0]["pinned"] is True
    assert recent[1]["archived"] is True and recent[1]["pinned"] is False and recent[1]["title"] is None
    assert await chats.listing(pg_conn, listing.RECENT, listing.HIDE_ARCHIVED) == expected[:1]
    assert await chats.listing(pg_conn) == [listing.by_name(entry) for entry in expected]
