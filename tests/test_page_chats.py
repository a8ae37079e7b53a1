"""The chat list as a user expects it, in a real browser: titles (a chat needs no name), pinned
chats first and then the newest activity, archived chats apart, a damaged chat file named as
such; on a wide screen and at 360 px."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import unquote

import pytest
from playwright.async_api import expect

from tests.browser import PHONE, answered, browser_page, fits_the_width, needs_chromium, send
from tests.fake_lmstudio import MODEL, Reply
from tests.helpers import call, create_chat, turn

pytestmark = needs_chromium

AUTOMATIC_NAME = re.compile(r"#/chat/(chat-\d{8}-\d{4}-[0-9a-f]{4})$")


def titles(page):
    return page.locator("#chat-list li .title")


def entry(page, name: str):
    return page.locator(f'#chat-list button[data-name="{name}"]')


async def chat(proxy, name: str) -> dict:
    return (await call(proxy, "GET", f"/chat?name={name}")).json["chat"]


async def new_unnamed_chat(page) -> str:
    """New chat with the Name left empty; the name the chat got (from the URL)."""
    await page.get_by_role("button", name="New chat").click()
    await expect(page.locator("#new-model option")).to_contain_text([MODEL])
    await page.get_by_role("button", name="Create").click()
    await expect(page).to_have_url(AUTOMATIC_NAME)
    name = AUTOMATIC_NAME.search(unquote(page.url)).group(1)
    await expect(page.locator("#chat-title")).to_have_text(name)  # no title before the first message
    return name


@pytest.mark.gen_test(timeout=60)
@pytest.mark.config(model_titles=True)
async def test_a_chat_needs_no_name_its_first_message_titles_it_then_the_model_does(proxy, fake, services, request):
    first_token = asyncio.Event()
    fake.script.extend([Reply(tokens=["Keep", " it warm."], hold=first_token, hold_at=1), Reply(tokens=["Sourdough in Winter"])])
    async with browser_page(proxy, request) as page:
        name = await new_unnamed_chat(page)
        await expect(titles(page)).to_have_text([name])
        await send(page, "How do I keep a sourdough starter alive?\nIt is cold here.")
        await expect(page.locator(".message.assistant .content")).to_have_text("Keep")
        question = "How do I keep a sourdough starter alive?"
        await expect(titles(page)).to_have_text([question])  # from the turn's start
        await expect(page.locator("#chat-title")).to_have_text(question)
        first_token.set()
        await answered(page, 1)
        # Asked in the background once the reply is stored; the list's next look shows it.
        await expect(titles(page)).to_have_text(["Sourdough in Winter"], timeout=15_000)
        await expect(page.locator("#chat-title")).to_have_text("Sourdough in Winter")
        assert page.url.endswith(f"#/chat/{name}")  # the name stays the chat's id and URL
        stored = await chat(proxy, name)
        assert (stored["title"], stored["title_source"]) == ("Sourdough in Winter", "model")

        await page.locator("#chat-header").get_by_role("button", name="Rename").click()
        await page.get_by_label("Title", exact=True).fill("")  # the first message's title again
        await page.locator("#rename-form").get_by_role("button", name="Rename").click()
        await expect(page.locator("#chat-title")).to_have_text(question)
        await expect(titles(page)).to_have_text([question])


@pytest.mark.gen_test(timeout=60)
async def test_pinned_first_then_newest_activity_and_archived_chats_apart(proxy, fake, request):
    for name in ("oldest", "middle", "newest"):
        await create_chat(proxy, name)
    await turn(proxy, "newest", content="Plans for the garden")
    async with browser_page(proxy, request) as page:
        await expect(titles(page)).to_have_text(["Plans for the garden", "middle", "oldest"])  # a title, else the name
        await entry(page, "oldest").click()
        pin = page.locator("#chat-header").get_by_role("button", name="Pin", exact=True)
        await pin.click()
        await expect(page.locator("#chat-header").get_by_role("button", name="Unpin")).to_be_visible()
        await expect(titles(page)).to_have_text(["oldest", "Plans for the garden", "middle"])
        await expect(entry(page, "oldest").locator(".pinned")).to_have_text("pinned")
        assert (await chat(proxy, "oldest"))["pinned"] is True

        await entry(page, "middle").click()
        await page.get_by_role("button", name="Archive", exact=True).click()
        await expect(titles(page)).to_have_text(["oldest", "Plans for the garden"])
        await expect(page.locator("#chat-title")).to_have_text("middle")  # still open, to take back
        assert (await chat(proxy, "middle"))["archived"] is True

        await page.get_by_role("button", name="Archived chats").click()
        await expect(titles(page)).to_have_text(["middle"])
        await expect(page.get_by_role("list", name="Archived chats")).to_be_visible()
        await expect(page.get_by_role("heading", name="Archived chats")).to_be_visible()
        await page.get_by_role("button", name="Unarchive").click()
        await expect(page.locator("#chat-list")).to_have_text("No archived chats.")
        await page.get_by_role("button", name="Back to chats").click()
        await expect(titles(page)).to_have_text(["oldest", "middle", "Plans for the garden"])  # unarchiving was its newest change
        assert "archived" not in await chat(proxy, "middle")

        await page.get_by_label("Search chats").fill("garden")
        await expect(titles(page)).to_have_text(["Plans for the garden"])
        await expect(page.locator("#chat-list .snippet strong")).to_have_text(["garden"])


@pytest.mark.gen_test(timeout=60)
async def test_a_damaged_chat_file_is_listed_by_name_as_damaged(proxy, chats_dir, request):
    await create_chat(proxy, "fine")
    (chats_dir / "broken.json").write_text("{ this is no chat")
    async with browser_page(proxy, request) as page:
        damaged = page.locator("#chat-list .damaged")
        await expect(damaged.locator(".title")).to_have_text("broken")
        await expect(damaged.locator(".why")).to_contain_text("Damaged, cannot be opened: ")
        await expect(damaged.get_by_role("button")).to_have_count(0)
        await expect(page.locator("#chat-list button")).to_have_count(1)
        await entry(page, "fine").click()
        await expect(page.locator("#chat-title")).to_have_text("fine")


@pytest.mark.gen_test(timeout=90)
async def test_at_360_px_titles_pin_archive_and_a_damaged_file_fit(proxy, fake, chats_dir, request):
    (chats_dir / "a damaged chat with a long name.json").write_text("[]")
    async with browser_page(proxy, request, viewport=PHONE, has_touch=True, is_mobile=True) as page:
        toggle = page.get_by_role("button", name="Chats", exact=True)
        await toggle.click()
        await expect(page.locator("#chat-list .damaged .title")).to_have_text("a damaged chat with a long name")
        await fits_the_width(page)
        name = await new_unnamed_chat(page)
        await send(page, "A question from a phone")
        await answered(page, 1)
        await expect(page.locator("#chat-title")).to_have_text("A question from a phone")
        await page.get_by_role("button", name="Pin", exact=True).click()
        await expect(page.get_by_role("button", name="Unpin")).to_be_visible()
        await page.get_by_role("button", name="Archive", exact=True).click()
        await expect(page.get_by_role("button", name="Unarchive")).to_be_visible()
        await fits_the_width(page)

        await toggle.click()
        await expect(entry(page, name)).to_have_count(0)
        await page.get_by_role("button", name="Archived chats").click()
        await expect(entry(page, name).locator(".title")).to_have_text("A question from a phone")
        await expect(entry(page, name).locator(".pinned")).to_have_text("pinned")
        await fits_the_width(page)
        await entry(page, name).click()
        await expect(page.locator("#sidebar")).to_be_hidden()
        await page.get_by_role("button", name="Unarchive").click()
        await expect(page.get_by_role("button", name="Archive", exact=True)).to_be_visible()
        stored = await chat(proxy, name)
        assert stored.get("pinned") is True and "archived" not in stored
