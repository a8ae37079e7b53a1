"""Reading in the page, in a real browser: the view follows a streaming answer only while the
person reads at the bottom, Stop leaves Regenerate and Edit at hand, a cue before the first
token, tables and copy buttons, a URL per chat, and a chat that outgrew the model's context
says which older messages were not sent."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest
from playwright.async_api import expect

from tests.browser import answered, browser_page, clipboard, needs_chromium, new_chat, send, stored
from tests.fake_lmstudio import Reply
from tests.helpers import LONG, a_long_chat, call, eventually

pytestmark = needs_chromium


def tall(label: str, lines: int = 60) -> str:
    return "".join(f"{label} line {n}\n\n" for n in range(lines))


async def below(page) -> float:
    """How far the conversation's end is below what the view shows, in pixels."""
    return await page.locator("#messages").evaluate("view => view.scrollHeight - view.scrollTop - view.clientHeight")


async def scroll(page, pixels: int) -> None:
    """The person turns the mouse wheel over the conversation."""
    box = await page.locator("#messages").bounding_box()
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.wheel(0, pixels)


@pytest.mark.gen_test(timeout=90)
async def test_the_view_follows_the_answer_only_while_the_reader_is_at_the_bottom(proxy, fake, request):
    up_there, back_down = asyncio.Event(), asyncio.Event()
    fake.script.extend([
        Reply(tokens=[tall("first"), tall("more"), "The end"], hold=up_there, hold_at=1),
        Reply(tokens=[tall("second"), tall("again"), "Done"], hold=back_down, hold_at=1),
    ])
    async with browser_page(proxy, request) as page:
        await new_chat(page, "long read")
        await send(page, "Tell me a lot")
        await expect(page.locator(".message.assistant .content")).to_contain_text("first line 59")
        assert await below(page) <= 2  # it followed the answer down
        await scroll(page, -800)
        await eventually(lambda: below(page), lambda gap: gap > 700, "the view to scroll up")
        up_there.set()
        await answered(page, 1)
        await expect(page.locator(".message.assistant .content")).to_contain_text("The end")
        assert await below(page) > 700  # more came, and the reader was left where they were

        await send(page, "And more")
        await expect(page.locator(".message.assistant").nth(1).locator(".content")).to_contain_text("second line 59")
        await scroll(page, -800)
        await eventually(lambda: below(page), lambda gap: gap > 700, "the view to scroll up")
        await scroll(page, 5000)
        await eventually(lambda: below(page), lambda gap: gap <= 2, "the view to be back at the bottom")
        back_down.set()
        await answered(page, 2)
        await expect(page.locator(".message.assistant").nth(1).locator(".content")).to_contain_text("Done")
        assert await below(page) <= 2  # back at the bottom, it followed again


@pytest.mark.gen_test(timeout=60)
async def test_after_stop_regenerate_and_edit_are_there_at_once(proxy, fake, services, request):
    fake.script.extend([Reply(tokens=["Part one", " part two"], hold=asyncio.Event(), hold_at=1), Reply(tokens=["Fresh answer"])])
    async with browser_page(proxy, request) as page:
        await new_chat(page, "stopper")
        await send(page, "Question")
        await expect(page.locator(".message.assistant .content")).to_have_text("Part one")
        await page.get_by_role("button", name="Stop", exact=True).click()
        await expect(page.locator(".message.assistant .note")).to_have_text("Stopped. The part shown is kept.")
        await expect(page.locator(".message.user").get_by_role("button", name="Edit")).to_be_enabled()
        regenerate = page.locator(".message.assistant").get_by_role("button", name="Regenerate")
        await expect(regenerate).to_be_enabled()
        await regenerate.click()
        await expect(page.locator(".message.assistant .content")).to_have_text("Fresh answer")
        await answered(page, 1)
        assert await stored(proxy, "stopper") == [("user", "Question"), ("assistant", "Fresh answer")]
        await expect(page.locator("details.versions summary")).to_have_text("1 other version from here")


@pytest.mark.gen_test(timeout=60)
async def test_a_generating_cue_shows_until_the_first_token(proxy, fake, request):
    first_token = asyncio.Event()
    fake.script.append(Reply(tokens=["Here", " it is"], hold=first_token, hold_at=0))
    async with browser_page(proxy, request) as page:
        await new_chat(page, "patience")
        await send(page, "Take your time")
        cue = page.locator(".message.assistant .cue")
        await expect(cue).to_have_text("Generating…")
        await expect(page.locator(".message.assistant .content")).to_have_text("")
        first_token.set()
        await expect(page.locator(".message.assistant .content")).to_have_text("Here it is")
        await expect(cue).to_have_count(0)


@pytest.mark.gen_test(timeout=60)
async def test_tables_render_and_copy_buttons_copy_the_source(proxy, request):
    code = 'print("a < b")\nx = {"k": 1}'
    answer = f"Scores:\n\n| Name | Score |\n|:-----|------:|\n| **Ann** | 10 |\n| Bob \\| Jr | 7 |\n\n```python\n{code}\n```"
    messages = [{"role": "user", "content": "Show <me> the *table*"}, {"role": "assistant", "content": f"<think>hm</think>{answer}"}]
    await call(proxy, "POST", "/chats/import", raw=json.dumps({"name": "table", "chat": {"model": "m", "messages": messages}}).encode())
    async with browser_page(proxy, request, permissions=["clipboard-read", "clipboard-write"]) as page:
        await page.get_by_role("button", name="table").click()
        reply = page.locator(".message.assistant")
        await expect(reply.locator("table th")).to_have_text(["Name", "Score"])
        await expect(reply.locator("table tbody tr")).to_have_count(2)
        await expect(reply.locator("table td strong")).to_have_text("Ann")
        await expect(reply.locator("table td").nth(2)).to_have_text("Bob | Jr")
        await expect(reply.locator("table td.align-right")).to_have_text(["10", "7"])

        await reply.get_by_role("button", name="Copy code").click()
        await expect(reply.get_by_role("button", name="Copy code")).to_have_text("Copied")
        assert await clipboard(page) == code
        await reply.get_by_role("button", name="Copy message").click()
        assert await clipboard(page) == answer  # the Markdown, without the reasoning
        await page.locator(".message.user").get_by_role("button", name="Copy message").click()
        await expect(page.locator(".message.user").get_by_role("button", name="Copy message")).to_have_text("Copied")
        assert await clipboard(page) == "Show <me> the *table*"


def chat_url(name: str) -> str:
    return "/#/chat/" + quote(name, safe="!'()*-._~")  # as encodeURIComponent


@pytest.mark.gen_test(timeout=90)
async def test_each_chat_has_a_url_that_reload_back_and_bookmarks_reopen(proxy, request):
    odd = "a/b ü #1?&x"
    async with browser_page(proxy, request) as page:
        await new_chat(page, "plain")
        await new_chat(page, odd)
        assert page.url == proxy + chat_url(odd)
        await page.reload()
        await expect(page.locator("body[data-ready]")).to_have_count(1)
        await expect(page.locator("#chat-title")).to_have_text(odd)
        await expect(page.locator("#chat-list button[aria-current=true] span").first).to_have_text(odd)
        await page.go_back()
        await expect(page.locator("#chat-title")).to_have_text("plain")
        await page.go_forward()
        await expect(page.locator("#chat-title")).to_have_text(odd)
        await page.get_by_role("button", name="plain").click()
        assert page.url == proxy + chat_url("plain")
    async with browser_page(proxy, request, path=chat_url(odd)) as bookmark:
        await expect(bookmark.locator("#chat-title")).to_have_text(odd)
    async with browser_page(proxy, request, path=chat_url("gone")) as stale:
        await expect(stale.locator("#banner")).to_contain_text("Chat 'gone' not found")
        await expect(stale.locator("#banner")).to_contain_text("Pick a chat from the list")
        await expect(stale.locator("#empty")).to_be_visible()


@pytest.mark.gen_test(timeout=60)
async def test_a_chat_that_outgrew_the_context_says_which_older_messages_were_not_sent(proxy, fake, request):
    await a_long_chat(proxy, fake, turns=5, context_length=600)
    async with browser_page(proxy, request, path=chat_url("demo")) as page:
        await send(page, f"last {LONG}")
        await answered(page, 6)
        first, last = (await call(proxy, "GET", "/chat?name=demo")).json["chat"]["messages"][-1]["truncated"]["left_out"]
        assert first == 1  # the first question was sent
        notice = page.locator(".context-note")
        await expect(notice).to_have_count(1)  # the latest reply's only
        await expect(notice).to_have_text(f"Older messages {first + 1}–{last + 1} were not sent to the model (context 600 tokens).")
        # right above the first message sent after the gap
        await expect(page.locator(f"#messages > .context-note + article[data-index='{last + 1}']")).to_have_count(1)
