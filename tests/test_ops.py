"""Running it for real: health, the token, limits, metrics, request ids and JSON logs."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_lmstudio import MODEL, Reply
from tests.helpers import assert_error, call, start_server, stop_server, stream, wait_for

pytestmark = pytest.mark.both_engines

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.gen_test
async def test_health_ok(proxy, fake):
    response = await call(proxy, "GET", "/health")
    assert response.status == 200
    report = response.json
    assert report["status"] == "ok"
    [upstream] = report["upstreams"]
    assert (upstream["name"], upstream["url"], upstream["state"]) == ("lmstudio", fake.url, "up")
    assert upstream["models"] == [MODEL] and upstream["circuit"] == "closed" and "error" not in upstream
    assert report["chats_dir_writable"] is True
    assert report["active_streams"] == 0
    assert isinstance(report["version"], str) and report["uptime_s"] >= 0


@pytest.mark.gen_test
async def test_health_degraded_when_upstream_is_down(proxy, services):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        services.upstreams.members[0].base_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    response = await call(proxy, "GET", "/health")
    assert response.status == 503
    assert response.json["status"] == "degraded"
    [upstream] = response.json["upstreams"]
    assert upstream["state"] == "down" and "connection refused" in upstream["error"]


@pytest.mark.gen_test(timeout=10)
async def test_health_answers_within_two_seconds_when_upstream_hangs(proxy, services):
    silent = socket.socket()  # accepts connections (the kernel does) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        services.upstreams.members[0].base_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await call(proxy, "GET", "/health")
        assert loop.time() - started < 2.5
        assert response.status == 503 and response.json["upstreams"][0]["state"] != "up"
    finally:
        silent.close()


@pytest.mark.gen_test
@pytest.mark.config(token=TOKEN)
async def test_token_is_required_everywhere_but_preflight_and_health(proxy, caplog):
    for method, path, body in (("GET", "/chats", None), ("POST", "/chat", {"name": "x", "model": "m"}),
                               ("GET", "/v1/models", None), ("GET", "/metrics", None), ("GET", "/nope", None)):
        missing = await call(proxy, method, path, body)
        assert_error(missing, 401)
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = await call(proxy, method, path, body, headers={"Authorization": "Bearer wrong-token-wrong-token"})
        assert_error(wrong, 401)
    assert (await call(proxy, "GET", "/chats", headers=AUTH)).status == 200
    assert (await call(proxy, "POST", "/chat", {"name": "x", "model": "m"}, headers=AUTH)).status == 200
    assert (await call(proxy, "GET", "/v1/models", headers=AUTH)).status == 200
    assert (await call(proxy, "OPTIONS", "/chat", headers={"Origin": "http://a.test"})).status == 204
    assert (await call(proxy, "GET", "/health")).status == 200
    assert TOKEN not in caplog.text


@pytest.mark.gen_test
@pytest.mark.config(token=TOKEN)
async def test_token_is_not_forwarded_to_lm_studio(proxy, fake):
    await call(proxy, "GET", "/v1/models", headers=AUTH)
    assert "Authorization" not in fake.headers[-1]


@pytest.mark.gen_test
@pytest.mark.config(max_body_size=1000)
async def test_body_over_the_limit_is_413_and_changes_nothing(proxy, stored):
    response = await call(proxy, "POST", "/chat", {"name": "big", "model": "m" * 2000})
    assert "limit of 1000 bytes" in assert_error(response, 413)
    assert await stored.names() == []


@pytest.mark.gen_test
@pytest.mark.config(max_message_size=10)
async def test_message_over_the_limit_is_413(proxy, fake):
    assert (await call(proxy, "POST", "/chat", {"name": "c", "model": MODEL})).status == 200
    response = await call(proxy, "PUT", "/chat", {"name": "c", "message": {"role": "user", "content": "x" * 11}})
    assert_error(response, 413)
    assert fake.requests == []


@pytest.mark.gen_test
@pytest.mark.config(max_streams=1)
async def test_streams_beyond_the_limit_get_503_with_retry_after(proxy, fake, services):
    hold = asyncio.Event()
    fake.script.append(Reply(hold=hold))
    for name in ("a", "b"):
        assert (await call(proxy, "POST", "/chat", {"name": name, "model": MODEL})).status == 200
    first = asyncio.ensure_future(stream(proxy, "/chat", {"name": "a", "message": {"role": "user", "content": "hi"}}))
    await fake.wait_held()
    refused = await call(proxy, "PUT", "/chat", {"name": "b", "message": {"role": "user", "content": "hi"}})
    assert_error(refused, 503)
    assert refused.headers["Retry-After"] == "1"
    assert_error(await call(proxy, "GET", "/v1/models"), 503)
    hold.set()
    assert (await first).data[-1] == "[DONE]"
    # The turn keeps its place a moment after its last word: until its chat is let go.
    await wait_for(lambda: len(services.streams) == 0, what="the turn's stream place freed")
    assert (await call(proxy, "GET", "/v1/models")).status == 200


def samples(text: str) -> dict[tuple, float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.mark.gen_test
async def test_metrics_match_the_traffic_sent(proxy, fake):
    for _ in range(3):
        await call(proxy, "GET", "/chats")
    await call(proxy, "POST", "/chat", {"name": "m", "model": MODEL})
    result = await stream(proxy, "/chat", {"name": "m", "message": {"role": "user", "content": "hi"}})
    fake.script.append(Reply(status=400))
    await call(proxy, "PUT", "/chat", {"name": "m", "message": {"role": "user", "content": "again"}})
    scrape = await call(proxy, "GET", "/metrics")
    assert scrape.status == 200 and scrape.headers["Content-Type"].startswith("text/plain")
    found = samples(scrape.body.decode())

    def requests(route, method, status):
        return found[("chatproxy_requests_total", (("method", method), ("route", route), ("status", status)))]

    assert requests("/chats", "GET", "200") == 3
    assert requests("/chat", "POST", "200") == 1
    assert requests("/chat", "PUT", "200") == 1
    assert requests("/chat", "PUT", "400") == 1
    assert found[("chatproxy_active_streams", ())] == 0
    assert found[("chatproxy_chats_stored", ())] == 1
    assert found[("chatproxy_upstream_errors_total", (("kind", "http_error"),))] == 1
    assert found[("chatproxy_relayed_bytes_total", (("route", "/chat"),))] == sum(len(c) for c in result.chunks)
    assert found[("chatproxy_stream_duration_seconds_count", (("route", "/chat"),))] == 1
    assert found[("chatproxy_time_to_first_token_seconds_count", (("route", "/chat"),))] == 1


@pytest.mark.gen_test
async def test_every_response_carries_a_request_id(proxy):
    ids = set()
    for path in ("/chats", "/nope", "/health"):
        ids.add((await call(proxy, "GET", path)).headers["X-Request-Id"])
    assert len(ids) == 3 and all(len(i) == 32 for i in ids)


@pytest.mark.gen_test(timeout=30)
async def test_json_logs_one_object_per_line_with_request_fields(project_root, clean_env, tmp_path, fake):
    process, base = await start_server(project_root, clean_env, tmp_path, fake, log__format='"json"')
    try:
        await call(base, "POST", "/chat", {"name": "logged", "model": MODEL})
        turn = await call(base, "PUT", "/chat", {"name": "logged", "message": {"role": "user", "content": "hi"}})
        request_id = turn.headers["X-Request-Id"]
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)
        await stop_server(process)
    lines = (await process.stdout.read()).decode().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    access = next(e for e in entries if e.get("request_id") == request_id)
    assert access["route"] == "/chat" and access["method"] == "PUT" and access["status"] == 200
    assert access["chat"] == "logged" and access["duration_ms"] > 0 and access["upstream_ms"] >= 0
