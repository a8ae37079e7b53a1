"""The page with several upstreams ([[upstreams]]), in a real browser: the model pickers group
every upstream's models under its name and mark one that is down, and a reply says which
upstream answered it (and which it failed over from)."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser import PHONE, answered, browser_page, fits_the_width, needs_chromium, send
from tests.helpers import call, create_chat, turn
from tests.upstreams import config, fakes, take_down  # noqa: F401 (the fixtures: two fake upstreams)

pytestmark = needs_chromium


@pytest.mark.gen_test(timeout=60)
@pytest.mark.config(down=True)
async def test_the_picker_groups_models_by_upstream_marks_one_down_and_the_reply_names_its_upstream(proxy, fakes, request):
    async with browser_page(proxy, request) as page:
        banner = page.locator("#lmstudio")
        await expect(banner).to_have_attribute("data-state", "upstream-down")
        await expect(banner).to_contain_text('Upstream "down" is not reachable at http://127.0.0.1:')
        await expect(banner).to_contain_text("connection refused. Its models answer only where another upstream offers them")

        await page.get_by_role("button", name="New chat").click()
        groups = page.locator("#new-model optgroup")
        await expect(groups).to_have_count(4)
        for place, label in enumerate(["Any upstream", "laptop", "gpu", "down · down"]):
            await expect(groups.nth(place)).to_have_attribute("label", label)
        await expect(groups.nth(0).locator("option")).to_have_text(["a", "shared", "b"])
        await expect(groups.nth(2).locator("option")).to_have_text(["b", "shared"])
        await expect(groups.nth(3).locator("option")).to_have_text(["(no model listed)"])
        await expect(groups.nth(3).locator("option")).to_be_disabled()
        await expect(page.locator("#new-model")).to_have_value("a")  # the first model, routed to any upstream
        hint = page.locator("#new-form .model-hint")
        await expect(hint).to_contain_text('Upstream "down" is not reachable at http://127.0.0.1:')
        await expect(hint).to_contain_text("connection refused. Its models do not answer until it is back")

        await page.get_by_label("Name", exact=True).fill("on the gpu")
        await page.locator("#new-model").select_option("gpu/b")
        await page.get_by_role("button", name="Create").click()
        await expect(page.locator("#chat-title")).to_have_text("on the gpu")
        assert (await call(proxy, "GET", "/chat?name=on%20the%20gpu")).json["chat"]["model"] == "gpu/b"

        await send(page, "Which one are you?")
        await answered(page, 1)
        stats = page.locator(".message.assistant .stats")
        await expect(stats).to_contain_text(" · answered by gpu · ")  # the model as the upstream named it, then which one
        await expect(stats).not_to_contain_text("failed")
        assert fakes["gpu"].requests[-1]["model"] == "b" and fakes["laptop"].requests == []

        await page.get_by_role("button", name="Settings").click()
        await expect(page.locator("#settings-model")).to_have_value("gpu/b")
        await expect(page.locator("#settings-model optgroup")).to_have_count(4)


@pytest.mark.gen_test(timeout=60)
async def test_at_360_px_a_reply_that_failed_over_names_both_upstreams_and_the_picker_marks_the_one_down(proxy, fakes, services, request):
    await call(proxy, "GET", "/v1/models")  # both lists read while both answer
    url = take_down(services, "laptop")
    await create_chat(proxy, model="shared")
    assert (await turn(proxy, content="Anyone there?")).data[-1] == "[DONE]"
    async with browser_page(proxy, request, path="/#/chat/demo", viewport=PHONE, has_touch=True, is_mobile=True) as page:
        stats = page.locator(".message.assistant .stats")
        await expect(stats).to_contain_text(" · answered by gpu after laptop failed · ")
        await expect(stats).to_have_attribute("title", f'Upstream "laptop" is not reachable at {url}: connection refused')
        await expect(page.locator("#lmstudio")).to_contain_text(f'Upstream "laptop" is not reachable at {url}: connection refused. Its models')
        await fits_the_width(page)

        await page.get_by_role("button", name="Settings").click()
        await expect(page.locator("#settings-model")).to_have_value("shared")
        await expect(page.locator("#settings-model optgroup").nth(1)).to_have_attribute("label", "laptop · down")
        await expect(page.locator("#settings .model-hint")).to_contain_text(f'Upstream "laptop" is not reachable at {url}')
        await fits_the_width(page)
