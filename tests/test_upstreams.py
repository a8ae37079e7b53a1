"""Several upstreams through real sockets: one model list, routing, failover, the circuit
breaker, context lengths and token counts; and the mends found against llama.cpp."""

from __future__ import annotations

import asyncio
import json

import pytest

from config import Config, UpstreamSettings
from lmstudio import upstreams as upstreams_module
from tests.fake_lmstudio import FakeLMStudio, Reply
from tests.helpers import assert_error, call, create_chat, serve_app, stored_reply, stream, turn
from tests.upstreams import config, fakes, take_down, upstream  # noqa: F401 (the fixtures: two fake upstreams)

HI = {"role": "user", "content": "hi"}
# What llama.cpp answers a prompt longer than its context.
OVERFLOW = {"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it",
                      "type": "exceed_context_size_error", "n_prompt_tokens": 5000, "n_ctx": 4096}}
LLAMA_TIMINGS = {"prompt_n": 12, "prompt_ms": 30.5, "prompt_per_second": 393.4,
                 "predicted_n": 4, "predicted_ms": 80.1, "predicted_per_second": 49.9}


# -- one model list ----------------------------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.config(down=True)
async def test_v1_models_merges_every_list_and_names_each_upstreams_models(proxy):
    listing = (await call(proxy, "GET", "/v1/models")).json
    ids = [entry["id"] for entry in listing["data"]]
    assert ids == ["a", "shared", "b", "laptop/a", "laptop/shared", "gpu/b", "gpu/shared"]
    shared = listing["data"][1]
    assert shared["upstreams"] == ["laptop", "gpu"] and "stale" not in shared
    states = {entry["name"]: entry["state"] for entry in listing["upstreams"]}
    assert states == {"laptop": "up", "gpu": "up", "down": "down"}
    assert "connection refused" in listing["upstreams"][2]["error"]


@pytest.mark.gen_test(timeout=15)
async def test_a_slow_upstream_keeps_its_last_good_list_marked(proxy, fakes):
    await call(proxy, "GET", "/v1/models")  # both lists read once
    fakes["gpu"].models_hold = asyncio.Event()
    fakes["gpu"].models = ["b", "shared", "new"]
    fakes["laptop"].models = ["a", "shared", "fresh"]
    health = (await call(proxy, "GET", "/health")).json  # asks every upstream afresh; gpu is late
    gpu = next(entry for entry in health["upstreams"] if entry["name"] == "gpu")
    assert gpu["stale"] is True and gpu["models"] == ["b", "shared"]
    by_id = {entry["id"]: entry for entry in (await call(proxy, "GET", "/v1/models")).json["data"]}
    assert "laptop/fresh" in by_id and "gpu/new" not in by_id
    assert by_id["gpu/b"]["stale"] is True and by_id["b"]["stale"] is True
    assert "stale" not in by_id["shared"]  # laptop's fresh list has it too
    fakes["gpu"].models_hold.set()


@pytest.mark.gen_test(timeout=15)
async def test_an_upstream_slower_than_two_seconds_is_answered_around(proxy, fakes, services):
    fakes["gpu"].models_hold = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    listing = (await call(proxy, "GET", "/v1/models")).json
    assert loop.time() - started < 3
    gpu = next(entry for entry in listing["upstreams"] if entry["name"] == "gpu")
    assert gpu["stale"] is True and gpu["models"] == []  # never answered yet: nothing to show
    assert [entry["id"] for entry in listing["data"]] == ["a", "shared", "laptop/a", "laptop/shared"]
    fakes["gpu"].models_hold.set()
    await asyncio.wait_for(asyncio.shield(upstream(services, "gpu").refreshing), 5)
    listing = (await call(proxy, "GET", "/v1/models")).json
    assert "gpu/b" in [entry["id"] for entry in listing["data"]]


@pytest.mark.gen_test(timeout=20)
async def test_a_sleeping_upstream_delays_one_answer_at_most_once(proxy, fakes, services, monkeypatch):
    monkeypatch.setattr(upstreams_module, "REFRESH_TIMEOUT", upstreams_module.REFRESH_WAIT + 1)
    monkeypatch.setattr(upstreams_module, "FRESH_FOR", 0.0)  # every call asks again
    fakes["gpu"].models_hold = asyncio.Event()  # never set: gpu sleeps
    loop = asyncio.get_running_loop()

    async def listing_time() -> float:
        started = loop.time()
        assert (await call(proxy, "GET", "/v1/models")).status == 200
        return loop.time() - started

    await listing_time()  # waits for gpu until REFRESH_WAIT after its refresh began
    # Its refresh is still running: later calls wait no longer than what is left of that.
    assert await listing_time() < upstreams_module.REFRESH_WAIT / 2
    gpu = upstream(services, "gpu")
    await asyncio.wait_for(asyncio.shield(gpu.refreshing), 5)
    assert "did not answer" in gpu.catalog.error
    # Its last refresh failed: the next one runs in the background, nobody waits for it.
    for _ in range(3):
        assert await listing_time() < upstreams_module.REFRESH_WAIT / 2
    assert not gpu.refreshing.done()
    fakes["gpu"].models_hold.set()


# -- routing -----------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_turn_goes_to_the_upstream_that_offers_its_model(proxy, fakes):
    await create_chat(proxy, model="b")
    result = await turn(proxy)
    assert result.data[-1] == "[DONE]"
    assert len(fakes["gpu"].requests) == 1 and fakes["laptop"].requests == []
    reply = await stored_reply(proxy)
    assert reply["upstream"] == "gpu" and "failed_over" not in reply


@pytest.mark.gen_test
async def test_name_slash_model_picks_the_upstream_and_sends_its_own_id(proxy, fakes):
    await create_chat(proxy, model="gpu/shared")
    await turn(proxy)
    assert fakes["gpu"].requests[-1]["model"] == "shared" and fakes["laptop"].requests == []
    response = await call(proxy, "POST", "/v1/chat/completions", {"model": "laptop/shared", "messages": [HI]})
    assert response.status == 200 and fakes["laptop"].requests[-1]["model"] == "shared"


@pytest.mark.gen_test
async def test_a_shared_model_goes_to_the_upstream_with_fewer_open_streams(proxy, fakes):
    hold = asyncio.Event()
    for fake in fakes.values():
        fake.script.append(Reply(tokens=["held"], hold=hold))
    first = asyncio.ensure_future(stream(proxy, "/v1/chat/completions", {"model": "shared", "messages": [HI], "stream": True}, method="POST"))
    await asyncio.wait_for(_held_anywhere(fakes), 5)
    busy = next(name for name, fake in fakes.items() if fake.held)
    idle = next(name for name in fakes if name != busy)
    fakes[idle].script.clear()  # it answers at once
    other = await stream(proxy, "/v1/chat/completions", {"model": "shared", "messages": [HI], "stream": True}, method="POST")
    assert other.data[-1] == "[DONE]" and len(fakes[idle].requests) == 1 and len(fakes[busy].requests) == 1
    hold.set()
    assert (await first).data[-1] == "[DONE]"


async def _held_anywhere(fakes) -> None:
    waits = [asyncio.ensure_future(fake.wait_held()) for fake in fakes.values()]
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in pending:  # the other fakes hold nothing: their waits must not outlive the test
        wait.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for wait in done:
        wait.result()  # a wait that failed (timed out) fails the test


@pytest.mark.gen_test
async def test_a_model_no_upstream_offers_is_404_naming_it_and_changes_nothing(proxy, fakes):
    await create_chat(proxy, model="nowhere")
    message = assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": HI}), 404)
    assert "'nowhere'" in message
    assert "'nowhere'" in assert_error(await call(proxy, "POST", "/v1/chat/completions", {"model": "nowhere", "messages": [HI]}), 404)
    assert fakes["laptop"].requests == [] and fakes["gpu"].requests == []


# -- failover and the circuit breaker ----------------------------------------------------------


@pytest.mark.gen_test
async def test_refused_connection_fails_over_before_the_first_byte_and_the_reply_says_so(proxy, fakes, services):
    await call(proxy, "GET", "/v1/models")
    url = take_down(services, "laptop")
    await create_chat(proxy, model="shared")
    result = await turn(proxy)
    assert result.status == 200 and result.content() == "Hello, world!"
    reply = await stored_reply(proxy)
    assert reply["upstream"] == "gpu"
    assert reply["failed_over"] == [{"upstream": "laptop", "error": f'Upstream "laptop" is not reachable at {url}: connection refused'}]


@pytest.mark.gen_test
async def test_a_5xx_before_any_event_fails_over(proxy, fakes):
    fakes["laptop"].script.append(Reply(status=500, error="model crashed while loading"))
    fakes["gpu"].script.append(Reply(status=500, error="out of memory"))
    response = await call(proxy, "POST", "/v1/chat/completions", {"model": "shared", "messages": [HI]})
    # both failed: the last one's answer is passed on as it is
    assert response.status == 500
    assert len(fakes["laptop"].requests) == len(fakes["gpu"].requests) == 1
    fakes["laptop"].script.append(Reply(status=503, error="busy"))  # laptop comes first (the config's order)
    response = await call(proxy, "POST", "/v1/chat/completions", {"model": "shared", "messages": [HI]})
    assert response.status == 200 and response.json["choices"][0]["message"]["content"] == "Hello, world!"
    assert len(fakes["laptop"].requests) == len(fakes["gpu"].requests) == 2


@pytest.mark.gen_test
@pytest.mark.config(idle_timeout=0.5)
async def test_an_upstream_silent_before_its_answer_times_out_and_the_turn_fails_over(proxy, fakes):
    silent = asyncio.Event()
    fakes["laptop"].script.append(Reply(head_hold=silent))
    await create_chat(proxy, model="shared")
    result = await turn(proxy)
    assert result.status == 200 and result.content() == "Hello, world!"
    reply = await stored_reply(proxy)
    assert reply["upstream"] == "gpu" and [entry["upstream"] for entry in reply["failed_over"]] == ["laptop"]
    assert len(fakes["laptop"].requests) == 1
    silent.set()


@pytest.mark.gen_test
async def test_a_stream_failing_mid_way_is_never_failed_over(proxy, fakes):
    fakes["gpu"].script.append(Reply(tokens=["Part", "ial", " never"], drop_after=2))
    await create_chat(proxy, model="b")
    result = await turn(proxy)
    assert "middle of the reply" in json.loads(result.data[-1])["error"]["message"]
    assert 'Upstream "gpu"' in json.loads(result.data[-1])["error"]["message"]
    assert fakes["laptop"].requests == [] and len(fakes["gpu"].requests) == 1
    assert (await stored_reply(proxy))["content"] == "Partial"


@pytest.mark.gen_test
@pytest.mark.config(down=True)
async def test_all_upstreams_down_is_502_naming_each_and_why(proxy, services):
    await call(proxy, "GET", "/v1/models")
    take_down(services, "laptop")
    take_down(services, "gpu")
    message = assert_error(await call(proxy, "POST", "/v1/chat/completions", {"model": "shared", "messages": [HI]}), 502)
    assert message.startswith("No upstream could answer: ")
    assert 'Upstream "laptop" is not reachable' in message and 'Upstream "gpu" is not reachable' in message
    assert message.count("connection refused") == 2


@pytest.mark.gen_test
async def test_an_upstream_that_keeps_failing_is_skipped_then_tried_again_alone(proxy, fakes, services):
    await call(proxy, "GET", "/v1/models")
    good_url = upstream(services, "laptop").base_url
    take_down(services, "laptop")
    await create_chat(proxy, model="shared")
    for _ in range(3):
        await turn(proxy)
        assert (await stored_reply(proxy))["failed_over"][0]["upstream"] == "laptop"
    await turn(proxy)
    assert "failed_over" not in await stored_reply(proxy)  # skipped: its circuit is open
    health = {entry["name"]: entry for entry in (await call(proxy, "GET", "/health")).json["upstreams"]}
    assert health["laptop"]["circuit"] == "open" and health["gpu"]["circuit"] == "closed"
    laptop = upstream(services, "laptop")
    laptop.base_url = good_url
    laptop.breaker.open_until = 0  # its cooldown is over: the next request tries it first
    requests_before = len(fakes["laptop"].requests)
    await turn(proxy)
    assert len(fakes["laptop"].requests) == requests_before + 1
    assert (await stored_reply(proxy))["upstream"] == "laptop" and laptop.breaker.state(0) == "closed"


@pytest.mark.gen_test
async def test_a_model_list_that_answers_does_not_close_a_circuit_that_failing_turns_opened(proxy, fakes, services):
    await call(proxy, "GET", "/v1/models")
    upstream(services, "laptop").breaker.cooldown = 60.0  # stays open for the whole test
    await create_chat(proxy, model="shared")
    for _ in range(3):
        fakes["laptop"].script.append(Reply(status=500, error="model crashed while loading"))
        await turn(proxy)
        assert (await stored_reply(proxy))["failed_over"][0]["upstream"] == "laptop"
    for _ in range(2):
        health = {entry["name"]: entry for entry in (await call(proxy, "GET", "/health")).json["upstreams"]}
        assert health["laptop"]["circuit"] == "open"  # its /v1/models answered: no matter
        completions_before = len(fakes["laptop"].requests)
        await turn(proxy)
        assert len(fakes["laptop"].requests) == completions_before  # still skipped
        assert (await stored_reply(proxy))["upstream"] == "gpu"


@pytest.mark.gen_test
@pytest.mark.config(api_keys={"gpu": "sk-configured"})
async def test_an_upstreams_api_key_is_sent_whatever_key_the_client_sent(proxy, fakes):
    await create_chat(proxy, model="gpu/b")
    await turn(proxy)
    client_key = {"Authorization": "Bearer not-needed"}  # what OpenAI's SDKs send
    answer = await call(proxy, "POST", "/v1/chat/completions", {"model": "b", "messages": [HI]}, headers=client_key)
    assert answer.status == 200
    assert len(fakes["gpu"].requests) == 2  # the turn and the /v1 request
    assert {headers.get("Authorization") for headers in fakes["gpu"].headers} == {"Bearer sk-configured"}  # and its model lists
    await call(proxy, "POST", "/v1/chat/completions", {"model": "a", "messages": [HI]}, headers=client_key)
    assert "Bearer not-needed" in [headers.get("Authorization") for headers in fakes["laptop"].headers]  # no key of its own


# -- context lengths and token counts ----------------------------------------------------------


@pytest.mark.gen_test
async def test_context_lengths_from_lm_studio_llama_cpp_and_the_config(proxy, fakes, services):
    fakes["laptop"].context_length = 8192
    fakes["gpu"].context_length = 4096
    upstreams = services.upstreams
    assert await upstreams.context_length("a") == 8192  # LM Studio's loaded_context_length
    assert await upstreams.context_length("b") == 4096  # llama.cpp's n_ctx
    assert await upstreams.context_length("shared") == 4096  # the smaller of the two
    assert await upstreams.context_length("laptop/shared") == 8192
    assert await upstreams.context_length("nowhere") is None


@pytest.mark.gen_test
async def test_context_length_from_the_config_when_the_server_does_not_say(io_loop, request, chats_dir):
    from chatproxy import make_services

    fake = FakeLMStudio()
    fake.flavor, fake.models = "vllm", ["m"]
    fake.url = serve_app(io_loop, request, fake.app())
    config = Config(chats_dir=str(chats_dir), upstreams=(UpstreamSettings("box", fake.url, context_length=32768),))
    services = make_services(config)
    try:
        assert await services.upstreams.context_length("m") == 32768
    finally:
        services.upstreams.close()
        await services.store.close()


@pytest.mark.gen_test
async def test_token_counts_use_llama_cpps_tokenizer_and_estimate_elsewhere(proxy, fakes, services):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "one two three four five six"}]
    counted = await services.upstreams.count_tokens("b", messages)
    assert fakes["gpu"].tokenized == ["be brief\none two three four five six"]
    from lmstudio.prompt import MESSAGE_OVERHEAD, estimate_tokens

    assert sum(counted) - 2 * MESSAGE_OVERHEAD in (8, 9)  # the fake's 8 tokens, shared out
    assert await services.upstreams.count_tokens("a", messages) == [estimate_tokens(m) for m in messages]
    assert fakes["laptop"].tokenized == []


# -- held back by a slow client ----------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_busy_consumer_gets_nothing_more_until_it_is_done_and_loses_nothing(proxy, fakes, services):
    tokens = [f"t{i} " for i in range(40)]
    started = asyncio.Event()
    fakes["gpu"].script.append(Reply(tokens=tokens, hold=started, hold_at=1, interval=0.001))
    call = services.upstreams.open_chat("b", {"messages": [HI], "stream": True})
    assert (await call.head())[0] == 200
    pieces: list[bytes] = []
    busy = asyncio.get_running_loop().create_future()
    armed = []

    def consume(piece: bytes):
        pieces.append(piece)
        if armed:
            armed.append(piece)
            return busy  # a slow client: its writes have not drained yet
        return None

    await call.attach(consume)
    armed.append(None)
    started.set()
    await fakes["gpu"].wait_idle()  # the fake has written its whole reply meanwhile
    assert len(armed) == 2  # one piece, then nothing until the consumer is done
    busy.set_result(None)
    await call.finished()
    body = b"".join(pieces).decode()
    sent = [json.loads(line[6:])["choices"][0]["delta"].get("content") for line in body.split("\n") if line.startswith("data: {")]
    assert [text for text in sent if text] == tokens


# -- mends found against llama.cpp (issue 16, item 7) ------------------------------------------


@pytest.mark.gen_test
async def test_non_streamed_v1_answers_carry_one_content_type(proxy, fakes):
    fakes["gpu"].script.append(Reply(status=400, error_body=OVERFLOW))
    answers = [
        await call(proxy, "POST", "/v1/chat/completions", {"model": "b", "messages": [HI]}),
        await call(proxy, "POST", "/v1/chat/completions", {"model": "b", "messages": [HI]}),
        await call(proxy, "GET", "/v1/models"),
    ]
    assert [answer.status for answer in answers] == [400, 200, 200]
    for answer in answers:
        assert len(answer.headers.get_list("Content-Type")) == 1, answer.headers
        assert answer.headers["Content-Type"].startswith("application/json")


@pytest.mark.gen_test
async def test_llama_cpps_timings_are_stored_with_the_reply(proxy, fakes):
    fakes["gpu"].script.append(Reply(tokens=["fast"], timings=LLAMA_TIMINGS))
    await create_chat(proxy, model="b")
    result = await turn(proxy)
    assert any('"timings"' in data for data in result.data)  # relayed as it came
    assert (await stored_reply(proxy))["timings"]["upstream"] == LLAMA_TIMINGS


@pytest.mark.gen_test
async def test_a_context_overflow_keeps_the_upstreams_type_and_token_counts(proxy, fakes):
    fakes["gpu"].script.append(Reply(status=400, error_body=OVERFLOW))
    await create_chat(proxy, model="b")
    message = assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": HI}), 400)
    assert message.startswith('Upstream "gpu" answered 400: the request exceeds the available context size')
    assert "type: exceed_context_size_error" in message
    assert "n_prompt_tokens: 5000" in message and "n_ctx: 4096" in message


@pytest.mark.gen_test
async def test_errors_name_the_upstream_not_lm_studio(proxy, fakes, services):
    await call(proxy, "GET", "/v1/models")
    fakes["gpu"].script.append(Reply(content_type="application/json"))
    await create_chat(proxy, model="b")
    message = assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": HI}), 502)
    assert message.startswith('Upstream "gpu" did not answer with an event stream')
    url = take_down(services, "gpu")
    message = assert_error(await call(proxy, "PUT", "/chat", {"name": "demo", "message": HI}), 502)
    assert message == f'Upstream "gpu" is not reachable at {url}: connection refused'


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "reply",
    [
        Reply(tokens=["\n\nThe answer"], reasoning=["\n  plan it", " \n"]),
        Reply(tokens=["\n\nThe answer"], reasoning=["\n  plan it \n"], reasoning_field="reasoning"),
        Reply(tokens=["<think>\n  plan it", " \n</think>", "\n\nThe answer"]),
    ],
    ids=["reasoning_content", "reasoning", "think-tags"],
)
async def test_reasoning_is_trimmed_the_same_way_wherever_it_came_from(proxy, fakes, reply):
    fakes["laptop"].script.append(reply)
    await create_chat(proxy, model="a")
    await turn(proxy)
    stored = await stored_reply(proxy)
    assert (stored["content"], stored["reasoning"]) == ("The answer", "plan it")
