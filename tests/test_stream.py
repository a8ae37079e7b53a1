"""PUT /chat: the streamed turn against the fake LM Studio, through real sockets."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.fake_lmstudio import MODEL, Reply
from tests.helpers import assert_error, call, stored_messages, turn, wait_for
from tests.helpers import create_chat as create

pytestmark = pytest.mark.both_engines

HI = {"role": "user", "content": "hi"}


async def messages(proxy, name="demo"):
    """The stored messages as role and content: what the seed's frontends read."""
    return [{"role": m["role"], "content": m["content"]} for m in await stored_messages(proxy, name)]


def assert_whole_events(result):
    """Each server write (one HTTP chunk) holds whole events only."""
    assert result.chunks
    for chunk in result.chunks:
        assert chunk.endswith(b"\n\n"), chunk
        assert chunk.startswith((b"data: ", b"event: ", b"id: ", b": ")), chunk


@pytest.mark.gen_test
@pytest.mark.parametrize("cut", ["events", "bytes", "all", "odd"])
@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("comments", [False, True])
async def test_reply_is_relayed_whole_and_persisted(proxy, fake, cut, crlf, comments):
    tokens = ["Héllo", " 日本語", " 😀", " ok", "\u2028", "!"]
    fake.script.append(Reply(tokens=tokens, cut=cut, crlf=crlf, comments=comments))
    await create(proxy)
    result = await turn(proxy)
    assert result.status == 200
    assert_whole_events(result)
    assert result.data[-1] == "[DONE]"
    assert result.content() == "".join(tokens)
    assert await messages(proxy) == [HI, {"role": "assistant", "content": "".join(tokens)}]


@pytest.mark.gen_test
async def test_stream_headers(proxy):
    await create(proxy)
    result = await turn(proxy)
    assert result.headers["Content-Type"].startswith("text/event-stream")
    assert result.headers["Cache-Control"] == "no-cache"
    assert result.headers["X-Accel-Buffering"] == "no"
    assert result.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.gen_test
async def test_upstream_request_carries_model_history_and_settings(proxy, fake):
    await create(proxy, temperature=0.3, max_tokens=99)
    fake.script.append(Reply(tokens=["first"]))
    await turn(proxy, content="one")
    await turn(proxy, content="two")
    assert fake.requests[1] == {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "first"},
            {"role": "user", "content": "two"},
        ],
        "temperature": 0.3,
        "max_tokens": 99,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.gen_test
async def test_lone_surrogate_in_a_message_reaches_lm_studio_and_the_file(proxy, fake):
    await create(proxy)
    raw = b'{"name": "demo", "message": {"role": "user", "content": "half \\ud83d"}}'
    assert (await call(proxy, "PUT", "/chat", raw=raw)).status == 200
    assert fake.requests[-1]["messages"] == [{"role": "user", "content": "half \ud83d"}]
    assert (await messages(proxy))[0]["content"] == "half \ud83d"


@pytest.mark.gen_test
async def test_lone_surrogate_in_a_streamed_token_is_relayed_and_stored(proxy, fake):
    fake.script.append(Reply(tokens=["half an emoji: ", "\ud83d", "!"]))
    await create(proxy)
    result = await turn(proxy)
    assert result.data[-1] == "[DONE]"
    assert (await messages(proxy))[-1] == {"role": "assistant", "content": "half an emoji: \ud83d!"}


@pytest.mark.gen_test
async def test_usage_chunk_and_reasoning_deltas_are_relayed_not_stored(proxy, fake):
    fake.script.append(Reply(tokens=["Answer"], reasoning=["thinking", " hard"], usage=True))
    await create(proxy)
    result = await turn(proxy)
    chunks = [json.loads(d) for d in result.data if d != "[DONE]"]
    assert any(c["choices"] == [] and "usage" in c for c in chunks)
    assert any(c["choices"] and "reasoning_content" in c["choices"][0]["delta"] for c in chunks)
    assert (await messages(proxy))[-1] == {"role": "assistant", "content": "Answer"}


@pytest.mark.gen_test
@pytest.mark.parametrize("status", [400, 404, 500])
async def test_upstream_http_error_is_passed_on_before_any_stream(proxy, fake, status):
    fake.script.append(Reply(status=status))
    await create(proxy)
    result = await turn(proxy)
    assert "No models loaded" in assert_error(result, status)
    assert await messages(proxy) == [HI]  # the user's message is kept, no empty reply


@pytest.mark.gen_test
async def test_upstream_200_json_error_is_not_an_event_stream(proxy, fake, config):
    fake.script.append(Reply(content_type="application/json"))
    await create(proxy)
    response = await call(proxy, "PUT", "/chat", {"name": "demo", "message": HI})
    assert "not answer with an event stream" in assert_error(response, 502)


@pytest.mark.gen_test
async def test_upstream_unreachable_is_502_naming_the_url(proxy, services, io_loop):
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    services.upstreams.members[0].base_url = f"http://127.0.0.1:{port}"
    await create(proxy)
    message = assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": HI}), 502)
    assert message == f"LM Studio is not reachable at http://127.0.0.1:{port}: connection refused"
    assert await messages(proxy) == [HI]


@pytest.mark.gen_test
@pytest.mark.config(connect_timeout=0.3)
async def test_connect_timeout_is_504(proxy, services):
    import socket

    # A listener whose accept queue is full: the kernel drops further SYNs, so connect hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        services.upstreams.members[0].base_url = f"http://127.0.0.1:{port}"
        await create(proxy)
        message = assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": HI}), 504)
        assert "connect timeout" in message
    finally:
        for sock in fillers + [listener]:
            sock.close()


def error_event(result):
    last = json.loads(result.data[-1])
    assert set(last) == {"error"}, last
    return last["error"]


@pytest.mark.gen_test
@pytest.mark.parametrize("interval", [0, 0.02])
async def test_drop_mid_reply_ends_with_error_event_and_keeps_partial(proxy, fake, interval):
    # interval 0: the tokens and the FIN come in one read (Tornado 6.6's own chunked reader
    # lost those tokens); 0.02: each token in its own read, the drop after them.
    fake.script.append(Reply(tokens=["Part", "ial", " never"], drop_after=2, interval=interval))
    await create(proxy)
    result = await turn(proxy)
    assert result.status == 200
    assert "middle of the reply" in error_event(result)["message"]
    assert "[DONE]" not in result.data
    assert await messages(proxy) == [HI, {"role": "assistant", "content": "Partial"}]


@pytest.mark.gen_test
async def test_non_sse_garbage_ends_with_error_event_and_keeps_partial(proxy, fake):
    fake.script.append(Reply(tokens=["Good", "bad"], garbage=b"data: <html>oops</html>\n\n"))
    await create(proxy)
    result = await turn(proxy)
    assert error_event(result)["type"] == "bad_stream"
    assert await messages(proxy) == [HI, {"role": "assistant", "content": "Good"}]


@pytest.mark.gen_test
async def test_lm_studio_in_stream_error_is_relayed_once_and_partial_kept(proxy, fake, services):
    fake.script.append(Reply(tokens=["Half", "way"], stream_error="Model crashed"))
    await create(proxy)
    result = await turn(proxy)
    errors = [json.loads(d)["error"] for d in result.data if d.startswith('{"error"')]
    assert errors == [{"message": "Model crashed", "type": "server_error"}]
    assert "[DONE]" not in result.data
    assert await messages(proxy) == [HI, {"role": "assistant", "content": "Half"}]
    assert services.metrics.registry.get_sample_value("chatproxy_upstream_errors_total", {"kind": "in_stream"}) == 1


@pytest.mark.gen_test
@pytest.mark.config(idle_timeout=0.3)
async def test_idle_upstream_is_ended_with_error_event(proxy, fake):
    fake.script.append(Reply(tokens=["Slow", "er"], hold=asyncio.Event(), hold_at=1))
    await create(proxy)
    result = await turn(proxy)
    error = error_event(result)
    assert error["type"] == "idle_timeout" and "0.3 s" in error["message"]
    assert await fake.wait_closed() == 1
    assert await messages(proxy) == [HI, {"role": "assistant", "content": "Slow"}]


@pytest.mark.gen_test
@pytest.mark.config(heartbeat=0.05)
async def test_keep_alive_comments_while_waiting_for_the_first_token(proxy, fake):
    hold = asyncio.Event()
    fake.script.append(Reply(tokens=["late"], hold=hold))
    await create(proxy)

    def release_after_two_heartbeats(result):
        if sum(chunk == b": keep-alive\n\n" for chunk in result.chunks) >= 2:
            hold.set()
        return False

    result = await turn(proxy, stop=release_after_two_heartbeats)
    assert result.chunks[:2] == [b": keep-alive\n\n"] * 2
    assert result.content() == "late"
    assert await messages(proxy) == [HI, {"role": "assistant", "content": "late"}]


@pytest.mark.gen_test
async def test_client_abort_before_first_token_closes_upstream(proxy, fake, services):
    fake.script.append(Reply(hold=asyncio.Event()))
    await create(proxy)
    task = asyncio.ensure_future(turn(proxy, stop=lambda result: fake.held > 0))
    await fake.wait_held()
    await task
    assert await fake.wait_closed(timeout=1) == 1
    await wait_for(lambda: len(services.streams) == 0, what="the turn to end")
    assert await messages(proxy) == [HI]


@pytest.mark.gen_test
async def test_client_abort_mid_reply_keeps_what_was_seen(proxy, fake, services):
    fake.script.append(Reply(tokens=["Seen", " also", " never"], hold=asyncio.Event(), hold_at=2))
    await create(proxy)
    result = await turn(proxy, stop=lambda result: fake.held > 0 and result.content() == "Seen also")
    assert result.content() == "Seen also"
    assert await fake.wait_closed(timeout=1) == 1
    await wait_for(lambda: len(services.streams) == 0, what="the turn to end")
    assert await messages(proxy) == [HI, {"role": "assistant", "content": "Seen also"}]


@pytest.mark.gen_test(timeout=30)
async def test_concurrent_turns_on_one_chat_run_in_order_and_lose_nothing(proxy, fake):
    await create(proxy)
    fake.default = Reply(tokens=["re", "ply"], interval=0.001)
    results = await asyncio.gather(*(turn(proxy, content=f"q{i}") for i in range(20)))
    assert all(result.content() == "reply" for result in results)
    stored = await messages(proxy)
    assert len(stored) == 40
    assert [m["role"] for m in stored] == ["user", "assistant"] * 20
    assert sorted(m["content"] for m in stored[::2]) == sorted(f"q{i}" for i in range(20))
    # each upstream request carried every finished turn before it
    assert [len(request["messages"]) for request in fake.requests] == list(range(1, 40, 2))


@pytest.mark.gen_test
async def test_other_requests_answer_while_a_stream_waits(proxy, fake):
    hold = asyncio.Event()
    fake.script.append(Reply(tokens=["do", "ne"], hold=hold, hold_at=1))
    await create(proxy)
    await create(proxy, "other")
    relayed = asyncio.Event()  # the first event goes out only once the user's message is durable
    running = asyncio.ensure_future(turn(proxy, stop=lambda result: bool(result.events) and relayed.set()))
    await fake.wait_held()
    await asyncio.wait_for(relayed.wait(), 5)
    assert (await call(proxy, "GET", "/chats")).status == 200
    assert (await call(proxy, "GET", "/chat?name=demo")).json["chat"]["messages"] == [HI]
    other = await turn(proxy, "other")
    assert other.content() == "Hello, world!"
    assert (await call(proxy, "DELETE", "/chat?name=other")).status == 200
    assert not running.done()
    hold.set()
    assert (await running).content() == "done"


@pytest.mark.gen_test
async def test_done_reaches_the_client_only_once_the_reply_is_stored(proxy, fake, stored):
    on_disk_at_done = []

    def look_at_done(result):
        if "[DONE]" in result.data and not on_disk_at_done:
            on_disk_at_done.append(stored.last_message_now("demo")["content"])
        return False

    await create(proxy)
    for _ in range(3):
        on_disk_at_done.clear()
        result = await turn(proxy, stop=look_at_done)
        assert result.data.count("[DONE]") == 1 and result.data[-1] == "[DONE]"
        assert on_disk_at_done == ["Hello, world!"]


@pytest.mark.gen_test
async def test_the_error_event_reaches_the_client_only_once_the_partial_reply_is_stored(proxy, fake, stored):
    on_disk_at_error = []

    def look_at_the_error(result):
        if any(data.startswith('{"error"') for data in result.data) and not on_disk_at_error:
            on_disk_at_error.append(stored.last_message_now("demo")["content"])
        return False

    fake.script.append(Reply(tokens=["Part", "ial", " never"], drop_after=2, interval=0.01))
    await create(proxy)
    result = await turn(proxy, stop=look_at_the_error)
    assert "middle of the reply" in error_event(result)["message"]
    assert on_disk_at_error == ["Partial"]


@pytest.mark.gen_test
async def test_an_upstream_error_page_in_html_is_named_by_its_title_not_pasted_whole(proxy, fake):
    page = b"<html><head><title>502 Bad Gateway</title><style>body{}</style></head><body><h1>502 Bad Gateway</h1><hr><center>nginx</center>" + b"<p>padding</p>" * 500 + b"</body></html>"
    fake.script.append(Reply(status=502, error_body=page))
    await create(proxy)
    message = assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": HI}), 502)
    assert "an HTML page: 502 Bad Gateway" in message
    assert "<" not in message and len(message) < 300
