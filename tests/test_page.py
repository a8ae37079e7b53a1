"""The chat page at / in a real browser: Debian's Chromium driven by Playwright, against the
real chatproxy app and the fake LM Studio of the other tests.

Each test that fails leaves a screenshot in test-artifacts/. The page runs under its real
Content-Security-Policy, so these tests wait on locators, never on evaluated strings.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.browser import answered, browser_page, needs_chromium, new_chat, send, stored
from tests.fake_lmstudio import MODEL, Reply
from tests.helpers import call, wait_for

pytestmark = needs_chromium


@pytest.mark.gen_test(timeout=60)
async def test_create_stream_and_reload_shows_the_saved_turns(proxy, fake, request):
    fake.script.append(Reply(tokens=["Streamed ", "**answer**"], usage=True))
    async with browser_page(proxy, request) as page:
        await new_chat(page, "First chat")
        await send(page, "Hello there")
        await answered(page, 1)
        reply = page.locator(".message.assistant").first
        await expect(reply.locator(".content strong")).to_have_text("answer")
        await expect(reply.locator(".stats")).to_contain_text("2 tokens")
        await expect(reply.locator(".stats")).to_contain_text("tokens/s")
        await expect(reply.locator(".stats")).not_to_contain_text("answered by")  # one upstream: not named
        await expect(page.locator("#new-model optgroup")).to_have_count(0)  # one upstream: LM Studio's list as it is
        await expect(page.locator(".context-note")).to_have_count(0)
        assert await stored(proxy, "First%20chat") == [("user", "Hello there"), ("assistant", "Streamed **answer**")]
        await page.reload()
        await page.get_by_role("button", name="First chat").click()
        await expect(page.locator(".message")).to_have_count(2)
        await expect(page.locator("#chat-list button[aria-current=true]")).to_have_text("First chattest-model")
        await expect(page.locator(".message.user .content")).to_have_text("Hello there")


@pytest.mark.gen_test(timeout=60)
async def test_enter_sends_and_shift_enter_makes_a_new_line(proxy, fake, request):
    async with browser_page(proxy, request) as page:
        await new_chat(page, "keys")
        box = page.get_by_label("Your message")
        await box.fill("line one")
        await box.press("Shift+Enter")
        await box.press_sequentially("line two")
        await expect(box).to_have_value("line one\nline two")
        assert fake.requests == []
        await box.press("Enter")
        await answered(page, 1)
        assert fake.requests[-1]["messages"][-1]["content"] == "line one\nline two"


@pytest.mark.gen_test(timeout=60)
async def test_escape_aborts_the_stream_and_keeps_what_arrived(proxy, fake, services, request):
    fake.script.append(Reply(tokens=["Partial", " answer", " never"], hold=asyncio.Event(), hold_at=2))
    async with browser_page(proxy, request) as page:
        await new_chat(page, "abort")
        await send(page, "Tell me everything")
        await expect(page.locator(".message.assistant .content")).to_have_text("Partial answer")
        await expect(page.get_by_role("button", name="Stop")).to_be_visible()
        await expect(page.locator("#messages")).to_have_attribute("aria-busy", "true")
        await page.keyboard.press("Escape")
        assert await fake.wait_closed() == 1
        await expect(page.locator(".message.assistant .note")).to_have_text("Stopped. The part shown is kept.")
        await expect(page.locator("#messages")).to_have_attribute("aria-busy", "false")
        await expect(page.get_by_role("button", name="Send")).to_be_visible()
        await wait_for(lambda: len(services.streams) == 0, what="the turn to be stored")
        assert await stored(proxy, "abort") == [("user", "Tell me everything"), ("assistant", "Partial answer")]
        await page.reload()
        await page.get_by_role("button", name="abort").click()
        await expect(page.locator(".message.assistant .content")).to_have_text("Partial answer")
        await expect(page.locator(".message.assistant .stats")).to_contain_text("interrupted")


@pytest.mark.gen_test(timeout=60)
async def test_rename_sets_the_title_or_the_name_and_delete(proxy, request):
    async with browser_page(proxy, request) as page:
        await new_chat(page, "before")
        rename = page.locator("#rename-form").get_by_role("button", name="Rename")
        await page.locator("#chat-header").get_by_role("button", name="Rename").click()
        await expect(page.get_by_label("Title", exact=True)).to_have_value("before")  # the name given, as its title
        await page.get_by_label("Title", exact=True).fill("after / renamed")
        await rename.click()
        await expect(page.locator("#chat-title")).to_have_text("after / renamed")
        await expect(page.locator("#chat-list button")).to_have_count(1)
        await expect(page.locator("#chat-list")).to_contain_text("after / renamed")
        assert [c["name"] for c in (await call(proxy, "GET", "/chats")).json["chats"]] == ["before"]  # its id, its URL
        assert page.url.endswith("#/chat/before")
        chat = (await call(proxy, "GET", "/chat?name=before")).json["chat"]
        assert (chat["title"], chat["title_source"]) == ("after / renamed", "user")

        await page.locator("#chat-header").get_by_role("button", name="Rename").click()
        await page.get_by_label("Name (the chat's id)").fill("moved")
        await rename.click()
        await expect(page).to_have_url(re.compile(r"#/chat/moved$"))
        await expect(page.locator("#chat-title")).to_have_text("after / renamed")
        assert [c["name"] for c in (await call(proxy, "GET", "/chats")).json["chats"]] == ["moved"]
        await page.get_by_role("button", name="Delete").click()
        await expect(page.locator("#chat-list button")).to_have_count(0)
        await expect(page.locator("#empty")).to_be_visible()
        assert (await call(proxy, "GET", "/chats")).json["chats"] == []


@pytest.mark.gen_test(timeout=60)
async def test_a_taken_name_is_refused_in_the_dialog(proxy, request):
    async with browser_page(proxy, request) as page:
        await new_chat(page, "same")
        await page.get_by_role("button", name="New chat").click()
        await page.get_by_label("Name", exact=True).fill("same")
        await page.get_by_role("button", name="Create").click()
        await expect(page.locator("#new-error")).to_contain_text("already exists")


@pytest.mark.gen_test(timeout=60)
async def test_regenerate_then_go_back_to_the_first_version(proxy, fake, request):
    fake.script.extend([Reply(tokens=["First version"]), Reply(tokens=["Second version"])])
    async with browser_page(proxy, request) as page:
        await new_chat(page, "regen")
        await send(page, "Question")
        await answered(page, 1)
        await page.get_by_role("button", name="Regenerate").click()
        await expect(page.locator(".message.assistant .content")).to_have_text("Second version")
        await answered(page, 1)
        versions = page.locator("details.versions")
        await versions.locator("summary").click()
        await versions.get_by_role("button", name="Show this version: First version").click()
        await expect(page.locator(".message.assistant .content")).to_have_text("First version")
        assert await stored(proxy, "regen") == [("user", "Question"), ("assistant", "First version")]


@pytest.mark.gen_test(timeout=60)
async def test_edit_and_resend_asks_again_and_keeps_the_old_branch(proxy, fake, request):
    fake.script.extend([Reply(tokens=["Old answer"]), Reply(tokens=["New answer"])])
    async with browser_page(proxy, request) as page:
        await new_chat(page, "edit")
        await send(page, "Typo questoin")
        await answered(page, 1)
        await page.locator(".message.user").get_by_role("button", name="Edit").click()
        await page.get_by_label("Edit the message").fill("Fixed question")
        await page.get_by_role("button", name="Save and resend").click()
        await expect(page.locator(".message.assistant .content")).to_have_text("New answer")
        await answered(page, 1)
        assert fake.requests[-1]["messages"] == [{"role": "user", "content": "Fixed question"}]
        await expect(page.locator("details.versions summary")).to_have_text("1 other version from here")


@pytest.mark.gen_test(timeout=60)
async def test_settings_system_prompt_and_temperature_reach_lm_studio(proxy, fake, request):
    async with browser_page(proxy, request) as page:
        await new_chat(page, "settings")
        await page.get_by_role("button", name="Settings", exact=True).click()
        await page.get_by_label("System prompt").fill("Answer like a pirate.")
        await page.get_by_label("Temperature").fill("0.2")
        await page.get_by_role("button", name="Save settings").click()
        await expect(page.locator("#settings")).to_be_hidden()
        await send(page, "Hi")
        await answered(page, 1)
        request_body = fake.requests[-1]
        assert request_body["messages"][0] == {"role": "system", "content": "Answer like a pirate."}
        assert request_body["temperature"] == 0.2


@pytest.mark.gen_test(timeout=60)
async def test_search_narrows_the_list(proxy, request):
    for name, content in (("apples", "I like fruit"), ("cars", "engines and wheels")):
        await call(proxy, "POST", "/chats/import", raw=json.dumps({"name": name, "chat": {"model": "m", "messages": [{"role": "user", "content": content}]}}).encode())
    async with browser_page(proxy, request) as page:
        await expect(page.locator("#chat-list button")).to_have_count(2)
        await page.get_by_label("Search chats").fill("wheel")
        await expect(page.locator("#chat-list button")).to_have_count(1)
        await expect(page.locator("#chat-list .snippet strong")).to_have_text("wheels")
        await page.get_by_label("Search chats").fill("")
        await expect(page.locator("#chat-list button")).to_have_count(2)


@pytest.mark.gen_test(timeout=60)
async def test_hostile_messages_are_shown_as_text_and_run_nothing(proxy, request):
    hostile = [
        {"role": "user", "content": '<script>document.title = "pwned"</script><img src=x onerror="document.title=\'pwned\'">'},
        {"role": "assistant", "content": '[click me](javascript:document.title="pwned") <b onmouseover="x()">bold?</b> [ok](https://example.com/a?b=1&c="2")',
         "reasoning": "<img src=y onerror=alert(1)>"},
    ]
    await call(proxy, "POST", "/chats/import", raw=json.dumps({"name": "hostile", "chat": {"model": "m", "messages": hostile}}).encode())
    async with browser_page(proxy, request) as page:
        await page.get_by_role("button", name="hostile").click()
        user = page.locator(".message.user .content")
        await expect(user).to_contain_text("<script>document.title")
        await expect(user).to_contain_text("<img src=x onerror=")
        await expect(page.locator(".message img, .message script, .message b")).to_have_count(0)
        links = page.locator(".message.assistant .content a")
        await expect(links).to_have_count(1)
        assert (await links.get_attribute("href")).startswith("https://example.com/")
        await expect(page.locator(".message.assistant .content")).to_contain_text("click me")
        await page.locator(".message.assistant details.reasoning summary").click()
        await expect(page.locator(".message.assistant .reasoning-text")).to_contain_text("<img src=y onerror=alert(1)>")
        await page.get_by_label("Your message").fill("<img src=z onerror=\"document.title='pwned'\">")
        await page.keyboard.press("Enter")
        await answered(page, 2)
        await expect(page).to_have_title("chatproxy")


@pytest.mark.gen_test(timeout=60)
async def test_reasoning_is_folded_away(proxy, fake, request):
    fake.script.append(Reply(tokens=["The answer"], reasoning=["Thinking it over"]))
    async with browser_page(proxy, request) as page:
        await new_chat(page, "thinker")
        await send(page, "Why?")
        await answered(page, 1)
        details = page.locator(".message.assistant details.reasoning")
        await expect(details).not_to_have_attribute("open", "")
        await expect(details.locator(".reasoning-text")).to_be_hidden()
        await expect(page.locator(".message.assistant .content")).to_have_text("The answer")
        await details.locator("summary").click()
        await expect(details.locator(".reasoning-text")).to_have_text("Thinking it over")


@pytest.mark.gen_test(timeout=60)
async def test_export_markdown_downloads_the_chat(proxy, fake, request):
    async with browser_page(proxy, request) as page:
        await new_chat(page, "export me")
        await send(page, "Keep this")
        await answered(page, 1)
        async with page.expect_download() as download_info:
            await page.get_by_role("button", name="Export Markdown").click()
        download = await download_info.value
        assert download.suggested_filename == "export me.md"
        text = Path(await download.path()).read_text()
        assert text.startswith("# export me") and "## User\n\nKeep this" in text and "Hello, world!" in text


@pytest.mark.gen_test(timeout=60)
@pytest.mark.config(token="page-token-0123456789abcdef")
async def test_the_token_is_asked_for_once_and_kept(proxy, request):
    async with browser_page(proxy, request, ready=False) as page:  # it asks for the token first
        await expect(page.locator("#token-dialog")).to_be_visible()
        await page.get_by_label("Token", exact=True).fill("wrong-token-0123456789")
        await page.get_by_role("button", name="Continue").click()
        await expect(page.locator("#token-error")).to_contain_text("refused")
        await page.get_by_label("Token", exact=True).fill("page-token-0123456789abcdef")
        await page.get_by_role("button", name="Continue").click()
        await expect(page.locator("body[data-ready]")).to_have_count(1)
        await new_chat(page, "with token")
        await page.reload()
        await expect(page.locator("body[data-ready]")).to_have_count(1)
        await expect(page.locator("#token-dialog")).to_be_hidden()
        await expect(page.locator("#chat-list")).to_contain_text("with token")


@pytest.mark.gen_test(timeout=60)
async def test_lm_studio_down_is_said_plainly(proxy, services, request):
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        services.upstreams.members[0].base_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    await call(proxy, "POST", "/chat", {"name": "down", "model": MODEL})
    async with browser_page(proxy, request) as page:
        await page.get_by_role("button", name="down").click()
        await send(page, "Anyone there?")
        await expect(page.locator("#banner")).to_contain_text("LM Studio is not answering")
        await expect(page.locator("#banner")).to_contain_text("connection refused")
        await expect(page.locator(".message.user")).to_have_count(1)


@pytest.mark.gen_test(timeout=60)
async def test_a_broken_stream_is_said_and_the_partial_answer_kept(proxy, fake, request):
    fake.script.append(Reply(tokens=["Half", " of it", " lost"], drop_after=2))
    async with browser_page(proxy, request) as page:
        await new_chat(page, "broken")
        await send(page, "Go")
        await expect(page.locator("#banner")).to_contain_text("broke off")
        await answered(page, 1)
        await expect(page.locator(".message.assistant .content")).to_have_text("Half of it")


@pytest.mark.gen_test(timeout=60)
async def test_an_unreachable_server_is_said_plainly(proxy, request):
    async with browser_page(proxy, request) as page:
        await new_chat(page, "offline")
        await page.route("**/chat*", lambda route: route.abort("connectionrefused"))
        await send(page, "Hello?")
        await expect(page.locator("#banner")).to_contain_text("chatproxy is unreachable")


@pytest.mark.gen_test(timeout=60)
async def test_dark_and_light(proxy, request):
    async with browser_page(proxy, request, color_scheme="dark") as page:
        dark = await page.locator("body").evaluate("body => getComputedStyle(body).backgroundColor")
        await page.get_by_role("button", name="Switch between dark and light theme").click()
        light = await page.locator("body").evaluate("body => getComputedStyle(body).backgroundColor")
        assert dark != light and light == "rgb(255, 255, 255)"
        await page.reload()
        await expect(page.locator("html[data-theme=light]")).to_have_count(1)


XSS = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<svg/onload=alert(1)>", '"><iframe src="javascript:alert(1)">',
    "[x](javascript:alert(1))", "[x](JaVaScRiPt:alert(1))", "[x](data:text/html,<script>alert(1)</script>)",
    '[x](https://ok.test/"onmouseover="alert(1))', "[x](vbscript:msgbox(1))", "`<b>code</b>`", "```\n</code><script>x()</script>\n```",
    "**<u>bold</u>**", "> <img src=y onerror=z()>", "- <a href=javascript:x>item</a>", "# <style>*{}</style>", "<!-- comment -->",
    "&lt;script&gt; stays text", "[ok](https://example.com/?a=1&b=2)", "_<i>x</i>_", "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "| <script>x()</script> | [x](javascript:y) |\n|:-:|--:|\n| <img src=x onerror=z()> | `</td><td onclick=w>` |",
    '| a" onmouseover="x | b |\n|---|---|\n| </table><iframe> | \\| <b> |', "|x|\n|-|\n|<tr><td onclick=x>|",
]
OWN_TAGS = {"p", "br", "strong", "em", "code", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "a",
            "table", "thead", "tbody", "tr", "th", "td"}


@pytest.mark.gen_test(timeout=60)
async def test_the_markdown_renderer_emits_only_its_own_tags(proxy, request):
    import re

    async with browser_page(proxy, request) as page:
        rendered = await page.evaluate(
            "async (texts) => { const md = await import('/static/markdown.js'); return texts.map((t) => md.render(t)); }", XSS
        )
    assert sum("<table>" in html for html in rendered) == 3  # the table payloads are read as tables
    for text, html in zip(XSS, rendered):
        tags = set(re.findall(r"</?([a-zA-Z][a-zA-Z0-9]*)", html))
        assert tags <= OWN_TAGS, (text, html)
        for href in re.findall(r'href="([^"]*)"', html):
            assert href.startswith(("https://", "http://", "mailto:")), (text, html)
        assert not re.search(r"<[^>]*\son\w+=", html), (text, html)
        for value in re.findall(r'class="([^"]*)"', html):
            assert re.fullmatch(r"align-(left|center|right)|language-[\w+-]*", value), (text, html)
