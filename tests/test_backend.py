"""The chat backend beyond the seed: rename and settings, edit, regenerate, branches,
reasoning and turn details, search, export and import; through real sockets."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest

from tests.fake_lmstudio import MODEL, Reply
from tests.helpers import assert_error, call, stream, turn, wait_for
from tests.helpers import create_chat as create

pytestmark = pytest.mark.both_engines

HI = {"role": "user", "content": "hi"}


async def chat(proxy, name="demo"):
    response = await call(proxy, "GET", "/chat?name=" + quote(name, safe=""))
    assert response.status == 200, response.body
    return response.json["chat"]


def pairs(messages):
    return [(m["role"], m["content"]) for m in messages]


async def seed_reader(stored, name="demo"):
    """What the original server's frontends read of a chat file: ``messages`` of role and content."""
    data = await stored.chat(name)
    return [(m["role"], m["content"]) for m in data["messages"]]


# -- PATCH /chat ---------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_rename_moves_the_chat_and_keeps_everything(proxy, stored):
    await create(proxy, "old")
    await turn(proxy, "old")
    before = await chat(proxy, "old")
    response = await call(proxy, "PATCH", "/chat", {"name": "old", "new_name": "new / name"})
    assert response.status == 200, response.body
    assert response.json["name"] == "new / name"
    assert_error(await call(proxy, "GET", "/chat?name=old"), 404)
    after = await chat(proxy, "new / name")
    assert after["messages"] == before["messages"]
    assert [c["name"] for c in (await call(proxy, "GET", "/chats")).json["chats"]] == ["new / name"]
    assert await stored.chat("old") is None


@pytest.mark.gen_test
async def test_rename_onto_an_existing_chat_is_409_and_changes_nothing(proxy, stored):
    await create(proxy, "a")
    await create(proxy, "b", temperature=1.5)
    before = await stored.snapshot()
    assert "already exists" in assert_error(await call(proxy, "PATCH", "/chat", {"name": "a", "new_name": "b"}), 409)
    assert await stored.snapshot() == before


@pytest.mark.gen_test
async def test_rename_onto_a_chat_another_process_just_wrote_is_409(proxy, stored):
    await create(proxy, "a")
    await call(proxy, "GET", "/chats")  # the listing knows only "a"
    await stored.put("b", {"model": "theirs", "messages": []})
    assert_error(await call(proxy, "PATCH", "/chat", {"name": "a", "new_name": "b"}), 409)
    assert (await stored.chat("b"))["model"] == "theirs"
    assert await stored.chat("a") is not None


@pytest.mark.gen_test
async def test_settings_change_and_the_system_prompt_goes_first_upstream(proxy, fake, stored):
    await create(proxy)
    response = await call(proxy, "PATCH", "/chat", {"name": "demo", "model": "other", "temperature": 0.1, "max_tokens": 50, "system_prompt": "Be brief."})
    assert response.status == 200, response.body
    changed = await chat(proxy)
    assert (changed["model"], changed["temperature"], changed["max_tokens"], changed["system_prompt"]) == ("other", 0.1, 50, "Be brief.")
    await turn(proxy)
    request = fake.requests[-1]
    assert (request["model"], request["temperature"], request["max_tokens"]) == ("other", 0.1, 50)
    assert request["messages"] == [{"role": "system", "content": "Be brief."}, HI]
    assert (await seed_reader(stored))[0] == ("user", "hi")  # not part of messages
    await call(proxy, "PATCH", "/chat", {"name": "demo", "system_prompt": None})
    assert "system_prompt" not in await chat(proxy)
    await turn(proxy, content="again")
    assert fake.requests[-1]["messages"][0] == HI


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "body",
    [
        {"name": "demo"},
        {"name": "demo", "temperature": 3},
        {"name": "demo", "model": ""},
        {"name": "demo", "max_tokens": 0},
        {"name": "demo", "system_prompt": 5},
        {"name": "demo", "new_name": ""},
        {"name": "demo", "new_name": "x" * 201},
        {"name": "demo", "new_name": 7},
    ],
)
async def test_bad_patch_is_400_and_changes_nothing(proxy, stored, body):
    await create(proxy)
    before = await stored.snapshot()
    assert_error(await call(proxy, "PATCH", "/chat", body), 400)
    assert await stored.snapshot() == before


@pytest.mark.gen_test
async def test_patch_of_an_unknown_chat_is_404(proxy):
    assert_error(await call(proxy, "PATCH", "/chat", {"name": "nope", "new_name": "x"}), 404)
    assert_error(await call(proxy, "PATCH", "/chat", {"name": "nope", "model": "x"}), 404)


@pytest.mark.gen_test
async def test_rename_waits_for_the_running_turn_whose_reply_lands_first(proxy, fake, services):
    hold = asyncio.Event()
    fake.script.append(Reply(tokens=["one", " two"], hold=hold, hold_at=1))
    await create(proxy)
    running = asyncio.ensure_future(turn(proxy))
    await fake.wait_held()
    renaming = asyncio.ensure_future(call(proxy, "PATCH", "/chat", {"name": "demo", "new_name": "renamed"}))
    # The rename waits behind the turn (two users of the chat's turn lock).
    await wait_for(lambda: services.store.turn_waiters("demo") == 2, what="the rename to queue behind the turn")
    assert not renaming.done()
    hold.set()
    await running
    assert (await renaming).status == 200
    assert pairs((await chat(proxy, "renamed"))["messages"]) == [("user", "hi"), ("assistant", "one two")]


# -- reasoning and what a turn records -------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_reasoning_deltas_are_stored_apart_and_never_sent_back(proxy, fake, field):
    fake.script.append(Reply(tokens=["Answer"], reasoning=["Let me ", "think"], reasoning_field=field, usage=True))
    await create(proxy)
    result = await turn(proxy)
    assert result.data[-1] == "[DONE]"
    reply = (await chat(proxy))["messages"][-1]
    assert (reply["content"], reply["reasoning"]) == ("Answer", "Let me think")
    await turn(proxy, content="next")
    sent = fake.requests[-1]["messages"]
    assert sent[1] == {"role": "assistant", "content": "Answer"}


@pytest.mark.gen_test
async def test_think_tags_in_content_are_split_off(proxy, fake):
    fake.script.append(Reply(tokens=["<think>", "plan it", "</think>", "\n\nThe answer"]))
    await create(proxy)
    result = await turn(proxy)
    assert result.content() == "<think>plan it</think>\n\nThe answer"  # relayed as sent
    reply = (await chat(proxy))["messages"][-1]
    assert (reply["content"], reply["reasoning"]) == ("The answer", "plan it")


@pytest.mark.gen_test
async def test_a_reply_records_finish_reason_model_usage_and_timings(proxy, fake):
    fake.script.append(Reply(tokens=["a", "b"], usage=True))
    await create(proxy)
    await turn(proxy)
    reply = (await chat(proxy))["messages"][-1]
    assert reply["finish_reason"] == "stop" and "interrupted" not in reply
    assert reply["model"] == MODEL
    assert reply["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    timings = reply["timings"]
    assert 0 <= timings["first_token_ms"] <= timings["total_ms"]
    assert fake.requests[-1]["stream_options"] == {"include_usage": True}


# -- edit, regenerate, branches --------------------------------------------------------------


@pytest.mark.gen_test
async def test_edit_in_place_keeps_the_old_version_as_a_branch(proxy, fake, stored):
    await create(proxy)
    await turn(proxy, content="helo")
    response = await call(proxy, "PUT", "/chat/message", {"name": "demo", "index": 0, "content": "hello"})
    assert response.status == 200, response.body
    assert pairs(response.json["chat"]["messages"]) == [("user", "hello"), ("assistant", "Hello, world!")]
    assert await seed_reader(stored) == [("user", "hello"), ("assistant", "Hello, world!")]
    branches = (await call(proxy, "GET", "/chat/branches?name=demo")).json["branches"]
    assert branches == [{"index": 0, "alternatives": [{"alternative": 0, "messages": 2, "preview": "helo"}]}]
    assert len(fake.requests) == 1  # an edit without rerun asks nothing


@pytest.mark.gen_test
async def test_edit_with_rerun_streams_a_new_reply_and_keeps_the_old_branch(proxy, fake, stored):
    await create(proxy)
    await turn(proxy, content="first question")
    await turn(proxy, content="second")
    fake.script.append(Reply(tokens=["New", " answer"]))
    result = await stream(proxy, "/chat/message", {"name": "demo", "index": 0, "content": "better question", "rerun": True})
    assert result.status == 200 and result.content() == "New answer"
    assert fake.requests[-1]["messages"] == [{"role": "user", "content": "better question"}]
    assert await seed_reader(stored) == [("user", "better question"), ("assistant", "New answer")]
    assert (await call(proxy, "POST", "/chat/branch", {"name": "demo", "index": 0, "alternative": 0})).status == 200
    assert await seed_reader(stored) == [("user", "first question"), ("assistant", "Hello, world!"), ("user", "second"), ("assistant", "Hello, world!")]


@pytest.mark.gen_test
async def test_rerun_of_an_assistant_message_is_400_and_asks_nothing(proxy, fake, stored):
    await create(proxy)
    await turn(proxy)
    before = await stored.snapshot()
    asked = len(fake.requests)
    assert_error(await call(proxy, "PUT", "/chat/message", {"name": "demo", "index": 1, "content": "x", "rerun": True}), 400)
    assert await stored.snapshot() == before and len(fake.requests) == asked


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "body",
    [{"name": "demo", "index": 9, "content": "x"}, {"name": "demo", "index": -1, "content": "x"}, {"name": "demo", "index": 0},
     {"name": "demo", "index": 0, "content": 3}, {"name": "demo", "index": "0", "content": "x"}, {"name": "demo", "index": 0, "content": "x", "rerun": "yes"}],
)
async def test_bad_edit_is_400_and_changes_nothing(proxy, stored, body):
    await create(proxy)
    await turn(proxy)
    before = await stored.snapshot()
    assert_error(await call(proxy, "PUT", "/chat/message", body), 400)
    assert await stored.snapshot() == before


@pytest.mark.gen_test
async def test_regenerate_then_branch_back_and_forth_loses_nothing(proxy, fake, stored):
    await create(proxy)
    fake.script.append(Reply(tokens=["first reply"]))
    await turn(proxy)
    fake.script.append(Reply(tokens=["second reply"]))
    result = await stream(proxy, "/chat/regenerate", {"name": "demo"}, method="POST")
    assert result.content() == "second reply"
    assert fake.requests[-1]["messages"] == [HI]
    assert await seed_reader(stored) == [("user", "hi"), ("assistant", "second reply")]
    branches = (await call(proxy, "GET", "/chat/branches?name=demo")).json["branches"]
    assert branches == [{"index": 1, "alternatives": [{"alternative": 0, "messages": 1, "preview": "first reply"}]}]
    switched = await call(proxy, "POST", "/chat/branch", {"name": "demo", "index": 1, "alternative": 0})
    assert pairs(switched.json["chat"]["messages"]) == [("user", "hi"), ("assistant", "first reply")]
    assert await seed_reader(stored) == [("user", "hi"), ("assistant", "first reply")]
    await call(proxy, "POST", "/chat/branch", {"name": "demo", "index": 1, "alternative": 0})
    assert await seed_reader(stored) == [("user", "hi"), ("assistant", "second reply")]
    ours = await chat(proxy)
    assert ours["alternatives"]["1"][0]["messages"][0]["content"] == "first reply"


@pytest.mark.gen_test
async def test_regenerate_needs_a_user_message_and_branch_needs_an_alternative(proxy, fake, stored):
    await create(proxy)
    assert_error(await call(proxy, "POST", "/chat/regenerate", {"name": "demo"}), 400)
    assert fake.requests == []
    await turn(proxy)
    before = await stored.snapshot()
    for body in ({"name": "demo", "index": 1, "alternative": 0}, {"name": "demo", "index": 1, "alternative": True}, {"name": "demo", "index": 0}):
        assert_error(await call(proxy, "POST", "/chat/branch", body), 400)
    assert_error(await call(proxy, "POST", "/chat/branch", {"name": "nope", "index": 0, "alternative": 0}), 404)
    assert_error(await call(proxy, "GET", "/chat/branches?name=nope"), 404)
    assert await stored.snapshot() == before


@pytest.mark.gen_test
async def test_regenerate_of_a_failed_turn_answers_the_question_without_an_alternative(proxy, fake):
    fake.script.append(Reply(status=404))
    await create(proxy)
    assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": HI}), 404)
    result = await stream(proxy, "/chat/regenerate", {"name": "demo"}, method="POST")
    assert result.content() == "Hello, world!"
    stored = await chat(proxy)
    assert pairs(stored["messages"]) == [("user", "hi"), ("assistant", "Hello, world!")]
    assert "alternatives" not in stored


# -- search ------------------------------------------------------------------------------


async def search(proxy, query, **extra):
    response = await call(proxy, "GET", "/chats?q=" + quote(query) + "".join(f"&{k}={v}" for k, v in extra.items()))
    assert response.status == 200, response.body
    return response.json["chats"]


async def write_chat(stored, name, *contents, model="m"):
    """A chat put in place beside the server: a hand edit, or another process's."""
    messages = [{"role": ("user", "assistant")[i % 2], "content": c} for i, c in enumerate(contents)]
    await stored.put(name, {"model": model, "messages": messages})


@pytest.mark.gen_test
async def test_search_finds_names_and_contents_ranked_with_a_snippet(proxy, stored):
    await write_chat(stored, "Rust lifetimes", "what are lifetimes?", "borrow checker things")
    await write_chat(stored, "cooking", "a recipe", "mention rust once on the pan")
    await write_chat(stored, "unrelated", "nothing", "here")
    found = await search(proxy, "rust")
    assert [c["name"] for c in found] == ["Rust lifetimes", "cooking"]
    assert found[0]["model"] == "m" and found[0]["id"] == "Rust lifetimes"
    assert "**rust**" in found[1]["snippet"]
    assert [c["name"] for c in await search(proxy, "recipe pan")] == ["cooking"]
    assert [c["name"] for c in await search(proxy, "borr")] == ["Rust lifetimes"]  # prefix while typing
    assert await search(proxy, "rust nothing") == []


@pytest.mark.gen_test
async def test_search_sees_our_changes_and_hand_edits_and_survives_losing_its_index(proxy, chats_dir, stored):
    await create(proxy)
    await turn(proxy, content="zebra crossing")
    assert [c["name"] for c in await search(proxy, "zebra")] == ["demo"]
    await write_chat(stored, "by hand", "the zebra again")
    assert sorted(c["name"] for c in await search(proxy, "zebra")) == ["by hand", "demo"]
    await call(proxy, "DELETE", "/chat?name=demo")
    assert [c["name"] for c in await search(proxy, "zebra")] == ["by hand"]
    for path in chats_dir.glob(".search.sqlite*"):
        path.unlink()
    assert [c["name"] for c in await search(proxy, "zebra")] == ["by hand"]
    await call(proxy, "PATCH", "/chat", {"name": "by hand", "new_name": "renamed"})
    assert [c["name"] for c in await search(proxy, "zebra")] == ["renamed"]


@pytest.mark.gen_test
async def test_a_damaged_search_index_is_rebuilt(proxy, chats_dir, stored, services):
    await write_chat(stored, "kept", "a unicorn")
    assert [c["name"] for c in await search(proxy, "unicorn")] == ["kept"]
    await services.store.close()  # the worker lets go of the index
    for path in chats_dir.glob(".search.sqlite*"):
        path.write_bytes(b"this is not a database" * 100)
    assert [c["name"] for c in await search(proxy, "unicorn")] == ["kept"]


@pytest.mark.gen_test
@pytest.mark.parametrize("query", ['"', "a OR b", "NEAR(a b)", "*", "-x", "col:val", "'; DROP TABLE files; --", "ünïcödé", "😀", "^"])
async def test_search_syntax_in_the_query_is_just_text(proxy, stored, query):
    await write_chat(stored, "x", "a b ünïcödé")
    response = await call(proxy, "GET", "/chats?q=" + quote(query))
    assert response.status == 200, response.body
    assert isinstance(response.json["chats"], list)


@pytest.mark.gen_test
async def test_search_limit_is_checked(proxy, stored):
    for number in range(5):
        await write_chat(stored, f"c{number}", "common word")
    assert len(await search(proxy, "common", limit=2)) == 2
    for bad in ("0", "x", "100000", "-1"):
        assert_error(await call(proxy, "GET", f"/chats?q=common&limit={bad}"), 400)


# -- export and import -----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_export_one_chat_as_json_and_markdown(proxy, fake):
    fake.script.append(Reply(tokens=["The answer"], reasoning=["pondering"]))
    await create(proxy, "Q&A: 1/2")
    await call(proxy, "PATCH", "/chat", {"name": "Q&A: 1/2", "system_prompt": "Be kind"})
    await turn(proxy, "Q&A: 1/2", content="The question")
    name = quote("Q&A: 1/2", safe="")
    as_json = await call(proxy, "GET", f"/chat/export?name={name}")
    assert as_json.status == 200
    assert json.loads(as_json.body) == await chat(proxy, "Q&A: 1/2")
    assert as_json.headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''Q%26A%3A%201%2F2.json" in as_json.headers["Content-Disposition"]
    markdown = await call(proxy, "GET", f"/chat/export?name={name}&format=markdown")
    assert markdown.headers["Content-Type"].startswith("text/markdown")
    text = markdown.body.decode()
    assert text.startswith("# Q&A: 1/2\n")
    for part in ("## System\n\nBe kind", "## User\n\nThe question", "## Assistant", "> pondering", "The answer"):
        assert part in text
    assert_error(await call(proxy, "GET", f"/chat/export?name={name}&format=pdf"), 400)
    assert_error(await call(proxy, "GET", "/chat/export?name=nope"), 404)


@pytest.mark.gen_test
async def test_export_all_as_ndjson_imports_back_the_same(proxy, stored, fake):
    for number in range(250):  # more than one batch
        await write_chat(stored, f"chat {number:03}", f"question {number}", f"answer {number}")
    exported = await call(proxy, "GET", "/chats/export")
    assert exported.status == 200 and exported.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in exported.body.decode().splitlines()]
    assert [line["name"] for line in lines] == [f"chat {n:03}" for n in range(250)]
    assert lines[7]["chat"]["messages"][1]["content"] == "answer 7"
    await stored.clear()
    imported = await call(proxy, "POST", "/chats/import", raw=exported.body)
    assert imported.status == 200, imported.body
    assert len(imported.json["imported"]) == 250 and imported.json["errors"] == []
    assert (await chat(proxy, "chat 007"))["messages"] == lines[7]["chat"]["messages"]


@pytest.mark.gen_test
async def test_import_never_overwrites_and_reports_bad_items_by_position(proxy, stored):
    await create(proxy, "taken")
    before = await stored.chat("taken")
    lines = [
        {"name": "taken", "chat": {"model": "m", "messages": [HI]}},
        "not an object",
        {"name": "fine", "chat": {"model": "m", "messages": [{"role": "wizard", "content": "x"}]}},
        {"name": "taken", "chat": {"model": "m", "messages": []}},
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode() + b"\n{broken json\n"
    response = await call(proxy, "POST", "/chats/import", raw=body)
    assert response.status == 200, response.body
    assert response.json["imported"] == [{"position": 0, "name": "taken (2)"}, {"position": 3, "name": "taken (3)"}]
    assert [error["position"] for error in response.json["errors"]] == [1, 2, 4]
    assert "role" in response.json["errors"][1]["message"]
    assert await stored.chat("taken") == before
    assert pairs((await chat(proxy, "taken (2)"))["messages"]) == [("user", "hi")]


@pytest.mark.gen_test
async def test_import_a_seed_chat_file(proxy):
    seed = {"model": "neural-chat:latest", "messages": [HI, {"role": "assistant", "content": "Hey"}], "temperature": 0.7,
            "max_tokens": -1, "created_at": "2025-01-15T10:30:00.123456", "updated_at": "2025-01-15T10:31:00.654321"}
    response = await call(proxy, "POST", "/chats/import?name=from%20seed", raw=json.dumps(seed).encode())
    assert response.json["imported"] == [{"position": 0, "name": "from seed"}]
    assert await chat(proxy, "from seed") == seed


def chatgpt_export():
    """Two conversations as ChatGPT exports them: a tree of nodes, current_node at a leaf."""
    def node(node_id, parent, children, role=None, text=None, model=None):
        message = None
        if role:
            message = {"id": node_id, "author": {"role": role}, "content": {"content_type": "text", "parts": [text]},
                       "metadata": {"model_slug": model} if model else {}}
        return {"id": node_id, "message": message, "parent": parent, "children": children}

    mapping = {
        "root": node("root", None, ["sys"]),
        "sys": node("sys", "root", ["u1"], "system", ""),
        "u1": node("u1", "sys", ["a1", "a1b"], "user", "Name a colour"),
        "a1": node("a1", "u1", [], "assistant", "Red", "gpt-4o"),
        "a1b": node("a1b", "u1", ["u2"], "assistant", "Blue", "gpt-4o"),
        "u2": node("u2", "a1b", ["a2"], "user", "Why?"),
        "a2": node("a2", "u2", [], "assistant", "It calms.", "gpt-4o"),
    }
    return [
        {"title": "Colours", "create_time": 1700000000.5, "update_time": 1700000100.0, "mapping": mapping, "current_node": "a2"},
        {"title": "Broken", "mapping": {}},
    ]


@pytest.mark.gen_test
async def test_import_chatgpt_conversations_with_branches(proxy, stored):
    response = await call(proxy, "POST", "/chats/import", raw=json.dumps(chatgpt_export()).encode())
    assert response.status == 200, response.body
    assert response.json["imported"] == [{"position": 0, "name": "Colours"}]
    assert [e["position"] for e in response.json["errors"]] == [1]
    colours = await chat(proxy, "Colours")
    assert pairs(colours["messages"]) == [("user", "Name a colour"), ("assistant", "Blue"), ("user", "Why?"), ("assistant", "It calms.")]
    assert colours["model"] == "gpt-4o" and colours["created_at"].startswith("2023-11-14T22:13:20")
    assert (await seed_reader(stored, "Colours"))[1] == ("assistant", "Blue")
    await call(proxy, "POST", "/chat/branch", {"name": "Colours", "index": 1, "alternative": 0})
    assert await seed_reader(stored, "Colours") == [("user", "Name a colour"), ("assistant", "Red")]


@pytest.mark.gen_test
@pytest.mark.parametrize("raw", [b"", b"   ", b"42", b'"text"', b"not json at all", b"\xff\xfe"])
async def test_an_upload_that_is_no_known_format_is_400(proxy, stored, raw):
    assert_error(await call(proxy, "POST", "/chats/import", raw=raw), 400)
    assert await stored.names() == []


@pytest.mark.gen_test
@pytest.mark.config(max_body_size=1000, max_import_size=100_000)
async def test_imports_take_their_own_body_limit(proxy):
    line = json.dumps({"name": "big", "chat": {"model": "m", "messages": [{"role": "user", "content": "x" * 5000}]}}).encode()
    assert (await call(proxy, "POST", "/chats/import", raw=line)).status == 200
    assert_error(await call(proxy, "POST", "/chats/import", raw=b"[" + b" " * 200_000 + b"]"), 413)
    assert_error(await call(proxy, "POST", "/chat", raw=line), 413)


@pytest.mark.gen_test
async def test_a_list_broken_in_the_middle_imports_what_comes_before(proxy):
    good = json.dumps({"name": "one", "chat": {"model": "m", "messages": [HI]}})
    body = f'  [ {good} , {good.replace("one", "two")}, {{"name": broken}}, {good} ]'.encode()
    response = await call(proxy, "POST", "/chats/import", raw=body)
    assert response.status == 200, response.body
    assert response.json["imported"] == [{"position": 0, "name": "one"}, {"position": 1, "name": "two"}]
    [error] = response.json["errors"]
    assert error["position"] == 2 and "not valid JSON" in error["message"]
    missing_comma = f"[{good} {good}]".encode()
    response = await call(proxy, "POST", "/chats/import", raw=missing_comma)
    assert [e["message"] for e in response.json["errors"]] == ["the list goes on without a comma"]
    assert (await call(proxy, "POST", "/chats/import", raw=b"[]")).json["imported"] == []


@pytest.mark.gen_test(timeout=20)
async def test_a_client_leaving_mid_export_is_no_error(proxy, stored, caplog, services):
    for number in range(300):
        await write_chat(stored, f"c{number:03}", "x" * 2000)
    result = await stream(proxy, "/chats/export", {}, method="GET", stop=lambda result: len(result.chunks) >= 1)
    assert result.status == 200
    assert (await call(proxy, "GET", "/chats")).status == 200  # the server is fine
    def export_ended():
        labels = {"route": "/chats/export", "method": "GET", "status": "200"}
        return services.metrics.registry.get_sample_value("chatproxy_requests_total", labels) == 1

    await wait_for(export_ended, what="the export to end")
    assert "Traceback" not in caplog.text and "Uncaught exception" not in caplog.text
