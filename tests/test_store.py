"""The store: safe names, atomic writes, damaged files, the listing index, concurrency."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
from urllib.parse import quote

import pytest

from store import ChatCorrupt, ChatStore, InvalidChatName
from store import chatfile as store_chatfile, files, index as index_module
from store.cache import ChatCache
from store.folder import ChatFolder
from store.names import file_name_for, name_for
from tests.helpers import assert_error, begin_turn, call, wait_for

ODD_NAMES = [
    "my chat",
    "C++/Rust?",
    "notes: 1/2",
    ".dotfile",
    "..",
    "...",
    "100%",
    "%41 is not A",
    "back\\slash",
    "tab\there",
    "日本語のチャット",
    "emoji 😀🎉",
    "-dash",
    "a" * 200,
]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_names_map_to_one_safe_file_and_back(name):
    file_name = file_name_for(name)
    assert "/" not in file_name and "\\" not in file_name and "\0" not in file_name
    assert not file_name.startswith(".")
    assert name_for(file_name) == name


def test_ordinary_names_keep_the_seed_file_name():
    assert file_name_for("conversation-1") == "conversation-1.json"
    assert file_name_for("my chat") == "my chat.json"


@pytest.mark.parametrize("name", ["", "a" * 201, "😀" * 60, "bad\ud800"])
def test_unstorable_names_are_rejected(name):
    with pytest.raises(InvalidChatName):
        file_name_for(name)


@pytest.mark.gen_test
@pytest.mark.parametrize("name", ODD_NAMES)
async def test_odd_names_round_trip_through_the_api(proxy, chats_dir, name):
    created = await call(proxy, "POST", "/chat", {"name": name, "model": "m"})
    assert created.status == 200, created.body
    listing = (await call(proxy, "GET", "/chats")).json["chats"]
    assert [chat["name"] for chat in listing] == [name]
    got = await call(proxy, "GET", "/chat?name=" + quote(name, safe=""))
    assert got.status == 200 and got.json["chat"]["model"] == "m"
    assert (await call(proxy, "DELETE", "/chat?name=" + quote(name, safe=""))).status == 200
    assert (await call(proxy, "GET", "/chats")).json["chats"] == []


DANGEROUS = ["..", "../x", "../../sentinel", "/abs", "/tmp/x", "a/b", "a\\b", "a\0b", ".", "./x", "x" * 300, ".locks/x"]


@pytest.mark.gen_test
@pytest.mark.parametrize("name", DANGEROUS)
async def test_dangerous_names_never_touch_anything_outside_the_folder(proxy, chats_dir, name):
    sentinel = chats_dir.parent / "sentinel.json"
    sentinel.write_text("keep me")
    outside_before = sorted(os.listdir(chats_dir.parent))
    created = await call(proxy, "POST", "/chat", {"name": name, "model": "m"})
    if len(name) > 200:
        assert_error(created, 400)
    else:
        assert created.status == 200
        query = "?name=" + quote(name, safe="")
        assert (await call(proxy, "GET", "/chat" + query)).status == 200
        assert (await call(proxy, "DELETE", "/chat" + query)).status == 200
    for method in ("GET", "DELETE"):
        await call(proxy, method, "/chat?name=" + quote(name, safe=""))
    assert sentinel.read_text() == "keep me"
    assert sorted(os.listdir(chats_dir.parent)) == outside_before
    assert [p for p in chats_dir.iterdir() if p.name != files.LOCK_DIR] == []


def test_injected_failure_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "chat.json"
    target.write_bytes(b'{"old": true}')

    def crash(*args):
        raise OSError("disk on fire")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError):
        files.write_atomic(target, b'{"new": true}')
    assert target.read_bytes() == b'{"old": true}'
    assert os.listdir(tmp_path) == ["chat.json"]  # no temp file left behind


def test_write_atomic_returns_the_new_files_stat(tmp_path):
    target = tmp_path / "chat.json"
    target.write_bytes(b"old")
    stat = files.write_atomic(target, b"new content", None)
    now = os.stat(target)
    assert (stat.st_ino, stat.st_size, stat.st_mtime_ns) == (now.st_ino, now.st_size, now.st_mtime_ns)
    assert target.read_bytes() == b"new content"


def test_read_bytes_reads_to_the_end_through_short_reads(tmp_path, monkeypatch):
    target = tmp_path / "chat.json"
    target.write_bytes(b"0123456789" * 10)
    real_read = os.read
    monkeypatch.setattr(files.os, "read", lambda fd, size: real_read(fd, min(size, 7)))
    assert files.read_bytes(target) == b"0123456789" * 10
    assert files.read_bytes(tmp_path / "missing.json") is None


def open_folder(folder) -> None:
    """What the store does at start-up (ChatStore.open)."""
    chat_folder = ChatFolder(folder)
    chat_folder.open()
    chat_folder.close()


def test_a_temp_file_our_writer_left_is_cleaned_at_open(tmp_path):
    folder = tmp_path / "chats"
    open_folder(folder)
    leftover = files.temp_path_for(folder / "chat.json")  # the name a killed write leaves
    open(leftover, "wb").close()
    assert files.temp_path_for(folder / "chat.json") != leftover
    open_folder(folder)
    assert not os.path.exists(leftover)


def test_leftover_temp_files_are_ignored_and_cleaned_at_open(tmp_path):
    folder = tmp_path / "chats"
    chat_folder = ChatFolder(folder)
    chat_folder.open()
    (folder / "good.json").write_text(json.dumps({"model": "m", "messages": []}))
    leftover = folder / ".good.json.deadbeef.tmp"
    leftover.write_text('{"model": "half')
    assert [chat["name"] for chat in chat_folder.listing()] == ["good"]
    chat_folder.close()
    open_folder(folder)
    assert not leftover.exists()
    assert (folder / "good.json").exists()


def test_a_temp_file_another_writer_is_writing_is_not_cleaned_up(tmp_path):
    folder = tmp_path / "chats"
    open_folder(folder)
    (folder / "busy.json").write_text(json.dumps({"model": "m", "messages": []}))
    in_progress = folder / ".busy.json.abcdef12.tmp"
    in_progress.write_text('{"model": "m", "mess')
    # Another process writing "busy" holds its lock (a second open file description
    # conflicts with this one even inside one process).
    with files.file_lock(folder / files.LOCK_DIR / "busy.lock"):
        open_folder(folder)
        assert in_progress.exists()
    open_folder(folder)
    assert not in_progress.exists()
    assert sorted(os.listdir(folder / files.LOCK_DIR)) == ["busy.lock"]


@pytest.mark.gen_test
async def test_damaged_file_is_skipped_in_listing_named_on_get_and_never_overwritten(proxy, chats_dir, caplog):
    assert (await call(proxy, "POST", "/chat", {"name": "good", "model": "m"})).status == 200
    damaged = {"bad.json": b'{"model": "m", "messages": [', "notachat.json": b'["a list"]', "latin.json": b"\xff\xfe"}
    for file_name, data in damaged.items():
        (chats_dir / file_name).write_bytes(data)
    listing = await call(proxy, "GET", "/chats")
    assert [chat["name"] for chat in listing.json["chats"]] == ["good"]
    assert "Skipping bad.json" in caplog.text
    message = assert_error(await call(proxy, "GET", "/chat?name=bad"), 500)
    assert "bad.json is not valid JSON" in message
    assert "does not hold a JSON object" in assert_error(await call(proxy, "GET", "/chat?name=notachat"), 500)
    assert_error(await call(proxy, "PUT", "/chat", {"name": "bad", "message": {"role": "user", "content": "x"}}), 500)
    assert_error(await call(proxy, "DELETE", "/chat/message", {"name": "bad", "index": 0}), 500)
    assert_error(await call(proxy, "POST", "/chat", {"name": "bad", "model": "m"}), 409)
    for file_name, data in damaged.items():
        assert (chats_dir / file_name).read_bytes() == data


@pytest.mark.gen_test
async def test_unknown_keys_survive_every_change(proxy, chats_dir):
    chats_dir.mkdir(exist_ok=True)
    (chats_dir / "future.json").write_text(json.dumps({
        "model": "m", "messages": [{"role": "user", "content": "a", "attachments": ["x.png"]}],
        "system_prompt": "be brief", "pinned": True,
    }))
    assert (await call(proxy, "DELETE", "/chat/message", {"name": "future", "index": 0})).status == 200
    await call(proxy, "PUT", "/chat", {"name": "future", "message": {"role": "user", "content": "b", "lang": "en"}})
    saved = json.loads((chats_dir / "future.json").read_text())
    assert saved["system_prompt"] == "be brief" and saved["pinned"] is True
    assert saved["messages"][0] == {"role": "user", "content": "b", "lang": "en"}


@pytest.mark.gen_test
async def test_index_follows_files_added_removed_and_edited_behind_its_back(proxy, chats_dir):
    for name in ("a", "b"):
        assert (await call(proxy, "POST", "/chat", {"name": name, "model": "m1"})).status == 200
    assert [c["name"] for c in (await call(proxy, "GET", "/chats")).json["chats"]] == ["a", "b"]
    (chats_dir / "c.json").write_text(json.dumps({"model": "m3", "messages": []}))
    (chats_dir / "a.json").unlink()
    b = json.loads((chats_dir / "b.json").read_text())
    b["model"] = "edited-by-hand"
    (chats_dir / "b.json").write_text(json.dumps(b))
    assert (await call(proxy, "GET", "/chats")).json["chats"] == [
        {"id": "b", "name": "b", "model": "edited-by-hand"},
        {"id": "c", "name": "c", "model": "m3"},
    ]


def test_warm_listing_reads_no_file_and_a_new_file_is_seen(tmp_path, monkeypatch):
    folder = tmp_path / "chats"
    chat_folder = ChatFolder(folder)
    chat_folder.open()
    for i in range(50):
        (folder / f"chat{i:02}.json").write_text(json.dumps({"model": "m", "messages": []}))
    old = 1_000_000_000
    os.utime(folder, (old, old))  # changed long before the first scan: the fast path applies
    reads = []
    real = index_module._read_entry
    monkeypatch.setattr(index_module, "_read_entry", lambda *a: reads.append(a) or real(*a))
    assert len(chat_folder.listing()) == 50 and len(reads) == 50
    assert len(chat_folder.listing()) == 50 and len(reads) == 50  # warm: nothing read
    (folder / "new.json").write_text(json.dumps({"model": "m", "messages": []}))
    assert len(chat_folder.listing()) == 51 and len(reads) == 51  # only the new file read
    chat_folder.close()


@pytest.fixture
def store(tmp_path, io_loop):
    chat_store = ChatStore(tmp_path / "chats")
    chat_store.open()
    yield chat_store
    io_loop.run_sync(chat_store.close)


async def a_turn(store, name: str, question: str, answer: dict | None) -> dict:
    """One whole turn at the store: the question stored and the chat marked running, then the answer."""
    async with store.hold(name):
        chat = await begin_turn(store, name, {"append": {"role": "user", "content": question}}, {"id": question, "started_at": "now"})
        await store.end_turn(name, question, answer)
    return chat


@pytest.mark.gen_test
async def test_many_concurrent_turns_lose_nothing_and_never_interleave(store):
    await store.create("busy", "m", 0.7, -1)
    await asyncio.gather(*(a_turn(store, "busy", str(i), {"role": "assistant", "content": f"re {i}"}) for i in range(50)))
    chat = await store.get("busy")
    assert [m["content"] for m in chat["messages"]] == [text for i in range(50) for text in (str(i), f"re {i}")]


@pytest.mark.gen_test
async def test_requests_that_arrive_before_the_store_has_threads_are_all_answered(store):
    created = await asyncio.gather(*(store.create(f"c{i}", "m", 0.7, -1) for i in range(20)))
    assert [chat["model"] for chat in created] == ["m"] * 20
    assert await store.count_chats() == 20


@pytest.mark.gen_test
async def test_corrupt_chat_is_a_store_error_not_a_crash(store, tmp_path):
    (tmp_path / "chats" / "x.json").write_text("{")
    with pytest.raises(ChatCorrupt):
        await a_turn(store, "x", "y", None)
    assert (tmp_path / "chats" / "x.json").read_text() == "{"


@pytest.mark.gen_test
async def test_lone_surrogate_in_a_message_is_stored_and_read_back(store):
    await store.create("emoji", "m", 0.7, -1)
    half = json.loads('"half an emoji: \\ud83d"')
    await a_turn(store, "emoji", "q", {"role": "assistant", "content": half})
    assert (await store.get("emoji"))["messages"][1]["content"] == half


@pytest.mark.gen_test
async def test_file_work_runs_on_threads_below_the_event_loop(store):
    await store.create("a", "m", 0.7, -1)
    workers = [thread for thread in threading.enumerate() if thread.name.startswith("chatstore")]
    assert workers
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    for thread in workers:
        assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == min(19, mine + 10)


@pytest.mark.gen_test
async def test_a_long_chat_is_decoded_once_across_turns_and_a_hand_edit_is_seen(store, tmp_path, monkeypatch):
    long_chat = {"model": "m", "messages": [{"role": "user", "content": f"message {i}"} for i in range(2000)]}
    (tmp_path / "chats" / "long.json").write_text(json.dumps(long_chat))
    decoded = []
    real_decode = store_chatfile.decode
    monkeypatch.setattr(store_chatfile, "decode", lambda *a: decoded.append(a[0]) or real_decode(*a))
    for number in range(3):
        await a_turn(store, "long", f"q{number}", {"role": "assistant", "content": f"a{number}"})
    assert len((await store.get("long"))["messages"]) == 2006
    assert decoded == ["long"]  # read once; every turn after works on what it wrote
    long_chat["messages"] = long_chat["messages"][:5]
    (tmp_path / "chats" / "long.json").write_text(json.dumps(long_chat))  # a hand edit, in place
    assert len((await store.get("long"))["messages"]) == 5
    assert decoded == ["long", "long"]


def test_the_chat_cache_keeps_within_its_budget_and_drops_a_changed_file(tmp_path):
    cache = ChatCache(budget_bytes=250, largest_bytes=120)
    stats = {}
    for name, size in (("a", 100), ("b", 100), ("big", 200)):
        (tmp_path / name).write_bytes(b"x" * size)
        stats[name] = os.stat(tmp_path / name)
        cache.put(name, stats[name], {"name": name})
    assert cache.get("big", stats["big"]) is None  # larger than any one chat may be
    assert cache.get("a", stats["a"]) == {"name": "a"}  # now the most recently used
    (tmp_path / "c").write_bytes(b"x" * 100)
    cache.put("c", os.stat(tmp_path / "c"), {"name": "c"})
    assert cache.get("b", stats["b"]) is None  # the least recently used went
    assert cache.get("a", stats["a"]) == {"name": "a"}
    (tmp_path / "a").write_bytes(b"y" * 101)
    assert cache.get("a", os.stat(tmp_path / "a")) is None


@pytest.mark.gen_test
async def test_keyed_locks_serve_in_arrival_order_and_are_dropped_when_unused():
    from store.locks import KeyedLocks

    locks = KeyedLocks()
    order = []
    gate = asyncio.Event()

    async def take(key: str, number: int) -> None:
        async with locks.hold(key):
            order.append((key, number))
            await gate.wait()

    tasks = [asyncio.ensure_future(take("a", n)) for n in range(5)] + [asyncio.ensure_future(take("b", 0))]
    await wait_for(lambda: len(order) == 2, what="the first holder of each key")
    assert order == [("a", 0), ("b", 0)]  # one holder per key, other keys not blocked
    gate.set()
    await asyncio.gather(*tasks)
    assert [n for key, n in order if key == "a"] == [0, 1, 2, 3, 4]
    assert len(locks) == 0


@pytest.mark.gen_test
async def test_a_failing_disk_answers_500_saying_so(proxy, chats_dir):
    assert (await call(proxy, "GET", "/chats")).status == 200
    shutil.rmtree(chats_dir)
    chats_dir.write_text("not a folder any more")
    message = assert_error(await call(proxy, "POST", "/chat", {"name": "x", "model": "m"}), 500)
    assert message.startswith("Storage failed while saving chat 'x'") and "Not a directory" in message


def test_two_processes_renaming_onto_one_name_lose_nothing(tmp_path):
    """Two ChatFolders on one folder hold separate flocks, as two processes do: renaming two
    chats onto one new name at once, exactly one wins and the other chat stays as it was."""
    import threading

    from store import ChatExists

    folder = tmp_path / "chats"
    first, second = ChatFolder(folder), ChatFolder(folder)
    first.open()
    second.open()
    try:
        for round_number in range(30):
            target = f"target {round_number}"
            first.create(f"a{round_number}", {"model": "a", "messages": []})
            second.create(f"b{round_number}", {"model": "b", "messages": []})
            outcomes = {}
            start = threading.Barrier(2)

            def rename(chat_folder, name):
                start.wait()
                try:
                    chat_folder.rename(name, target)
                    outcomes[name] = "renamed"
                except ChatExists:
                    outcomes[name] = "exists"

            threads = [threading.Thread(target=rename, args=(first, f"a{round_number}")),
                       threading.Thread(target=rename, args=(second, f"b{round_number}"))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            assert sorted(outcomes.values()) == ["exists", "renamed"], outcomes
            winner = next(name for name, outcome in outcomes.items() if outcome == "renamed")
            loser = next(name for name, outcome in outcomes.items() if outcome == "exists")
            assert first.read(target)["model"] == winner[0]
            assert first.read(loser)["model"] == loser[0]
            with pytest.raises(Exception):
                first.read(winner)
    finally:
        first.close()
        second.close()


@pytest.mark.gen_test
async def test_odd_entries_in_the_folder_do_not_break_the_listing_or_search(proxy, chats_dir):
    assert (await call(proxy, "POST", "/chat", {"name": "good", "model": "m"})).status == 200
    (chats_dir / "a folder.json").mkdir()
    (chats_dir / "dangling.json").symlink_to(chats_dir / "nowhere.json")
    (chats_dir / "fifo.json").touch()
    os.unlink(chats_dir / "fifo.json")
    os.mkfifo(chats_dir / "fifo.json")
    listing = await call(proxy, "GET", "/chats")
    assert listing.status == 200, listing.body
    assert [chat["name"] for chat in listing.json["chats"]] == ["good"]
    assert (await call(proxy, "GET", "/chats?q=good")).status == 200
    assert "Not a regular file" in assert_error(await call(proxy, "GET", "/chat?name=a%20folder"), 500)
    assert "Not a regular file" in assert_error(await call(proxy, "GET", "/chat?name=fifo"), 500)  # and no thread hangs on it
    assert_error(await call(proxy, "GET", "/chat?name=dangling"), 404)


def test_export_leaves_out_a_chat_damaged_or_deleted_since_the_listing(tmp_path):
    folder = ChatFolder(tmp_path / "chats")
    folder.open()
    try:
        for name in ("good", "bad", "gone"):
            folder.create(name, {"model": "m", "messages": []})
        (tmp_path / "chats" / "bad.json").write_text("{ not json")
        (tmp_path / "chats" / "gone.json").unlink()
        lines = folder.export_lines(["good", "bad", "gone"]).decode().splitlines()
        assert [json.loads(line)["name"] for line in lines] == ["good"]
    finally:
        folder.close()
