"""Every route through a real socket: the seed README's shapes and status codes."""

from __future__ import annotations

import json

import pytest

from tests.helpers import assert_error, call

pytestmark = pytest.mark.both_engines


async def create(proxy, name="demo", **fields):
    response = await call(proxy, "POST", "/chat", {"name": name, "model": "test-model", **fields})
    assert response.status == 200, response.body
    return response.json


@pytest.mark.gen_test
async def test_create_returns_the_new_chat_with_seed_defaults(proxy):
    payload = await create(proxy, "my-conversation")
    assert payload["status"] == "success"
    assert payload["message"] == "Chat 'my-conversation' created"
    chat = payload["chat"]
    assert chat["model"] == "test-model"
    assert chat["messages"] == []
    assert chat["temperature"] == 0.7
    assert chat["max_tokens"] == -1
    assert chat["created_at"] == chat["updated_at"]


@pytest.mark.gen_test
async def test_create_keeps_given_temperature_and_max_tokens(proxy):
    chat = (await create(proxy, "x", temperature=1.2, max_tokens=256))["chat"]
    assert (chat["temperature"], chat["max_tokens"]) == (1.2, 256)


@pytest.mark.gen_test
async def test_list_is_sorted_by_id_with_seed_shape(proxy):
    for name in ("beta", "alpha", "gamma"):
        await create(proxy, name)
    response = await call(proxy, "GET", "/chats")
    assert response.status == 200
    assert response.json == {
        "status": "success",
        "chats": [{"id": n, "name": n, "model": "test-model"} for n in ("alpha", "beta", "gamma")],
    }


@pytest.mark.gen_test
async def test_get_returns_the_stored_chat(proxy):
    created = (await create(proxy, "demo"))["chat"]
    response = await call(proxy, "GET", "/chat?name=demo")
    assert response.status == 200
    assert response.json == {"status": "success", "chat": created}


@pytest.mark.gen_test
async def test_delete_removes_the_chat(proxy, stored):
    await create(proxy, "demo")
    response = await call(proxy, "DELETE", "/chat?name=demo")
    assert response.json == {"status": "success", "message": "Chat 'demo' deleted"}
    assert_error(await call(proxy, "GET", "/chat?name=demo"), 404)
    assert await stored.chat("demo") is None


@pytest.mark.gen_test
async def test_delete_message_removes_by_index_and_moves_updated_at(proxy, stored):
    chat = (await create(proxy, "demo"))["chat"]
    chat["messages"] = [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}]
    await stored.put("demo", chat)
    response = await call(proxy, "DELETE", "/chat/message", {"name": "demo", "index": 0})
    assert response.status == 200
    assert response.json == {
        "status": "success",
        "message": "Message at index 0 deleted",
        "removed_message": {"role": "user", "content": "one"},
    }
    changed = (await call(proxy, "GET", "/chat?name=demo")).json["chat"]
    assert changed["messages"] == [{"role": "assistant", "content": "two"}]
    assert changed["updated_at"] > changed["created_at"]


@pytest.mark.gen_test
async def test_create_twice_is_a_conflict(proxy):
    await create(proxy, "demo")
    assert "already exists" in assert_error(
        await call(proxy, "POST", "/chat", {"name": "demo", "model": "m"}), 409
    )


@pytest.mark.gen_test
async def test_unknown_chat_is_404_on_every_route(proxy):
    assert_error(await call(proxy, "GET", "/chat?name=nope"), 404)
    assert_error(await call(proxy, "DELETE", "/chat?name=nope"), 404)
    assert_error(await call(proxy, "DELETE", "/chat/message", {"name": "nope", "index": 0}), 404)
    assert_error(await call(proxy, "PUT", "/chat", {"name": "nope", "message": {"role": "user", "content": "hi"}}), 404)


@pytest.mark.gen_test
async def test_unknown_route_and_wrong_method_answer_json(proxy):
    assert_error(await call(proxy, "GET", "/nope"), 404)
    assert_error(await call(proxy, "POST", "/chats/extra", {}), 404)
    assert_error(await call(proxy, "PATCH", "/chats", {}), 405)
    assert_error(await call(proxy, "POST", "/chats", {}), 405)


BAD_BODIES = [
    (b"", "empty body"),
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "not an object"),
    (b'"text"', "a string"),
    (b"\xff\xfe", "not UTF-8"),
]


@pytest.mark.gen_test
@pytest.mark.parametrize("raw,_", BAD_BODIES)
async def test_bad_bodies_are_400_on_every_body_route(proxy, stored, fake, raw, _):
    await create(proxy, "demo")
    before = await stored.snapshot()
    for method, path in (("POST", "/chat"), ("PUT", "/chat"), ("DELETE", "/chat/message")):
        assert_error(await call(proxy, method, path, raw=raw), 400)
    assert await stored.snapshot() == before
    assert fake.requests == []


BAD_CREATES = [  # a body without "name" creates a chat under a name of its own (test_chats.py)
    {"name": "", "model": "m"},
    {"name": 7, "model": "m"},
    {"name": "x"},
    {"name": "x", "model": ""},
    {"name": "x", "model": ["m"]},
    {"name": "x", "model": "m", "temperature": "hot"},
    {"name": "x", "model": "m", "temperature": True},
    {"name": "x", "model": "m", "temperature": 9},
    {"name": "x", "model": "m", "max_tokens": 1.5},
    {"name": "x", "model": "m", "max_tokens": 0},
    {"name": "x", "model": "m", "max_tokens": "100"},
]


@pytest.mark.gen_test
@pytest.mark.parametrize("body", BAD_CREATES)
async def test_bad_create_is_400_and_writes_nothing(proxy, stored, body):
    assert_error(await call(proxy, "POST", "/chat", body), 400)
    assert await stored.names() == []


BAD_MESSAGES = [
    {"name": "demo"},
    {"name": "demo", "message": "hello"},
    {"name": "demo", "message": ["hello"]},
    {"name": "demo", "message": {"role": "user"}},
    {"name": "demo", "message": {"role": "user", "content": 5}},
    {"name": "demo", "message": {"role": "wizard", "content": "hi"}},
    {"message": {"role": "user", "content": "hi"}},
    {"name": "", "message": {"role": "user", "content": "hi"}},
]


@pytest.mark.gen_test
@pytest.mark.parametrize("body", BAD_MESSAGES)
async def test_bad_turn_is_400_changes_nothing_sends_nothing(proxy, stored, fake, body):
    await create(proxy, "demo")
    before = await stored.snapshot()
    assert_error(await call(proxy, "PUT", "/chat", body), 400)
    assert await stored.snapshot() == before
    assert fake.requests == []


@pytest.mark.gen_test
@pytest.mark.parametrize("index", [True, 1.5, "0", None, -1, 2, [0]])
async def test_bad_message_index_is_400(proxy, stored, index):
    chat = (await create(proxy, "demo"))["chat"]
    chat["messages"] = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    await stored.put("demo", chat)
    before = await stored.snapshot()
    assert_error(await call(proxy, "DELETE", "/chat/message", {"name": "demo", "index": index}), 400)
    assert await stored.snapshot() == before


@pytest.mark.gen_test
async def test_get_and_delete_without_name_are_400(proxy):
    assert_error(await call(proxy, "GET", "/chat"), 400)
    assert_error(await call(proxy, "GET", "/chat?name="), 400)
    assert_error(await call(proxy, "DELETE", "/chat"), 400)


@pytest.mark.gen_test
async def test_cors_preflight_and_headers(proxy):
    preflight = await call(proxy, "OPTIONS", "/chat", headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "PUT"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS"):
        assert method in preflight.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    listing = await call(proxy, "GET", "/chats", headers={"Origin": "http://x.test"})
    assert listing.headers["Access-Control-Allow-Origin"] == "*"
    error = await call(proxy, "GET", "/nope", headers={"Origin": "http://x.test"})
    assert error.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.gen_test
@pytest.mark.config(cors_origins=("http://app.test",))
async def test_cors_origins_list_is_honoured(proxy):
    allowed = await call(proxy, "GET", "/chats", headers={"Origin": "http://app.test"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://app.test"
    assert "Origin" in allowed.headers["Vary"]
    other = await call(proxy, "GET", "/chats", headers={"Origin": "http://evil.test"})
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.gen_test
async def test_seed_format_folder_is_read_as_is(proxy, chats_dir):
    chats_dir.mkdir(exist_ok=True)
    seed_chat = {
        "model": "neural-chat:latest",
        "messages": [{"role": "user", "content": "What is Python?"}, {"role": "assistant", "content": "A language."}],
        "temperature": 0.7,
        "max_tokens": -1,
        "created_at": "2025-01-15T10:30:00.123456",
        "updated_at": "2025-01-15T10:31:00.654321",
    }
    (chats_dir / "conversation-1.json").write_text(json.dumps(seed_chat, indent=2))
    listing = (await call(proxy, "GET", "/chats")).json["chats"]
    assert listing == [{"id": "conversation-1", "name": "conversation-1", "model": "neural-chat:latest"}]
    assert (await call(proxy, "GET", "/chat?name=conversation-1")).json["chat"] == seed_chat


@pytest.mark.gen_test
@pytest.mark.parametrize("depth", [65, 5000, 100_000])
async def test_deeply_nested_bodies_are_400(proxy, stored, depth):
    await create(proxy, "demo")
    before = await stored.snapshot()
    nested = b"[" * depth + b"]" * depth
    message = b'{"name": "demo", "message": {"role": "user", "content": "x", "extra": ' + nested + b"}}"
    assert "nested" in assert_error(await call(proxy, "PUT", "/chat", raw=message), 400)
    assert "nested" in assert_error(await call(proxy, "POST", "/chat", raw=b'{"name": "n", "model": "m", "x": ' + nested + b"}"), 400)
    assert await stored.snapshot() == before


@pytest.mark.gen_test
@pytest.mark.config(token="s3cret-token-for-tests-0123456789")
async def test_the_page_and_its_files_need_no_token_and_carry_a_strict_csp(proxy):
    for method in ("GET", "HEAD"):
        page = await call(proxy, method, "/")
        assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert b'<script type="module" src="/static/app.js">' in (await call(proxy, "GET", "/")).body
    for name in ("app.js", "markdown.js", "style.css"):
        asset = await call(proxy, "GET", "/static/" + name)
        assert asset.status == 200 and asset.body
    assert "No file" in assert_error(await call(proxy, "GET", "/static/nope.js"), 404)
    assert_error(await call(proxy, "GET", "/static/../config.toml"), 404)
    assert_error(await call(proxy, "GET", "/chats"), 401)
