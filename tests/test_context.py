"""A chat never fails for length: turns fitted into the model's context (the chat's
``context_overflow``: "truncate" by default, or "error"), through real sockets."""

from __future__ import annotations

import pytest

from tests.helpers import LONG, a_long_chat, assert_error, call, create_chat, turn

pytestmark = pytest.mark.both_engines


@pytest.mark.gen_test(timeout=20)
async def test_a_chat_longer_than_the_context_sends_its_newest_turns_and_says_what_it_left_out(proxy, fake):
    # The system prompt, the first message and two turns fit, with 100 tokens for the reply.
    await a_long_chat(proxy, fake, context_length=600)
    result = await turn(proxy, content=f"last {LONG}")
    assert result.data[-1] == "[DONE]"
    sent = [message["content"] for message in fake.requests[-1]["messages"]]
    assert sent[:2] == ["Be brief.", f"0 {LONG}"]  # the system prompt and the first question stay
    assert sent[-1] == f"last {LONG}"
    assert len(sent) < 2 + 2 * 5 + 1  # older turns were left out
    chat = (await call(proxy, "GET", "/chat?name=demo")).json["chat"]
    truncated = chat["messages"][-1]["truncated"]
    first, last = truncated["left_out"]
    assert first == 1 and chat["messages"][last + 1]["content"] == sent[2]  # the first message sent after the gap
    assert truncated["context_length"] == 600 and truncated["prompt_tokens"] <= 500


@pytest.mark.gen_test(timeout=20)
async def test_a_chat_that_fits_is_sent_whole_and_marked_nothing(proxy, fake):
    await a_long_chat(proxy, fake, turns=2, context_length=100_000)
    await turn(proxy, content="short")
    assert len(fake.requests[-1]["messages"]) == 1 + 2 * 2 + 1
    assert "truncated" not in (await call(proxy, "GET", "/chat?name=demo")).json["chat"]["messages"][-1]


@pytest.mark.gen_test(timeout=20)
async def test_context_overflow_error_refuses_the_turn_naming_the_sizes_and_sends_nothing(proxy, fake):
    await a_long_chat(proxy, fake, turns=3, context_length=400)
    assert (await call(proxy, "PATCH", "/chat", {"name": "demo", "context_overflow": "error"})).status == 200
    message = assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": {"role": "user", "content": LONG}}), 400)
    assert "too long" in message and "400" in message and "tokens" in message
    assert len(fake.requests) == 3  # LM Studio was not asked
    stored = (await call(proxy, "GET", "/chat?name=demo")).json["chat"]["messages"]
    assert stored[-1]["content"] == LONG  # the question is kept


@pytest.mark.gen_test
async def test_context_overflow_takes_only_its_two_policies(proxy):
    await create_chat(proxy)
    for value in ("drop", 1, None):
        assert "context_overflow" in assert_error(await call(proxy, "PATCH", "/chat", {"name": "demo", "context_overflow": value}), 400)
    assert (await call(proxy, "PATCH", "/chat", {"name": "demo", "context_overflow": "truncate"})).json["chat"]["context_overflow"] == "truncate"
