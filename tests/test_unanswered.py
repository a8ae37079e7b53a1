"""A refused turn never piles up: a question that got no reply is kept, marked unanswered, and
sending it again (or regenerating) answers it instead of storing it twice; through real sockets."""

from __future__ import annotations

import asyncio
import json

import pytest

from store import history
from tests.fake_lmstudio import Reply
from tests.helpers import assert_error, call, closed_port_url, create_chat, stored_messages, stream, turn

pytestmark = pytest.mark.both_engines

HI = {"role": "user", "content": "hi"}
UNANSWERED_HI = {**HI, "unanswered": True}
DOWN = closed_port_url()  # LM Studio is not running


def roles_and_contents(messages: list[dict]) -> list[tuple[str, str]]:
    return [(message["role"], message["content"]) for message in messages]


def no_question_twice_in_a_row(requests: list[dict]) -> None:
    for body in requests:
        sent = body["messages"]
        for before, after in zip(sent, sent[1:]):
            assert (before["role"], before["content"]) != (after["role"], after["content"]), sent


REFUSALS = [
    Reply(status=404, error="Model 'nope' not found"),
    Reply(status=400, error="Trying to keep the first 9000 tokens when context the overflows"),
    Reply(status=500, error="Model crashed"),
    Reply(status=503, error="Model is loading"),
]


@pytest.mark.gen_test
@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda reply: str(reply.status))
async def test_a_refused_question_is_kept_marked_and_sending_it_again_answers_it(proxy, fake, stored, refusal):
    await create_chat(proxy)
    fake.script.extend([refusal, refusal])
    for _ in range(2):
        assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": HI}), refusal.status)
        assert await stored_messages(proxy) == [UNANSWERED_HI]
    result = await turn(proxy, content="hi")
    assert result.status == 200 and result.content() == "Hello, world!"
    messages = await stored_messages(proxy)
    assert roles_and_contents(messages) == [("user", "hi"), ("assistant", "Hello, world!")]
    assert messages[0] == HI  # the reply took the mark away
    assert [body["messages"] for body in fake.requests] == [[HI]] * 3
    no_question_twice_in_a_row(fake.requests)
    as_kept = (await stored.chat("demo"))["messages"]  # the folder's file, or PostgreSQL's rows
    assert [(m["role"], m["content"]) for m in as_kept] == [("user", "hi"), ("assistant", "Hello, world!")]
    assert "unanswered" not in as_kept[0]


@pytest.mark.gen_test
@pytest.mark.config(lm_studio_url=DOWN)
async def test_lm_studio_down_keeps_one_unanswered_question_however_often_it_is_sent(proxy):
    await create_chat(proxy)
    for _ in range(3):
        assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": HI}), 502)
    assert await stored_messages(proxy) == [UNANSWERED_HI]


@pytest.mark.gen_test
async def test_a_turn_stopped_before_its_first_token_leaves_the_question_unanswered(proxy, fake):
    await create_chat(proxy)
    fake.script.append(Reply(hold=asyncio.Event(), hold_at=0))  # never answers
    starter = asyncio.ensure_future(turn(proxy, content="hi"))
    await fake.wait_held()
    assert (await call(proxy, "POST", "/chat/stop", {"name": "demo"})).status == 200
    assert json.loads((await starter).data[-1])["error"]["type"] == "stopped"
    assert await stored_messages(proxy) == [UNANSWERED_HI]
    assert (await turn(proxy, content="hi")).content() == "Hello, world!"
    assert roles_and_contents(await stored_messages(proxy)) == [("user", "hi"), ("assistant", "Hello, world!")]
    assert fake.requests[-1]["messages"] == [HI]


@pytest.mark.gen_test
async def test_regenerate_answers_an_unanswered_question_and_takes_the_mark_away(proxy, fake):
    await create_chat(proxy)
    await turn(proxy, content="first")
    fake.script.append(Reply(status=500, error="Model crashed"))
    assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": HI}), 500)
    assert (await stored_messages(proxy))[-1] == UNANSWERED_HI
    result = await stream(proxy, "/chat/regenerate", {"name": "demo"}, method="POST")
    assert result.content() == "Hello, world!"
    response = await call(proxy, "GET", "/chat?name=demo")
    assert "alternatives" not in response.json["chat"]  # nothing was set aside: there was no reply
    messages = response.json["chat"]["messages"]
    assert roles_and_contents(messages)[-2:] == [("user", "hi"), ("assistant", "Hello, world!")]
    assert messages[-2] == HI
    assert [m["content"] for m in fake.requests[-1]["messages"]] == ["first", "Hello, world!", "hi"]


@pytest.mark.gen_test
async def test_only_the_same_text_retries_an_answered_question_or_another_text_is_a_new_message(proxy, fake):
    await create_chat(proxy)
    await turn(proxy, content="hi")
    await turn(proxy, content="hi")  # answered before: asked again, as the user typed it
    assert [m["content"] for m in await stored_messages(proxy)] == ["hi", "Hello, world!"] * 2
    fake.script.append(Reply(status=404, error="Model 'nope' not found"))
    assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": {"role": "user", "content": "again"}}), 404)
    assert (await turn(proxy, content="something else")).content() == "Hello, world!"
    tail = await stored_messages(proxy)
    assert roles_and_contents(tail[-3:]) == [("user", "again"), ("user", "something else"), ("assistant", "Hello, world!")]
    assert not any(history.UNANSWERED in message for message in tail)  # both are answered now


@pytest.mark.gen_test
async def test_a_rerun_of_an_unanswered_question_answers_the_edited_text(proxy, fake):
    await create_chat(proxy)
    fake.script.append(Reply(status=404, error="Model 'nope' not found"))
    assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": HI}), 404)
    body = {"name": "demo", "index": 0, "content": "hello?", "rerun": True}
    assert (await stream(proxy, "/chat/message", body)).content() == "Hello, world!"
    messages = await stored_messages(proxy)
    assert messages[0] == {"role": "user", "content": "hello?"}
    assert fake.requests[-1]["messages"] == [{"role": "user", "content": "hello?"}]


def test_the_rules_are_pure_and_replace_messages_rather_than_change_them():
    question = dict(HI)
    chat = {"messages": [question]}
    history.mark_unanswered(chat)
    assert chat["messages"] == [UNANSWERED_HI] and question == HI  # a shared message is never changed
    assert history.is_retry(chat, dict(HI)) and not history.is_retry(chat, {"role": "user", "content": "hi!"})
    assert not history.is_retry(chat, {"role": "system", "content": "hi"})
    marked = chat["messages"][0]
    history.apply_plan(chat, {"append": dict(HI)})
    assert chat["messages"] == [HI] and marked == UNANSWERED_HI
    reply_only = {"messages": [{"role": "assistant", "content": "x"}]}
    history.mark_unanswered(reply_only)
    assert reply_only["messages"] == [{"role": "assistant", "content": "x"}]  # only a question is marked
