"""``python chatproxy.py migrate``: every chat from the folder to PostgreSQL and back, equal as
parsed JSON, safe to run again, with what could not be copied named by chat."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from store import ChatStore, move
from store.postgres.engine import PostgresStore
from tests.helpers import begin_turn

ODD = {
    "model": "m",
    "messages": [
        {"role": "user", "content": "a NUL \x00 inside, a lone \ud800 surrogate, 人工智能", "extra": {"big": 2**70}},
        {"role": "assistant", "content": "answer", "finish_reason": "stop", "usage": {"total_tokens": 3}},
    ],
    "alternatives": {"1": [{"messages": [{"role": "assistant", "content": "first try"}], "alternatives": {}}]},
    "system_prompt": "Be brief.",
    "temperature": 0.5,
    "max_tokens": -1,
    "unknown_key": [1, {"kept": True}],
    "created_at": "2026-01-01T00:00:00+00:00",
    "updated_at": "2026-01-02T00:00:00+00:00",
}
NAMES = ["plain", "C++/Rust?", ".hidden", "notes: 1/2", "日本語", "odd"]


def run_migrate(project_root, clean_env, source, target) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(project_root / "chatproxy.py"), "migrate", "--from", str(source), "--to", str(target)],
        env=clean_env, capture_output=True, text=True, timeout=120,
    )


async def every_chat(store) -> dict[str, dict]:
    names = [summary["name"] for summary in await store.list_chats()]
    return {item["name"]: item["chat"] for item in map(json.loads, (await store.export_lines(names)).splitlines())}


@pytest.fixture
def folder(tmp_path, io_loop):
    """A chats folder with chats of every kind, one of them left running by a dead process."""
    store = ChatStore(tmp_path / "chats")
    store.open()

    async def fill() -> None:
        for name in NAMES[:-1]:
            chat = ODD | {"messages": [{"role": "user", "content": f"question of {name}"}]}
            await store.add(name, {key: value for key, value in chat.items() if key != "alternatives"})
        await store.add("odd", ODD)
        await store.add("left running", dict(ODD, messages=[]))
        async with store.hold("left running"):
            await begin_turn(store, "left running", {"append": {"role": "user", "content": "why?"}}, {"id": "t", "started_at": "now"})
            await store.journal_turn("left running", "t", {"role": "assistant", "content": "Because"})
        # the holder "died" with its turn unfinished: the next run finishes it first

    io_loop.run_sync(fill)
    io_loop.run_sync(store.close)
    return tmp_path / "chats"


@pytest.mark.gen_test(timeout=120)
async def test_the_folder_moves_to_postgresql_and_back_equal_and_a_second_run_copies_nothing(project_root, clean_env, folder, postgres_url, tmp_path):
    first = run_migrate(project_root, clean_env, folder, postgres_url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "7 chat(s) in the source: 7 copied, 0 already there, 0 left out; 7 in the target" in first.stdout
    assert "Verified" in first.stdout
    source, database = ChatStore(folder), PostgresStore(postgres_url)
    try:
        originals, copies = await every_chat(source), await every_chat(database)
        assert set(copies) == set(NAMES) | {"left running"}
        assert all(move.same(originals[name], copies[name]) for name in originals)
        assert copies["odd"]["messages"][0]["content"] == ODD["messages"][0]["content"]  # NUL, surrogate: as they were
        assert copies["odd"]["messages"][0]["extra"]["big"] == 2**70
        assert [m.get("interrupted") for m in copies["left running"]["messages"]] == [None, True]
    finally:
        await source.close()
        await database.close()
    again = run_migrate(project_root, clean_env, folder, postgres_url)
    assert again.returncode == 0 and "0 copied, 7 already there" in again.stdout, again.stdout + again.stderr
    back = run_migrate(project_root, clean_env, postgres_url, tmp_path / "back")
    assert back.returncode == 0 and "7 copied" in back.stdout, back.stdout + back.stderr
    returned = ChatStore(tmp_path / "back")
    try:
        assert all(move.same(originals[name], chat) for name, chat in (await every_chat(returned)).items())
        assert len(await every_chat(returned)) == 7
    finally:
        await returned.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_chat_the_target_holds_otherwise_is_named_and_left_and_batches_cover_every_chat(folder, postgres_url, monkeypatch):
    monkeypatch.setattr(move, "BATCH", 2)
    source, database = ChatStore(folder), PostgresStore(postgres_url)
    try:
        await database.add("plain", {"model": "theirs", "messages": []})
        lines: list[str] = []
        report = await move.copy_chats(source, database, lines.append)
        assert lines == ["2/7 chats", "4/7 chats", "6/7 chats", "7/7 chats"]
        assert report.copied == 6 and not report.complete
        assert list(report.left) == ["plain"] and "another chat of this name" in report.left["plain"]
        assert (await database.get("plain"))["model"] == "theirs"  # never overwritten
        assert any("'plain'" in line for line in report.lines())
    finally:
        await source.close()
        await database.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_chat_that_reads_back_otherwise_is_reported_by_name(folder, postgres_url, monkeypatch):
    source, database = ChatStore(folder), PostgresStore(postgres_url)
    add = database.add

    async def changing_add(name, chat):  # a target that quietly changes a text
        if name == "odd":
            chat = dict(chat, system_prompt="changed")
        return await add(name, chat)

    monkeypatch.setattr(database, "add", changing_add)
    try:
        report = await move.copy_chats(source, database)
        assert report.differing == ["odd"] and not report.complete
        assert "differs in the target once copied: 'odd'" in "\n".join(report.lines())
    finally:
        await source.close()
        await database.close()


def test_bad_places_are_named_with_exit_2(project_root, clean_env, tmp_path, postgres_server):
    missing = run_migrate(project_root, clean_env, tmp_path / "nowhere", tmp_path / "to")
    assert missing.returncode == 2 and "no chats folder" in missing.stderr
    down = run_migrate(project_root, clean_env, tmp_path, f"postgresql://chatproxy@/x?host={tmp_path}&port=5999")
    assert down.returncode == 2 and "cannot be reached" in down.stderr and "Traceback" not in down.stderr
