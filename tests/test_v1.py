"""The /v1/ pass-through, driven by the real OpenAI SDK and by plain HTTP."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.fake_lmstudio import MODEL, Reply
from tests.helpers import assert_error, call, stream, wait_for

HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(proxy):
    return openai.AsyncOpenAI(base_url=proxy + "/v1", api_key="not-needed", max_retries=0, timeout=10)


@pytest.mark.gen_test
async def test_sdk_lists_models(client):
    page = await client.models.list()
    assert [model.id for model in page.data] == [MODEL]


@pytest.mark.gen_test
async def test_sdk_plain_completion(client, fake, chats_dir):
    completion = await client.chat.completions.create(model=MODEL, messages=HELLO)
    assert completion.choices[0].message.content == "Hello, world!"
    assert fake.requests[-1]["messages"] == HELLO
    assert not chats_dir.exists() or [p for p in chats_dir.glob("*.json")] == []  # nothing stored


@pytest.mark.gen_test
async def test_sdk_streamed_completion(client, fake):
    fake.script.append(Reply(tokens=["Strea", "med ", "😀"], cut="odd"))
    chunks = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in chunks if chunk.choices])
    assert text == "Streamed 😀"


@pytest.mark.gen_test
async def test_sdk_aborted_stream_closes_the_upstream(client, fake, services):
    fake.script.append(Reply(tokens=["one", "two"], hold=asyncio.Event(), hold_at=1))
    chunks = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    async for chunk in chunks:
        assert chunk.choices[0].delta.content == "one"
        break
    await chunks.close()
    assert await fake.wait_closed(timeout=1) == 1
    await wait_for(lambda: len(services.streams) == 0, what="the relay to end")


@pytest.mark.gen_test
@pytest.mark.parametrize("status,error_type", [(400, openai.BadRequestError), (404, openai.NotFoundError), (500, openai.InternalServerError)])
async def test_upstream_error_reaches_the_sdk_as_its_own_error_type(client, fake, status, error_type):
    for streaming in (False, True):
        fake.script.append(Reply(status=status))
        with pytest.raises(error_type) as raised:
            await client.chat.completions.create(model=MODEL, messages=HELLO, stream=streaming)
        assert "No models loaded" in str(raised.value)


@pytest.mark.gen_test
async def test_unknown_upstream_route_answer_is_passed_on_as_it_is(proxy):
    response = await call(proxy, "POST", "/v1/nope", {"x": 1})
    assert response.status == 200
    assert response.json == {"error": "Unexpected endpoint or method. (POST /v1/nope)"}


@pytest.mark.gen_test
async def test_stream_relay_is_whole_events_with_keep_alive_headers(proxy, fake):
    fake.script.append(Reply(tokens=["a", "b"], cut="bytes", crlf=True))
    result = await stream(proxy, "/v1/chat/completions", {"model": MODEL, "messages": HELLO, "stream": True}, method="POST")
    assert result.status == 200 and result.data[-1] == "[DONE]"
    assert all(chunk.endswith(b"\n\n") for chunk in result.chunks)
    assert result.headers["X-Accel-Buffering"] == "no" and result.headers["Cache-Control"] == "no-cache"
    assert result.content() == "ab"


@pytest.mark.gen_test
async def test_hop_by_hop_headers_stay_behind_end_to_end_headers_go(proxy, fake):
    headers = {"Proxy-Authorization": "Basic eA==", "TE": "trailers", "X-Custom": "kept", "Content-Type": "application/json"}
    response = await call(proxy, "GET", "/v1/models?limit=5", headers=headers)
    assert response.status == 200
    sent = {name.lower(): value for name, value in fake.headers[-1].items()}
    assert sent["x-custom"] == "kept"
    assert "proxy-authorization" not in sent and "te" not in sent
    assert sent["host"].startswith("127.0.0.1:")  # the upstream's, not ours


@pytest.mark.gen_test
async def test_unreachable_upstream_is_our_json_error(proxy, services):
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    services.upstreams.members[0].base_url = f"http://127.0.0.1:{port}"
    assert "connection refused" in assert_error(await call(proxy, "GET", "/v1/models"), 502)
