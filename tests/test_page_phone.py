"""The page on a phone-sized screen (360 px wide), in a real browser: the chat list folds
away behind the Chats button, and a chat can be created, sent to, stopped and switched."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import expect

from tests.browser import PHONE, answered, browser_page, fits_the_width, needs_chromium, new_chat, send, stored
from tests.fake_lmstudio import Reply

pytestmark = needs_chromium


async def open_list(page) -> None:
    await page.get_by_role("button", name="Chats", exact=True).click()
    await expect(page.locator("#sidebar")).to_be_visible()


@pytest.mark.gen_test(timeout=90)
async def test_at_360_px_create_send_stop_and_switch_chats(proxy, fake, request):
    fake.script.extend([Reply(tokens=["Short answer"]), Reply(tokens=["Started", " never ends"], hold=asyncio.Event(), hold_at=1)])
    async with browser_page(proxy, request, viewport=PHONE, has_touch=True, is_mobile=True) as page:
        toggle = page.get_by_role("button", name="Chats", exact=True)
        await expect(page.locator("#sidebar")).to_be_hidden()
        await expect(toggle).to_have_attribute("aria-expanded", "false")
        await fits_the_width(page)

        await open_list(page)
        await expect(toggle).to_have_attribute("aria-expanded", "true")
        await new_chat(page, "first")
        await expect(page.locator("#sidebar")).to_be_hidden()
        await send(page, "Hi from a phone")
        await answered(page, 1)
        await expect(page.locator(".message.assistant .content")).to_have_text("Short answer")
        await fits_the_width(page)

        await open_list(page)
        await new_chat(page, "second")
        await send(page, "Go on")
        await expect(page.locator(".message.assistant .content")).to_have_text("Started")
        await page.get_by_role("button", name="Stop", exact=True).click()
        await expect(page.locator(".message.assistant .note")).to_have_text("Stopped. The part shown is kept.")
        await expect(page.get_by_role("button", name="Send")).to_be_visible()
        await fits_the_width(page)

        await open_list(page)
        await page.locator("#chat-list").get_by_role("button", name="first").click()
        await expect(page.locator("#sidebar")).to_be_hidden()
        await expect(page.locator("#chat-title")).to_have_text("first")
        await expect(page.locator(".message.assistant .content")).to_have_text("Short answer")

        await open_list(page)
        await page.mouse.click(PHONE["width"] - 15, PHONE["height"] // 2)  # on the conversation, beside the open list
        await expect(page.locator("#sidebar")).to_be_hidden()
    assert await stored(proxy, "first") == [("user", "Hi from a phone"), ("assistant", "Short answer")]


@pytest.mark.gen_test(timeout=60)
async def test_the_list_stays_in_view_on_a_wide_screen(proxy, request):
    async with browser_page(proxy, request) as page:
        await expect(page.locator("#sidebar")).to_be_visible()
        await expect(page.get_by_role("button", name="Chats", exact=True)).to_be_hidden()
        await new_chat(page, "wide")
        await expect(page.locator("#sidebar")).to_be_visible()
