"""Hostile names: every name store/names.py accepts lives its whole life inside the chats
folder, whatever happened to the folder meanwhile; every other name is a clear 400."""

from __future__ import annotations

import json
import os
import shutil
from urllib.parse import quote

import pytest

from store import InvalidChatName
from store.names import MAX_NAME_CHARS, file_name_for
from tests.helpers import assert_error, call, stream

ACCEPTED = [
    "..", "../evil", "../../etc/passwd", "/abs/path", "a/b", "a\\b", "..\\..\\win", "a\0b", "nul\0",
    "bell\x07 esc\x1b del\x7f", "tab\tnew\nline\rcr", ".hidden", ".", "...", ".locks", ".search.sqlite",
    "x" * MAX_NAME_CHARS, "مرحبا بالعالم", "\u202eevil.exe", "emoji 😀🎉👩‍👩‍👧", "100%", "%2E%2E", "%", "%%41",
    "CON", "NUL", "con.txt", "AUX", "COM1", "LPT9", "Chat", "chat", "CHAT", " spaced ", "trailing.", "x.json",
    "a" + "\u0301" * 50, "ｆｕｌｌｗｉｄｔｈ",
]
REFUSED = ["", "x" * (MAX_NAME_CHARS + 1), "😀" * 60, "half \ud800 surrogate"]


def accepted_by_names_py(name: str) -> bool:
    try:
        file_name_for(name)
    except InvalidChatName:
        return False
    return True


def test_the_lists_are_what_names_py_says():
    assert all(accepted_by_names_py(name) for name in ACCEPTED)
    assert not any(accepted_by_names_py(name) for name in REFUSED)


def remove_contents(folder):
    for entry in folder.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


FOLDER_STATES = {
    "as the server made it": lambda folder: None,
    "made by the original Flask server": lambda folder: (shutil.rmtree(folder / ".locks"), (folder / "seed.json").write_text('{"model": "m", "messages": []}')),
    ".locks removed while running": lambda folder: shutil.rmtree(folder / ".locks"),
    "contents removed while running": remove_contents,
    "folder removed while running": shutil.rmtree,
}


async def life_of(proxy, chats_dir, name):
    """Create, read, stream into, list, delete, create again: each must work."""
    query = "?name=" + quote(name, safe="")
    created = await call(proxy, "POST", "/chat", {"name": name, "model": "m"})
    assert created.status == 200, (name, created.body)
    assert (await call(proxy, "GET", "/chat" + query)).json["chat"]["model"] == "m"
    result = await stream(proxy, "/chat", {"name": name, "message": {"role": "user", "content": "hi"}})
    assert result.status == 200 and result.content() == "Hello, world!", (name, result.status, result.body)
    assert name in [chat["name"] for chat in (await call(proxy, "GET", "/chats")).json["chats"]]
    messages = (await call(proxy, "GET", "/chat" + query)).json["chat"]["messages"]
    assert [m["content"] for m in messages] == ["hi", "Hello, world!"]
    assert (await call(proxy, "DELETE", "/chat" + query)).status == 200
    assert_error(await call(proxy, "GET", "/chat" + query), 404)
    assert (await call(proxy, "POST", "/chat", {"name": name, "model": "m2"})).status == 200
    assert (await call(proxy, "DELETE", "/chat" + query)).status == 200


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("state", FOLDER_STATES)
async def test_every_accepted_name_lives_inside_the_folder(proxy, chats_dir, tmp_path, state):
    sentinel = tmp_path / "sentinel.json"
    sentinel.write_text("keep me")
    outside = sorted(os.listdir(tmp_path))
    assert (await call(proxy, "GET", "/chats")).status == 200
    for name in ACCEPTED:
        FOLDER_STATES[state](chats_dir)
        await life_of(proxy, chats_dir, name)
        assert sorted(os.listdir(tmp_path)) == outside, name
    assert sentinel.read_text() == "keep me"
    assert not any(path.suffix == ".json" and path.parent != chats_dir for path in tmp_path.rglob("*.json") if path != sentinel)


@pytest.mark.gen_test
@pytest.mark.both_engines
async def test_names_differing_only_in_case_are_different_chats(proxy):
    for name in ("Chat", "chat", "CHAT"):
        assert (await call(proxy, "POST", "/chat", {"name": name, "model": name})).status == 200
    for name in ("Chat", "chat", "CHAT"):
        assert (await call(proxy, "GET", "/chat?name=" + name)).json["chat"]["model"] == name


@pytest.mark.gen_test
async def test_the_reported_reproduction(proxy, chats_dir):
    """Clear the folder while the server runs, then create "../evil": 200, inside the folder."""
    assert (await call(proxy, "POST", "/chat", {"name": "before", "model": "m"})).status == 200
    remove_contents(chats_dir)
    response = await call(proxy, "POST", "/chat", {"name": "../evil", "model": "m"})
    assert response.status == 200, response.body
    assert json.loads((chats_dir / "%2E.%2Fevil.json").read_text())["model"] == "m"
    assert not (chats_dir.parent / "evil.json").exists()


@pytest.mark.gen_test
@pytest.mark.parametrize("name", REFUSED)
async def test_refused_names_are_400_everywhere_and_write_nothing(proxy, chats_dir, name):
    query = "?name=" + quote(name, safe="", errors="surrogatepass")
    bodies = [
        ("POST", "/chat", {"name": name, "model": "m"}),
        ("PUT", "/chat", {"name": name, "message": {"role": "user", "content": "hi"}}),
        ("PATCH", "/chat", {"name": name, "model": "m"}),
        ("DELETE", "/chat/message", {"name": name, "index": 0}),
        ("PUT", "/chat/message", {"name": name, "index": 0, "content": "x"}),
        ("POST", "/chat/regenerate", {"name": name}),
        ("POST", "/chat/branch", {"name": name, "index": 0, "alternative": 0}),
    ]
    for method, path, body in bodies:
        raw = json.dumps(body).encode()  # a lone surrogate goes as its \\ud800 escape
        assert_error(await call(proxy, method, path, raw=raw), 400)
    for path in ("/chat", "/chat/branches", "/chat/export"):
        assert_error(await call(proxy, "GET", path + query), 400)
    assert_error(await call(proxy, "DELETE", "/chat" + query), 400)
    assert not chats_dir.exists() or list(chats_dir.glob("*.json")) == []
