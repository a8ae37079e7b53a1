"""chatproxy processes on one PostgreSQL database: what fails at start, turns racing from two
instances, a chat written on one read on the other, a kill -9 mid-turn, and --workers. (A
turn watched and stopped through the other instance: tests/test_turns_process.py.)"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys

import pytest

from tests.fake_lmstudio import MODEL, Reply
from tests.helpers import call, child_pids, eventually, free_port, start_server, stop_server, stream

HI = {"role": "user", "content": "tell me"}


def on_postgres(url: str, **settings) -> dict:
    """start_server's settings for an instance keeping its chats in ``url``."""
    return {"storage__url": json.dumps(url), **settings}


def contents(chat: dict) -> list[str]:
    return [message["content"] for message in chat["messages"]]


async def read_chat(base: str, name: str = "demo") -> dict:
    response = await call(base, "GET", f"/chat?name={name}")
    assert response.status == 200, response.body
    return response.json["chat"]


def start_up_failure(project_root, clean_env, store: str) -> str:
    process = subprocess.run(
        [sys.executable, str(project_root / "chatproxy.py"), "--store", store, "--port", str(free_port())],
        env=clean_env, capture_output=True, text=True, timeout=30,
    )
    assert process.returncode == 2, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chatproxy: "), process.stderr
    return lines[0]


def test_a_store_that_cannot_be_used_stops_the_start_with_one_line_and_exit_2(project_root, clean_env, postgres_server, tmp_path):
    assert "expected a postgresql:// URL" in start_up_failure(project_root, clean_env, "mysql://chatproxy@localhost/chats")
    refused = start_up_failure(project_root, clean_env, postgres_server.url("postgres", role="nobody"))
    assert "refused the login" in refused and "nobody" in refused
    missing = start_up_failure(project_root, clean_env, postgres_server.url("no_such_database"))
    assert "no such database" in missing and "no_such_database" in missing
    down = start_up_failure(project_root, clean_env, f"postgresql://chatproxy@/chats?host={tmp_path}&port=5999")
    assert "cannot be reached" in down and str(tmp_path) in down


@pytest.mark.gen_test(timeout=90)
async def test_two_instances_serialise_racing_turns_and_read_each_others_chats(project_root, clean_env, tmp_path, fake, postgres_url):
    first, base_a = await start_server(project_root, clean_env, tmp_path, fake, **on_postgres(postgres_url))
    second, base_b = await start_server(project_root, clean_env, tmp_path, fake, **on_postgres(postgres_url))
    try:
        creates = await asyncio.gather(*(call(base, "POST", "/chat", {"name": "shared", "model": MODEL}) for base in (base_a, base_b)))
        assert sorted(response.status for response in creates) == [200, 409]
        fake.script.extend(Reply(tokens=["w1 ", "w2 ", "w3"], interval=0.002) for _ in range(20))
        results = await asyncio.gather(*(
            stream(base, "/chat", {"name": "shared", "message": {"role": "user", "content": f"{tag}{number}"}}, timeout=60)
            for number in range(10)
            for base, tag in ((base_a, "a"), (base_b, "b"))
        ))
        assert all(result.data[-1] == "[DONE]" for result in results)
        saved = await read_chat(base_b, "shared")
        assert await read_chat(base_a, "shared") == saved
        users = sorted(message["content"] for message in saved["messages"] if message["role"] == "user")
        assert users == sorted([f"a{n}" for n in range(10)] + [f"b{n}" for n in range(10)])
        assert [message["role"] for message in saved["messages"]] == ["user", "assistant"] * 20  # never interleaved
        assert set(contents(saved)[1::2]) == {"w1 w2 w3"}
        await call(base_a, "PATCH", "/chat", {"name": "shared", "new_name": "renamed", "system_prompt": "Be brief."})
        assert (await read_chat(base_b, "renamed"))["system_prompt"] == "Be brief."
        assert [chat["name"] for chat in (await call(base_b, "GET", "/chats")).json["chats"]] == ["renamed"]
    finally:
        await stop_server(first)
        await stop_server(second)


@pytest.mark.gen_test(timeout=90)
async def test_kill_9_mid_turn_leaves_the_question_and_the_journaled_reply_and_the_chat_takes_new_turns(project_root, clean_env, tmp_path, fake, postgres_url, pg_conn):
    fake.script.append(Reply(tokens=[f"w{i} " for i in range(500)], interval=0.02))  # ten seconds of reply
    doomed, base_a = await start_server(project_root, clean_env, tmp_path, fake, **on_postgres(postgres_url))
    survivor, base_b = await start_server(project_root, clean_env, tmp_path, fake, **on_postgres(postgres_url))
    seen: list[str] = []
    try:
        assert (await call(base_a, "POST", "/chat", {"name": "demo", "model": MODEL})).status == 200
        reading = asyncio.ensure_future(stream(base_a, "/chat", {"name": "demo", "message": HI}, stop=lambda r: seen.append(r.content()) and False, timeout=60))

        async def journaled() -> bool:
            cursor = await pg_conn.execute("SELECT reply->>'content' FROM turns")
            row = await cursor.fetchone()
            return row is not None and row[0] is not None and row[0].count(" ") >= 50

        await eventually(journaled, what="a second of reply journaled", timeout=30)
        doomed.kill()
        await doomed.wait()
        await asyncio.gather(reading, return_exceptions=True)
        running = await read_chat(base_b)
        assert contents(running) == ["tell me"]  # the question is there
        assert running["running_turn"]["owner"] != base_b  # the dead one's lease has not expired yet
        await pg_conn.execute("UPDATE leases SET expires_at = now()")  # as thirty seconds later
        fake.script.append(Reply(tokens=["again"]))
        assert (await stream(base_b, "/chat", {"name": "demo", "message": {"role": "user", "content": "more"}})).data[-1] == "[DONE]"
        question, reply, more, again = (await read_chat(base_b))["messages"]
        assert question["content"] == "tell me" and more["content"] == "more" and again["content"] == "again"
        assert reply["interrupted"] is True and reply["finish_reason"] is None
        assert reply["content"].count(" ") >= 50 and seen[-1].startswith(reply["content"])  # what was relayed, never more
    finally:
        await stop_server(doomed)
        await stop_server(survivor)


@pytest.mark.gen_test(timeout=120)
async def test_workers_on_postgresql_share_the_chats_and_count_metrics_together(project_root, clean_env, tmp_path, fake, postgres_url):
    process, base = await start_server(project_root, clean_env, tmp_path, fake, **on_postgres(postgres_url, server__workers=3))
    try:
        assert len(child_pids(process.pid)) == 3
        await asyncio.gather(*(call(base, "POST", "/chat", {"name": f"c{n}", "model": MODEL}) for n in range(6)))
        results = await asyncio.gather(*(
            stream(base, "/chat", {"name": f"c{n % 6}", "message": {"role": "user", "content": f"q{n}"}}, timeout=60) for n in range(24)
        ))
        assert all(result.data[-1] == "[DONE]" for result in results)
        for n in range(6):
            chat = await read_chat(base, f"c{n}")
            assert [m["role"] for m in chat["messages"]] == ["user", "assistant"] * 4
            assert sorted(contents(chat)[::2]) == sorted(f"q{q}" for q in range(n, 24, 6))
        metrics = (await call(base, "GET", "/metrics")).body.decode()
        turns = re.search(r'^chatproxy_requests_total\{method="PUT",route="/chat",status="200"\} (\d+)', metrics, re.M)
        assert int(float(turns.group(1))) == 24
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        await stop_server(process)
