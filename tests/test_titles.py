"""Titles: from the first message when the first turn begins, improved by the model in the
background once the first reply is stored, never over the user's; searched like names."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest

from store import titles
from tests.fake_lmstudio import Reply
from tests.helpers import assert_error, call, create_chat, turn, wait_for

pytestmark = pytest.mark.both_engines

ASKING = pytest.mark.config(model_titles=True)
LONG_QUESTION = "How do I make my sourdough starter rise faster in a cold kitchen during the winter months?\nThanks!"


async def chat(proxy, name="demo") -> dict:
    response = await call(proxy, "GET", "/chat?name=" + quote(name, safe=""))
    assert response.status == 200, response.body
    return response.json["chat"]


async def recent(proxy) -> list[dict]:
    response = await call(proxy, "GET", "/chats?sort=recent")
    assert response.status == 200, response.body
    return response.json["chats"]


def title_requests(fake) -> list[dict]:
    return [body for body in fake.requests if not body.get("stream")]


async def titles_settled(services) -> None:
    await wait_for(lambda: services.turns.titles.pending == 0, 10, "the model's title")


@pytest.mark.gen_test
async def test_the_first_turn_names_the_chat_after_the_first_line_of_its_question(proxy, fake):
    await create_chat(proxy)
    assert "title" not in await chat(proxy)  # no title before the first turn
    await turn(proxy, content="\n  " + LONG_QUESTION)
    stored = await chat(proxy)
    assert stored["title"] == "How do I make my sourdough starter rise faster in a cold…"
    assert len(stored["title"]) <= titles.SHORT_TITLE_CHARS and stored["title_source"] == "message"
    await turn(proxy, content="A second question")
    assert (await chat(proxy))["title"] == stored["title"]  # the first message's, once
    assert [entry["title"] for entry in await recent(proxy)] == [stored["title"]]
    assert title_requests(fake) == []  # chats.model_titles is off here


@pytest.mark.gen_test
@ASKING
async def test_the_model_improves_the_title_once_reasoning_stripped(proxy, fake, services):
    fake.script.extend([Reply(), Reply(tokens=["<think>They ask about bread.</think>", '**Title:** "Faster Sourdough in Winter".'])])
    await create_chat(proxy)
    result = await turn(proxy, content=LONG_QUESTION)
    assert result.content() == "Hello, world!"  # the turn's stream is the turn's only
    await titles_settled(services)
    stored = await chat(proxy)
    assert (stored["title"], stored["title_source"]) == ("Faster Sourdough in Winter", "model")
    asked = title_requests(fake)
    assert len(asked) == 1 and asked[0]["model"] == "test-model" and asked[0]["max_tokens"] > 0
    prompt = asked[0]["messages"][-1]["content"]
    assert "sourdough starter" in prompt and "Hello, world!" in prompt
    await turn(proxy, content="And in summer?")
    await titles_settled(services)
    assert len(title_requests(fake)) == 1  # only after the first reply
    assert (await chat(proxy))["title"] == "Faster Sourdough in Winter"


@pytest.mark.gen_test
@ASKING
async def test_a_title_the_user_sets_meanwhile_is_never_overwritten(proxy, fake, services):
    answer = asyncio.Event()
    fake.script.extend([Reply(), Reply(tokens=["Model's idea"], hold=answer)])
    await create_chat(proxy)
    await turn(proxy, content=LONG_QUESTION)
    await fake.wait_requests(2)
    response = await call(proxy, "PATCH", "/chat", {"name": "demo", "title": "  My\nbread  "})
    assert response.status == 200, response.body
    assert (response.json["chat"]["title"], response.json["chat"]["title_source"]) == ("My bread", "user")
    answer.set()
    await titles_settled(services)
    assert (await chat(proxy))["title"] == "My bread"


@pytest.mark.gen_test
@ASKING
@pytest.mark.parametrize("title_reply", [Reply(status=500, error="Model crashed"), Reply(tokens=["<think>hmm"]), Reply(tokens=['""'])])
async def test_a_failed_title_request_is_logged_and_the_message_title_stays(proxy, fake, services, caplog, title_reply):
    fake.script.extend([Reply(), title_reply])
    await create_chat(proxy)
    result = await turn(proxy, content="Tell me about tides")
    assert result.content() == "Hello, world!" and result.data[-1] == "[DONE]"
    await titles_settled(services)
    stored = await chat(proxy)
    assert (stored["title"], stored["title_source"]) == ("Tell me about tides", "message")
    assert "the model's title could not be had" in caplog.text


@pytest.mark.gen_test
@ASKING
async def test_no_title_is_asked_for_a_turn_that_got_no_reply(proxy, fake, services):
    fake.script.append(Reply(status=404, error="Model 'nope' not found"))
    await create_chat(proxy)
    assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": {"role": "user", "content": "Tides?"}}), 404)
    assert (await chat(proxy))["title"] == "Tides?"
    assert services.turns.titles.pending == 0 and title_requests(fake) == []


@pytest.mark.gen_test
async def test_patch_title_sets_it_and_null_goes_back_to_the_first_message(proxy, stored):
    await create_chat(proxy)
    await turn(proxy, content="What is a monad?")
    await call(proxy, "PATCH", "/chat", {"name": "demo", "title": "Monads"})
    assert (await stored.chat("demo"))["title"] == "Monads"
    response = await call(proxy, "PATCH", "/chat", {"name": "demo", "title": None})
    assert response.status == 200
    assert (response.json["chat"]["title"], response.json["chat"]["title_source"]) == ("What is a monad?", "message")
    await create_chat(proxy, "empty")
    cleared = await call(proxy, "PATCH", "/chat", {"name": "empty", "title": ""})
    assert "title" not in cleared.json["chat"]  # nothing to take one from yet


@pytest.mark.gen_test
@pytest.mark.parametrize("body", [{"title": 7}, {"title": ["x"]}, {"title": "x" * (titles.MAX_TITLE_CHARS + 1)}])
async def test_a_bad_title_is_400_and_changes_nothing(proxy, stored, body):
    await create_chat(proxy)
    before = await stored.snapshot()
    assert "'title'" in assert_error(await call(proxy, "PATCH", "/chat", {"name": "demo", **body}), 400)
    assert await stored.snapshot() == before


@pytest.mark.gen_test
async def test_search_finds_titles_ranked_like_names(proxy, stored):
    chats = {
        "in-a-message": {"messages": [{"role": "user", "content": "Plan the budget for next quarter"}]},
        "in-the-title": {"title": "Budget helper", "messages": [{"role": "user", "content": "Sort a list in Python"}]},
        **{f"other {n}": {"messages": [{"role": "user", "content": f"Question {n}"}]} for n in range(4)},
    }
    for name, chat in chats.items():
        await stored.put(name, {"model": "m", **chat})
    found = (await call(proxy, "GET", "/chats?q=budget")).json["chats"]
    assert [entry["name"] for entry in found] == ["in-the-title", "in-a-message"]
    assert found[0]["title"] == "Budget helper" and found[0]["score"] > found[1]["score"]
    await call(proxy, "PATCH", "/chat", {"name": "other 0", "title": "Tax helper"})
    helpers = (await call(proxy, "GET", "/chats?q=helper")).json["chats"]
    assert sorted(entry["name"] for entry in helpers) == ["in-the-title", "other 0"]  # a title we set: found at once


def test_titles_from_text_and_from_a_model_answer():
    assert titles.shortened("\n\n  Hello   there \n second line") == "Hello there"
    assert titles.shortened("   \n ") is None
    assert titles.shortened("x" * 100) == "x" * 59 + "…"
    assert titles.from_model('Title: "Rust lifetimes explained."') == "Rust lifetimes explained"
    assert titles.from_model("## *Cooking rice*\n\nMore words") == "Cooking rice"
    assert titles.from_model("“Les marées”") == "Les marées"
    assert titles.from_model('\n"" \n') is None
