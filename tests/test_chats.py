"""Chats as a user expects them: newest first with pinned ones on top (GET /chats?sort=recent),
pin and archive, damaged files named, and chats that need no name; through real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import re

import pytest

from store import RECENT, WITH_ARCHIVED
from store import index as index_module
from store.folder import ChatFolder
from tests.fake_lmstudio import Reply
from tests.helpers import assert_error, call, create_chat, turn

pytestmark = pytest.mark.both_engines

RECENT_KEYS = {"id", "name", "model", "title", "updated_at", "pinned", "archived"}


async def listing(proxy, query: str = "") -> list[dict]:
    response = await call(proxy, "GET", "/chats" + query)
    assert response.status == 200, response.body
    return response.json["chats"]


async def names(proxy, query: str = "?sort=recent") -> list[str]:
    return [entry["name"] for entry in await listing(proxy, query)]


async def patch(proxy, **body) -> dict:
    response = await call(proxy, "PATCH", "/chat", body)
    assert response.status == 200, response.body
    return response.json["chat"]


@pytest.mark.gen_test
async def test_recent_lists_newest_activity_first_with_pinned_chats_on_top(proxy):
    for name in ("a", "b", "c"):
        await create_chat(proxy, name)
    assert await names(proxy) == ["c", "b", "a"]
    await turn(proxy, "a", content="hello")
    assert await names(proxy) == ["a", "c", "b"]
    assert (await patch(proxy, name="b", pinned=True))["pinned"] is True
    entries = await listing(proxy, "?sort=recent")
    assert [entry["name"] for entry in entries] == ["b", "a", "c"]
    assert all(set(entry) == RECENT_KEYS for entry in entries), entries
    assert [(entry["pinned"], entry["title"]) for entry in entries] == [(True, None), (False, "hello"), (False, None)]
    stamps = [entry["updated_at"] for entry in entries[1:]]
    assert stamps == sorted(stamps, reverse=True)
    await patch(proxy, name="b", pinned=True)  # set, not toggled
    assert (await listing(proxy, "?sort=recent"))[0]["pinned"] is True
    assert "pinned" not in await patch(proxy, name="b", pinned=False)  # false is the key's absence
    assert await names(proxy) == ["b", "a", "c"]  # unpinned, and its activity is the newest


@pytest.mark.gen_test
async def test_archived_chats_leave_the_recent_list_unless_asked_for(proxy, stored):
    for name in ("a", "b", "c"):
        await create_chat(proxy, name)
    assert (await patch(proxy, name="b", archived=True))["archived"] is True
    assert await names(proxy) == ["c", "a"]
    assert await names(proxy, "?sort=recent&archived=false") == ["c", "a"]
    assert await names(proxy, "?sort=recent&archived=true") == ["b", "c", "a"]
    assert await names(proxy, "?sort=recent&archived=only") == ["b"]
    assert await names(proxy, "") == ["a", "b", "c"]  # the order by name lists every chat
    await patch(proxy, name="b", archived=False)
    assert await names(proxy) == ["b", "c", "a"]
    assert "archived" not in await stored.chat("b")


@pytest.mark.gen_test
async def test_the_listing_by_name_keeps_the_seed_shape_whatever_the_chat_holds(proxy):
    await create_chat(proxy, "b")
    await create_chat(proxy, "a")
    await turn(proxy, "a", content="question")
    await patch(proxy, name="a", pinned=True, archived=True, title="Mine")
    assert await listing(proxy) == [{"id": n, "name": n, "model": "test-model"} for n in ("a", "b")]


@pytest.mark.gen_test
async def test_a_damaged_file_is_named_in_the_recent_list_and_left_out_by_name(proxy, chats_dir):
    await create_chat(proxy, "good")
    (chats_dir / "broken.json").write_text('{"model": "m", "messages": [')
    (chats_dir / "list.json").write_text('["a list"]')
    (chats_dir / "folder.json").mkdir()
    entries = {entry["name"]: entry for entry in await listing(proxy, "?sort=recent")}
    assert set(entries) == {"good", "broken", "list", "folder"}
    assert "damaged" not in entries["good"]
    assert entries["broken"]["damaged"].startswith("broken.json is not valid JSON")
    assert entries["list"]["damaged"] == "list.json does not hold a JSON object"
    assert entries["folder"]["damaged"] == "is not a regular file"
    assert set(entries["broken"]) == RECENT_KEYS | {"damaged"} and entries["broken"]["updated_at"]
    assert await names(proxy, "") == ["good"]
    assert await names(proxy, "?sort=recent&archived=only") == []
    (chats_dir / ".broken.tmp").write_text(json.dumps({"model": "m", "messages": []}))
    os.replace(chats_dir / ".broken.tmp", chats_dir / "broken.json")  # repaired, as an editor saves
    repaired = {entry["name"]: entry for entry in await listing(proxy, "?sort=recent")}["broken"]
    assert "damaged" not in repaired and repaired["model"] == "m"


@pytest.mark.gen_test
async def test_a_running_turn_shows_in_the_recent_list(proxy, fake):
    await create_chat(proxy, "busy")
    await create_chat(proxy, "idle")
    answer = asyncio.Event()
    fake.script.append(Reply(hold=answer, hold_at=1))
    relayed = asyncio.Event()  # the first event goes out once the turn's start is durable
    running = asyncio.ensure_future(turn(proxy, "busy", content="long one", stop=lambda result: bool(result.events) and relayed.set()))
    await asyncio.wait_for(relayed.wait(), 5)
    entries = await listing(proxy, "?sort=recent")
    assert [(entry["name"], entry.get("running")) for entry in entries] == [("busy", True), ("idle", None)]
    pinned = await call(proxy, "PATCH", "/chat", {"name": "busy", "pinned": True})  # needs not wait for the turn
    assert pinned.status == 200 and not running.done()
    answer.set()
    assert (await running).content() == "Hello, world!"
    finished = await call(proxy, "GET", "/chat?name=busy")
    assert finished.json["chat"]["pinned"] is True and finished.json["chat"]["messages"][-1]["content"] == "Hello, world!"
    assert "running" not in (await listing(proxy, "?sort=recent"))[0]


@pytest.mark.gen_test
async def test_a_chat_created_without_a_name_gets_one_of_its_own(proxy, stored):
    made = []
    for _ in range(3):
        response = await call(proxy, "POST", "/chat", {"model": "test-model"})
        assert response.status == 200, response.body
        made.append(response.json["name"])
        assert response.json["chat"]["model"] == "test-model"
    assert len(set(made)) == 3
    assert all(re.fullmatch(r"chat-\d{8}-\d{4}-[0-9a-f]{4}", name) for name in made), made
    assert await stored.names() == sorted(made)
    named = await call(proxy, "POST", "/chat", {"name": "mine", "model": "test-model"})
    assert named.json["name"] == "mine"
    assert "'model' is required" in assert_error(await call(proxy, "POST", "/chat", {}), 400)
    assert len(await stored.names()) == 4


BAD_LISTINGS = [
    ("?sort=newest", "'sort'"),
    ("?sort=", "'sort'"),
    ("?sort=recent&archived=maybe", "'archived'"),
    ("?archived=true", "sort=recent"),
    ("?sort=name&archived=only", "sort=recent"),
    ("?q=x&sort=recent", "search"),
    ("?q=x&archived=true", "search"),
]


@pytest.mark.gen_test
@pytest.mark.parametrize("query,words", BAD_LISTINGS)
async def test_a_bad_listing_parameter_is_400(proxy, query, words):
    assert words in assert_error(await call(proxy, "GET", "/chats" + query), 400)


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "body",
    [{"pinned": "yes"}, {"pinned": None}, {"archived": 1}, {"archived": "true"}, {"pinned": True, "archived": []}, {"pinned": True, "temperature": 9}],
)
async def test_a_bad_pin_or_archive_is_400_and_changes_nothing(proxy, stored, body):
    await create_chat(proxy)
    before = await stored.snapshot()
    assert_error(await call(proxy, "PATCH", "/chat", {"name": "demo", **body}), 400)
    assert await stored.snapshot() == before
    assert_error(await call(proxy, "PATCH", "/chat", {"name": "nope", "pinned": True}), 404)


def test_a_warm_recent_listing_reads_no_file(tmp_path, monkeypatch):
    folder = tmp_path / "chats"
    chat_folder = ChatFolder(folder)
    chat_folder.open()
    for number in range(30):
        chat = {"model": "m", "messages": [], "updated_at": f"2026-01-{number + 1:02}T00:00:00+00:00", "pinned": number == 3}
        (folder / f"chat{number:02}.json").write_text(json.dumps(chat))
    (folder / "bad.json").write_text("{")
    old = 1_000_000_000
    os.utime(folder, (old, old))  # changed long before the first scan: the fast path applies
    reads = []
    real = index_module._read_entry
    monkeypatch.setattr(index_module, "_read_entry", lambda *a: reads.append(a) or real(*a))
    first = json.loads(chat_folder.listing_json(lambda file_name: False, RECENT, WITH_ARCHIVED))
    assert [entry["name"] for entry in first[:3]] == ["chat03", "bad", "chat29"] and len(reads) == 31
    assert json.loads(chat_folder.listing_json(lambda file_name: False, RECENT, WITH_ARCHIVED)) == first
    chat_folder.listing_json(lambda file_name: False, index_module.BY_NAME, WITH_ARCHIVED)
    assert len(reads) == 31  # warm, in either order: nothing read again
    chat_folder.close()
