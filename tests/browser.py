"""The page's browser tests' tools: Debian's Chromium driven by Playwright on the real page,
and the steps every test takes (create a chat, send, wait for the answer)."""

from __future__ import annotations

import asyncio
import shutil
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from tests.fake_lmstudio import MODEL
from tests.helpers import call

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root, without the background services that would reach for the closed network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PHONE = {"width": 360, "height": 640}

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt-get install chromium)")


@asynccontextmanager
async def browser_page(proxy: str, request, ready: bool = True, path: str = "/", **context_options):
    """A fresh browser on the page at ``path`` (once it shows the first listing, unless
    ``ready`` is false); a screenshot in test-artifacts/ if the test fails; no uncaught
    script error. ``context_options`` go to Playwright's new_context (viewport, permissions...)."""
    context_options.setdefault("viewport", {"width": 1200, "height": 800})
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(accept_downloads=True, **context_options)
            page = await context.new_page()
            page.set_default_timeout(10_000)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            try:
                await page.goto(proxy + path)
                if ready:
                    await expect(page.locator("body[data-ready]")).to_have_count(1)
                yield page
                assert errors == [], errors
            except BaseException:
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
                raise
        finally:
            await browser.close()


async def new_chat(page, name: str, model: str = MODEL) -> None:
    await page.get_by_role("button", name="New chat").click()
    await page.get_by_label("Name", exact=True).fill(name)
    await expect(page.locator("#new-model option")).to_contain_text([model])
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#chat-title")).to_have_text(name)


async def send(page, text: str) -> None:
    await page.get_by_label("Your message").fill(text)
    await page.keyboard.press("Enter")


async def answered(page, count: int) -> None:
    """Wait until ``count`` assistant messages are shown, the stream over and the chat re-read."""
    await expect(page.locator(".message.assistant")).to_have_count(count)
    await expect(page.locator(".streaming")).to_have_count(0)
    await expect(page.locator("#send")).to_be_visible()
    await expect(page.locator("#messages")).to_have_attribute("aria-busy", "false")


async def stored(proxy: str, name: str) -> list[tuple[str, str]]:
    chat = (await call(proxy, "GET", f"/chat?name={name}")).json["chat"]
    return [(m["role"], m["content"]) for m in chat["messages"]]


async def fits_the_width(page, width: int = PHONE["width"]) -> None:
    scrolled = await page.evaluate("() => document.documentElement.scrollWidth")
    assert scrolled <= width, f"the page is {scrolled} px wide: it scrolls sideways"


async def clipboard(page) -> str:
    return await page.evaluate("() => navigator.clipboard.readText()")
