"""The page's turns belong to the server, in a real browser: they are detached, Stop asks the
server to stop them, a reload or a switch to another chat and back shows the answer going on,
a stream the server drops is joined again without a gap, and a turn started in another tab
(or by curl) shows up in the list and can be watched."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from playwright.async_api import expect
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.browser import answered, browser_page, needs_chromium, new_chat, send, stored
from tests.fake_lmstudio import Reply
from tests.helpers import wait_for

pytestmark = needs_chromium

HELD = ["Partial", " answer", " never"]  # held before " never": the page shows "Partial answer"


def held_reply(fake) -> asyncio.Event:
    """LM Studio's next answer waits after "Partial answer" until the event returned is set."""
    release = asyncio.Event()
    fake.script.append(Reply(tokens=list(HELD), hold=release, hold_at=2))
    return release


def requests_of(page) -> list[tuple[str, str, str | None]]:
    """Every request the page makes from now on: (method, path and query, body)."""
    seen: list[tuple[str, str, str | None]] = []
    page.on("request", lambda r: seen.append((r.method, re.sub(r"^https?://[^/]+", "", r.url), r.post_data)))
    return seen


async def streaming(page, text: str, timeout: float = 5_000) -> None:
    """The page shows ``text`` as the answer still being written, with Stop at hand."""
    await expect(page.locator(".message.assistant.streaming .content")).to_have_text(text, timeout=timeout)
    await expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()


async def asked_and_held(page, fake, question: str) -> None:
    """The page asks; LM Studio holds its answer after "Partial answer", which the page shows."""
    await send(page, question)
    await streaming(page, "Partial answer")
    await fake.wait_held()


async def stopped_and_kept(tab, proxy: str, name: str, question: str) -> None:
    """The page says the turn stopped; the part shown is what the chat keeps."""
    await expect(tab.locator(".message.assistant .note")).to_have_text("Stopped. The part shown is kept.")
    assert await stored(proxy, name) == [("user", question), ("assistant", "Partial answer")]


def running_mark(page, name: str):
    return page.locator(f'#chat-list button[data-name="{name}"] .running')


async def goes_on_to_the_end(page, proxy: str, release: asyncio.Event, name: str, question: str) -> None:
    """Once LM Studio goes on, the page shows the whole answer, as stored, not cut short."""
    release.set()
    await answered(page, 1)
    await expect(page.locator(".message.assistant .content")).to_have_text("Partial answer never")
    await expect(page.locator(".message.assistant .stats")).not_to_contain_text("interrupted")
    await expect(page.locator("#banner")).to_be_hidden()
    assert await stored(proxy, name) == [("user", question), ("assistant", "Partial answer never")]


async def start_elsewhere(proxy: str, name: str, content: str) -> asyncio.Future:
    """A turn started by another client (curl, say), reading its stream to the end."""
    request = HTTPRequest(
        f"{proxy}/chat", method="PUT", request_timeout=60,
        body=json.dumps({"name": name, "message": {"role": "user", "content": content}, "detach": True}),
    )
    return asyncio.ensure_future(AsyncHTTPClient().fetch(request, raise_error=False))


@pytest.mark.gen_test(timeout=60)
async def test_the_turn_is_detached_and_stop_asks_the_server(proxy, fake, request):
    held_reply(fake)
    async with browser_page(proxy, request) as page:
        seen = requests_of(page)
        await new_chat(page, "halted")
        await asked_and_held(page, fake, "Tell me everything")
        put = next(body for method, path, body in seen if method == "PUT" and path == "/chat")
        assert json.loads(put)["detach"] is True
        await page.get_by_role("button", name="Stop", exact=True).click()
        assert await fake.wait_closed() == 1
        await stopped_and_kept(page, proxy, "halted", "Tell me everything")
        await expect(page.locator(".message.assistant .stats")).to_contain_text("interrupted")  # as stored
        await expect(page.get_by_role("button", name="Regenerate")).to_be_enabled()
        assert [json.loads(body) for method, path, body in seen if path == "/chat/stop"] == [{"name": "halted"}]


@pytest.mark.gen_test(timeout=90)
async def test_a_reload_mid_answer_shows_the_answer_going_on(proxy, fake, request):
    release = held_reply(fake)
    async with browser_page(proxy, request) as page:
        await new_chat(page, "reloaded")
        await asked_and_held(page, fake, "Question")
        seen = requests_of(page)
        await page.reload()
        await expect(page.locator("#chat-title")).to_have_text("reloaded")
        await streaming(page, "Partial answer")  # the snapshot: all so far, once
        await expect(page.locator(".message.user .content")).to_have_text("Question")
        assert fake.closed_early == 0  # the page leaving did not stop the turn
        assert ("GET", "/chat/stream?name=reloaded") in [(m, p) for m, p, _ in seen]
        await goes_on_to_the_end(page, proxy, release, "reloaded", "Question")


@pytest.mark.gen_test(timeout=90)
async def test_switching_to_another_chat_and_back_joins_the_answer_again(proxy, fake, request):
    release = held_reply(fake)
    async with browser_page(proxy, request) as page:
        await new_chat(page, "elsewhere")
        await new_chat(page, "long")
        await asked_and_held(page, fake, "Question")
        await page.locator('#chat-list button[data-name="elsewhere"]').click()
        await expect(page.locator("#chat-title")).to_have_text("elsewhere")
        await expect(page.locator(".message")).to_have_count(0)
        await expect(page.get_by_role("button", name="Send")).to_be_visible()
        await expect(running_mark(page, "long")).to_have_text("answering…")
        assert fake.closed_early == 0  # closing the page's stream did not stop the turn
        await page.locator('#chat-list button[data-name="long"]').click()
        await streaming(page, "Partial answer")
        await goes_on_to_the_end(page, proxy, release, "long", "Question")
        await expect(running_mark(page, "long")).to_have_count(0)


@pytest.mark.gen_test(timeout=60)
async def test_a_stream_the_server_drops_is_joined_again_without_a_gap_or_a_repeat(proxy, fake, services, request):
    release = held_reply(fake)
    async with browser_page(proxy, request) as page:
        seen = requests_of(page)
        await new_chat(page, "joined")
        await asked_and_held(page, fake, "Question")
        # The server cuts the page off as it cuts off a client that stopped reading
        # (handlers/watch.py): the connection closes in the middle of the stream.
        turn = services.turns.current("joined")
        watchers = list(turn.log._watchers)
        assert len(watchers) == 1
        last_sent = turn.log.seq
        watchers[0]._cut_off()
        def joins() -> list[str]:
            return [p for _, p, _ in seen if p.startswith("/chat/stream?")]

        await wait_for(joins, timeout=10, what="the page to join again")
        # After the last event it read: the server sends the rest, no gap and no repeat.
        assert joins() == [f"/chat/stream?name=joined&after={last_sent}"]
        await goes_on_to_the_end(page, proxy, release, "joined", "Question")


@pytest.mark.gen_test(timeout=90)
async def test_a_turn_started_in_another_tab_shows_up_and_can_be_watched_and_stopped(proxy, fake, request):
    held_reply(fake)
    async with browser_page(proxy, request) as page:
        await new_chat(page, "shared")
        await new_chat(page, "mine")
        other_tab = await page.context.new_page()
        await other_tab.goto(f"{proxy}/#/chat/shared")
        await expect(other_tab.locator("#chat-title")).to_have_text("shared")
        await asked_and_held(other_tab, fake, "From the other tab")
        await expect(running_mark(page, "shared")).to_have_text("answering…", timeout=15_000)  # its next look
        await expect(running_mark(page, "mine")).to_have_count(0)
        await page.locator('#chat-list button[data-name="shared"]').click()
        await streaming(page, "Partial answer")
        await page.keyboard.press("Escape")
        assert await fake.wait_closed() == 1
        for tab in (page, other_tab):
            await stopped_and_kept(tab, proxy, "shared", "From the other tab")
            await expect(tab.get_by_role("button", name="Send")).to_be_visible()
        await expect(running_mark(page, "shared")).to_have_count(0)


@pytest.mark.gen_test(timeout=90)
async def test_a_turn_started_by_curl_on_the_open_chat_is_attached_to(proxy, fake, request):
    release = held_reply(fake)
    async with browser_page(proxy, request) as page:
        await new_chat(page, "watched")
        curl = await start_elsewhere(proxy, "watched", "Asked by curl")
        await fake.wait_held()
        await streaming(page, "Partial answer", timeout=15_000)  # the page's next look attaches
        await expect(page.locator(".message.user .content")).to_have_text("Asked by curl")
        await goes_on_to_the_end(page, proxy, release, "watched", "Asked by curl")
        response = await curl
        assert response.code == 200 and response.body.rstrip().endswith(b"data: [DONE]")
