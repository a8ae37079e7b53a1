"""The server as a process: a second Ctrl-C, a port already taken, the access log of a
client that left. Real processes against the fake LM Studio."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys

import pytest

from tests.fake_lmstudio import MODEL, Reply
from tests.helpers import call, child_pids, closed_port_url, has_exited, start_server, stop_server, stream, wait_for


async def read_until(process, text: str, timeout: float = 10) -> str:
    """The server's output up to and including the first line holding ``text``."""
    seen = []

    async def lines() -> str:
        while line := await process.stdout.readline():
            seen.append(line.decode())
            if text in seen[-1]:
                return "".join(seen)
        raise AssertionError(f"the server exited without saying {text!r}: {''.join(seen)}")

    return await asyncio.wait_for(lines(), timeout)


async def until_active_streams(base: str, count: int, timeout: float = 10) -> None:
    """Wait until GET /metrics counts ``count`` streams in progress (a bounded poll)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        metrics = (await call(base, "GET", "/metrics")).body.decode()
        if re.search(rf"^chatproxy_active_streams {count}\.0$", metrics, re.M):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never {count} active streams")


@pytest.mark.gen_test(timeout=60)
async def test_a_second_ctrl_c_ends_running_streams_at_once_and_keeps_their_replies(project_root, clean_env, tmp_path, fake):
    fake.script.append(Reply(tokens=["So ", "far", " and more"], hold=asyncio.Event(), hold_at=2))
    process, base = await start_server(project_root, clean_env, tmp_path, fake, shutdown__grace=300)
    try:
        assert (await call(base, "POST", "/chat", {"name": "demo", "model": MODEL})).status == 200
        relayed = asyncio.Event()
        running = asyncio.ensure_future(
            stream(base, "/chat", {"name": "demo", "message": {"role": "user", "content": "hi"}}, timeout=30,
                   stop=lambda result: result.content() == "So far" and relayed.set())
        )
        await asyncio.wait_for(relayed.wait(), 10)
        process.send_signal(signal.SIGINT)
        said = await read_until(process, "Shutting down")
        assert "300 s" in said and "Ctrl-C again" in said
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 20) == 0  # long before the 300 s grace
        result = await running
        assert json.loads(result.data[-1])["error"]["type"] == "shutdown"
    finally:
        await stop_server(process)
    saved = json.loads((tmp_path / "chats" / "demo.json").read_text())
    assert saved["messages"][-1]["content"] == "So far" and saved["messages"][-1]["interrupted"] is True


@pytest.mark.gen_test(timeout=30)
async def test_a_port_in_use_is_named_with_the_flag_to_change_it(project_root, clean_env, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(project_root / "chatproxy.py"), "--host", "127.0.0.1", "--port", str(port),
            "--chats-dir", str(tmp_path / "chats"), env=clean_env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, error = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 1
    message = error.decode()
    assert f"port {port} on 127.0.0.1 is already in use" in message and "--port" in message
    assert "Traceback" not in message


@pytest.mark.gen_test(timeout=30)
async def test_the_access_log_says_when_a_client_left_before_its_answer(project_root, clean_env, tmp_path, fake):
    fake.script.append(Reply(hold=(release := asyncio.Event()), hold_at=1))
    process, base = await start_server(project_root, clean_env, tmp_path, fake)
    try:
        assert (await call(base, "POST", "/chat", {"name": "demo", "model": MODEL})).status == 200
        first = asyncio.ensure_future(stream(base, "/chat", {"name": "demo", "message": {"role": "user", "content": "1"}}))
        await fake.wait_held()
        # A second turn waits for the first; its client gives up before any answer.
        waiting = asyncio.ensure_future(stream(base, "/chat", {"name": "demo", "message": {"role": "user", "content": "2"}}))
        await until_active_streams(base, 2)  # the second turn is in, waiting
        waiting.cancel()
        said = await read_until(process, "PUT /chat")
        assert re.search(r"access: 499 PUT /chat .*\(client left\)$", said.splitlines()[-1]), said
        release.set()
        await first
    finally:
        await stop_server(process)


@pytest.mark.gen_test(timeout=120)
async def test_workers_share_the_port_count_metrics_together_and_a_dead_one_is_replaced(project_root, clean_env, tmp_path, fake):
    process, base = await start_server(project_root, clean_env, tmp_path, fake, server__workers=2)
    try:
        workers = child_pids(process.pid)
        assert len(workers) == 2
        assert (await call(base, "POST", "/chat", {"name": "demo", "model": MODEL})).status == 200
        answers = [await call(base, "GET", "/chats") for _ in range(40)]
        assert {answer.status for answer in answers} == {200}
        assert len({answer.headers["X-Request-Id"] for answer in answers}) == 40
        metrics = (await call(base, "GET", "/metrics")).body.decode()
        listed = re.search(r'^chatproxy_requests_total\{method="GET",route="/chats",status="200"\} (\d+)', metrics, re.M)
        assert int(listed.group(1)) >= 40  # every worker's count (start_server's own GETs too)
        os.kill(workers[0], signal.SIGKILL)
        await wait_for(lambda: len(child_pids(process.pid)) == 2 and workers[0] not in child_pids(process.pid), timeout=30, what="a new worker")
        assert (await call(base, "GET", "/chat?name=demo")).status == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert all(has_exited(pid) for pid in child_pids(process.pid) + workers[1:])
    finally:
        await stop_server(process)  # its workers too: the kernel stops them when it dies


@pytest.mark.gen_test(timeout=60)
async def test_workers_stop_when_their_supervisor_is_killed(project_root, clean_env, tmp_path, fake):
    process, base = await start_server(project_root, clean_env, tmp_path, fake, server__workers=2)
    workers = child_pids(process.pid)
    assert len(workers) == 2
    await stop_server(process)  # kill -9, and reaped
    await wait_for(lambda: all(has_exited(pid) for pid in workers), timeout=30, what="the workers to stop")


@pytest.mark.gen_test(timeout=60)
async def test_start_up_says_whether_the_upstream_answered_and_with_how_many_models(project_root, clean_env, tmp_path, fake):
    fake.models = ["alpha", "beta"]
    process, _ = await start_server(project_root, clean_env, tmp_path, fake)
    try:
        said = await read_until(process, "answered")
        assert "answered: 2 model(s): alpha, beta" in said.splitlines()[-1]
    finally:
        await stop_server(process)
    fake.url = closed_port_url()
    (tmp_path / "down").mkdir()
    process, _ = await start_server(project_root, clean_env, tmp_path / "down", fake)
    try:
        said = (await read_until(process, "did not answer")).splitlines()[-1]
        assert "connection refused" in said and "lms server start" in said
    finally:
        await stop_server(process)
