"""The page on a bad day, in a real browser: every failed send keeps what the person typed
and says what happened and what to do; LM Studio's state is in view from the start."""

from __future__ import annotations


import pytest
from playwright.async_api import expect

from tests.browser import answered, browser_page, needs_chromium, new_chat, send, stored
from tests.fake_lmstudio import MODEL, Reply
from tests.helpers import call, closed_port_url

pytestmark = needs_chromium


async def kept(page, text: str, *banner_says: str) -> None:
    """The composer holds ``text`` again and the banner says each of ``banner_says``."""
    await expect(page.get_by_label("Your message")).to_have_value(text)
    for words in (*banner_says, "What you wrote is kept"):
        await expect(page.locator("#banner")).to_contain_text(words)


@pytest.mark.gen_test(timeout=60)
async def test_an_unreachable_server_keeps_the_text_and_it_sends_once_back(proxy, fake, request):
    fake.script.append(Reply(tokens=["Back again"]))
    async with browser_page(proxy, request) as page:
        await new_chat(page, "offline")
        await page.route("**/chat*", lambda route: route.abort("connectionrefused"))
        await send(page, "Hello?")
        await kept(page, "Hello?", "chatproxy is unreachable", "Start it, then try again")
        await expect(page.locator(".message.user")).to_have_count(0)  # it was not stored
        await page.unroute("**/chat*")
        await page.get_by_label("Your message").press("Enter")
        await answered(page, 1)
        await expect(page.get_by_label("Your message")).to_have_value("")
        assert await stored(proxy, "offline") == [("user", "Hello?"), ("assistant", "Back again")]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.config(max_message_size=40)
async def test_a_message_over_the_limit_is_kept_and_the_limit_said(proxy, fake, request):
    long = "word " * 20
    async with browser_page(proxy, request) as page:
        await new_chat(page, "limits")
        await send(page, long)
        await kept(page, long, "too long", "limit of 40 characters", "Shorten it")
        await expect(page.locator(".message")).to_have_count(0)
        assert await stored(proxy, "limits") == []
        assert fake.requests == []


@pytest.mark.gen_test(timeout=60)
async def test_a_storage_error_keeps_the_text_and_names_the_problem(proxy, chats_dir, request):
    await call(proxy, "POST", "/chat", {"name": "damaged", "model": MODEL})
    async with browser_page(proxy, request) as page:
        await page.get_by_role("button", name="damaged").click()
        await expect(page.locator("#chat-title")).to_have_text("damaged")
        (chats_dir / "damaged.json").write_text("{ this is no chat")
        await send(page, "Keep me")
        await kept(page, "Keep me", "could not store the chat", "damaged.json", "chats folder")
        await expect(page.locator(".message.user")).to_have_count(0)
    assert (chats_dir / "damaged.json").read_text() == "{ this is no chat"


@pytest.mark.gen_test(timeout=60)
async def test_lm_studio_down_is_in_view_and_the_same_question_is_answered_not_asked_twice(proxy, fake, services, request):
    services.upstreams.members[0].base_url = closed_port_url()
    fake.script.append(Reply(tokens=["Here now"]))
    await call(proxy, "POST", "/chat", {"name": "down", "model": MODEL})
    async with browser_page(proxy, request) as page:
        lmstudio = page.locator("#lmstudio")
        await expect(lmstudio).to_contain_text("LM Studio is not reachable at http://127.0.0.1:")
        assert (await lmstudio.inner_text()).count("not reachable") == 1  # the server's sentence, said once
        await expect(lmstudio).to_contain_text("upstream.url")
        await page.get_by_role("button", name="down").click()
        await send(page, "Anyone there?")
        await kept(page, "Anyone there?", "LM Studio is not answering", "connection refused", "load a model")
        await expect(page.locator(".message.user")).to_have_count(1)  # stored, unanswered
        services.upstreams.members[0].base_url = fake.url
        await page.get_by_role("button", name="Check again").click()
        await expect(lmstudio).to_be_hidden()
        await page.get_by_label("Your message").press("Enter")
        await answered(page, 1)
        await expect(page.locator("#banner")).to_be_hidden()
        assert await stored(proxy, "down") == [("user", "Anyone there?"), ("assistant", "Here now")]
        assert fake.requests[-1]["messages"] == [{"role": "user", "content": "Anyone there?"}]


@pytest.mark.gen_test(timeout=60)
async def test_no_model_loaded_is_said_and_a_model_id_can_be_typed(proxy, fake, request):
    fake.models = []
    async with browser_page(proxy, request) as page:
        lmstudio = page.locator("#lmstudio")
        await expect(lmstudio).to_contain_text("has no model loaded")
        await expect(lmstudio).to_contain_text("lms load")
        await page.get_by_role("button", name="New chat").click()
        await expect(page.locator("#new-form .model-hint")).to_contain_text("LM Studio lists no model")
        await expect(page.locator("#new-model")).to_be_hidden()
        await page.get_by_label("Name", exact=True).fill("typed")
        await page.locator("#new-form").get_by_label("Model id", exact=True).fill("my-own-model")
        await page.get_by_role("button", name="Create").click()
        await expect(page.locator("#chat-title")).to_have_text("typed")
        assert (await call(proxy, "GET", "/chat?name=typed")).json["chat"]["model"] == "my-own-model"

        fake.models = [MODEL]
        await page.get_by_role("button", name="Check again").click()
        await expect(lmstudio).to_be_hidden()
        await page.get_by_role("button", name="New chat").click()
        await page.get_by_label("Name", exact=True).fill("other")
        await expect(page.locator("#new-form").get_by_label("Model id", exact=True)).to_be_hidden()
        await page.locator("#new-model").select_option(label="Another model id…")
        await page.locator("#new-form").get_by_label("Model id", exact=True).fill("not-listed-model")
        await page.get_by_role("button", name="Create").click()
        await expect(page.locator("#chat-title")).to_have_text("other")
        assert (await call(proxy, "GET", "/chat?name=other")).json["chat"]["model"] == "not-listed-model"


@pytest.mark.gen_test(timeout=60)
async def test_a_refused_question_shows_unanswered_with_retry_and_edit_and_is_stored_once(proxy, fake, request):
    refused = Reply(status=404, error="Model 'test-model' not found")
    fake.script.extend([refused, refused, Reply(tokens=["Answered at last"]), refused, Reply(tokens=["Edited answer"])])
    async with browser_page(proxy, request) as page:
        await new_chat(page, "refused")
        await send(page, "First try")
        await kept(page, "First try", "LM Studio answered 404", "Retry it, or send it again")
        question = page.locator(".message.user")
        await expect(question).to_have_count(1)
        await expect(question.locator(".note")).to_have_text("Not answered: Retry asks again, Edit changes the question first.")
        retry = question.get_by_role("button", name="Retry")
        await retry.click()  # refused again: still one question, still unanswered
        await expect(page.locator("#banner")).to_contain_text("LM Studio answered 404")
        await expect(page.get_by_label("Your message")).to_have_value("")  # asked by Retry, not left to be asked twice
        await expect(question.locator(".note")).to_have_count(1)
        await retry.click()
        await answered(page, 1)
        await expect(page.locator(".message.assistant .content")).to_have_text("Answered at last")
        await expect(page.locator(".message.user .note")).to_have_count(0)
        await expect(page.locator(".message.user").get_by_role("button", name="Retry")).to_have_count(0)
        assert await stored(proxy, "refused") == [("user", "First try"), ("assistant", "Answered at last")]
        assert [body["messages"] for body in fake.requests] == [[{"role": "user", "content": "First try"}]] * 3

        await send(page, "Second questoin")
        await expect(page.locator(".message.user").nth(1).locator(".note")).to_contain_text("Not answered")
        await page.get_by_label("Your message").fill("")
        await page.locator(".message.user").nth(1).get_by_role("button", name="Edit").click()
        await page.get_by_label("Edit the message").fill("Second question")
        await page.get_by_role("button", name="Save and resend").click()
        await answered(page, 2)
        await expect(page.locator(".message.user .note")).to_have_count(0)
        await expect(page.locator("#banner")).to_be_hidden()
        assert (await stored(proxy, "refused"))[2:] == [("user", "Second question"), ("assistant", "Edited answer")]
        assert [m["content"] for m in fake.requests[-1]["messages"]] == ["First try", "Answered at last", "Second question"]


@pytest.mark.gen_test(timeout=60)
async def test_the_unanswered_question_typed_again_is_shown_once_and_answered(proxy, fake, request):
    fake.script.extend([Reply(status=404, error="Model 'test-model' not found"), Reply(tokens=["Now answered"])])
    async with browser_page(proxy, request) as page:
        await new_chat(page, "again")
        await send(page, "Same words")
        await kept(page, "Same words", "LM Studio answered 404")
        await page.get_by_label("Your message").press("Enter")
        await expect(page.locator(".message.user")).to_have_count(1)
        await answered(page, 1)
        await expect(page.locator(".message.user")).to_have_count(1)
        assert await stored(proxy, "again") == [("user", "Same words"), ("assistant", "Now answered")]
        assert fake.requests[-1]["messages"] == [{"role": "user", "content": "Same words"}]
