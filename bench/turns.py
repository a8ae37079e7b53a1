"""Turn benchmark: every figure of issue 14's table in one run, beside the original server.

    python -m bench.turns --quick                        # smaller counts, for a smoke run
    python -m bench.turns --seed PATH --seed-python PATH # the full table

Three contenders answer the same requests on 127.0.0.1: "direct" is the fake LM Studio
(tests/fake_lmstudio.py) reached without a proxy, "seed" is the original Flask server and
"chatproxy" is this project. Each server runs on a chats folder written before it starts.

The seed is ``python-proxy/server.py`` of nlac/simple-ai-chat. It is never committed here;
fetch it and give it a virtualenv of its own:

    git clone https://github.com/nlac/simple-ai-chat /tmp/simple-ai-chat
    python3 -m venv /tmp/seedvenv && /tmp/seedvenv/bin/pip install flask flask-cors requests
    python -m bench.turns --seed /tmp/simple-ai-chat/python-proxy/server.py --seed-python /tmp/seedvenv/bin/python

Without ``--seed`` the seed's column is left out and the ratios against it say so.

How each figure is taken:
1. CPU per 1-token turn: user + system CPU (/proc/PID/stat utime, stime, cutime, cstime) of
   the server and every process under it, read before and after sequential turns on
   distinct chats (after a warm-up), divided by the turns. The servers run at once and are
   asked in turn, ten rounds each, and each figure is the median round: a shared machine
   that slows down or speeds up meanwhile touches both alike. Direct: the fake's own CPU per request.
2. Burst: every turn (each on its own chat, 50 tokens 0.1 s apart) is sent at once on its own
   connection. Open at once: the most streams that had their response headers and had not ended,
   at any moment. Failed: not 200, no [DONE], short, or broken off (each bounded by a timeout).
   First event: from before connecting to the first data event (what a user waits), and from
   the fake's stamp on the first token to its arrival (what the relay adds). Start spread: the fake stamps
   each token with its send time; last first-token stamp minus the first. Memory: the sum over the
   server and its descendants of each one's peak RSS (VmHWM, sampled every 0.5 s and at the end).
3. Turn to end on a 2,000-message chat: from before connecting to the end of the answer, p50.
   Direct: the same messages (and the new one) posted to the fake, read to the end.
4. PUT /chat first event against the /v1 pass-through's on the same server, upstream answering
   at once, sequential and interleaved (direct, /v1, PUT in turn) so drift touches all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.common import (
    StreamResult,
    chatproxy,
    completion_body,
    fake_upstream_process,
    http_stream,
    percentile,
    seed_server,
    table,
    tree_cpu_seconds,
    tree_memory,
    turn_body,
)
from bench.store import write_chats

COMPLETIONS = "/v1/chat/completions"
ONE_TOKEN = "bench:tokens=1"
BURST_TOKENS = 50
BURST_MODEL = f"bench:tokens={BURST_TOKENS}:interval=0.1:stamp=1"
LONG_CHAT = 2000
# The chats already hold a question and its answer: the turns measured are a conversation's
# next ones. (A chat's very first turn also has its model asked for a title afterwards, in
# the background: one more short request, once per chat.)
PREVIOUS_TURN = 2
CPU_ROUNDS = 10
HEADER = ("measure", "direct", "seed", "chatproxy", "figure")


async def sequential(port: int, requests: list[tuple[str, str, dict]], timeout: float = 30) -> list[StreamResult]:
    results = []
    for method, path, body in requests:
        result = await http_stream(port, method, path, body, timeout=timeout)
        assert result.status == 200 and result.done, (path, result)
        results.append(result)
    return results


def first_event(results: list[StreamResult]) -> list[float]:
    return [r.first_event_at - r.sent_at for r in results]


def turns(prefix: str, count: int) -> list[tuple[str, str, dict]]:
    return [("PUT", "/chat", turn_body(f"{prefix}-{number:05}")) for number in range(count)]


async def interleaved_cpu(contenders: dict, args) -> dict[str, float]:
    """Figure 1: CPU per turn of each contender, every server running at once and asked in
    turn, round after round, so that a machine that speeds up or slows down meanwhile (a
    shared VM does) touches all alike. The median of the rounds, for each."""
    with tempfile.TemporaryDirectory(prefix="bench-turns-") as scratch, ExitStack() as servers:
        running = {}
        for name, start in contenders.items():
            folder = Path(scratch) / name
            write_chats(folder, args.warm, PREVIOUS_TURN, prefix="warm")
            write_chats(folder, args.cpu_turns, PREVIOUS_TURN, prefix="cpu")
            port, process = servers.enter_context(start(str(folder)))
            await sequential(port, turns("warm", args.warm))
            running[name] = (port, process.pid)
        per_round = args.cpu_turns // CPU_ROUNDS
        every = turns("cpu", args.cpu_turns)
        rounds: dict[str, list[float]] = {name: [] for name in running}
        for number in range(CPU_ROUNDS):
            requests = every[number * per_round : (number + 1) * per_round]
            for name, (port, pid) in running.items():
                before = tree_cpu_seconds(pid)
                await sequential(port, requests)
                rounds[name].append((tree_cpu_seconds(pid) - before) / per_round)
    return {name: percentile(values, 0.5) for name, values in rounds.items()}


async def sequential_figures(start, upstream_port: int, args, has_v1: bool) -> dict:
    """Figure 4 on one server: first events (with /v1 where there is one)."""
    with tempfile.TemporaryDirectory(prefix="bench-turns-") as scratch:
        folder = Path(scratch) / "chats"
        write_chats(folder, args.first, PREVIOUS_TURN, prefix="first")
        with start(str(folder)) as (port, _):
            direct, put, v1 = [], [], []
            completion = ("POST", COMPLETIONS, completion_body(ONE_TOKEN))
            for request in turns("first", args.first):
                direct += await sequential(upstream_port, [completion])
                put += await sequential(port, [request])
                if has_v1:
                    v1 += await sequential(port, [completion])
    return {"direct": first_event(direct), "put": first_event(put), "v1": first_event(v1)}


async def direct_sequential(port: int, pid: int, args) -> dict:
    request = ("POST", COMPLETIONS, completion_body(ONE_TOKEN))
    await sequential(port, [request] * args.warm)
    before = tree_cpu_seconds(pid)
    await sequential(port, [request] * args.cpu_turns)
    return {"cpu": (tree_cpu_seconds(pid) - before) / args.cpu_turns}


def most_at_once(spans: list[tuple[float, float]]) -> int:
    # At equal times an end (-1) sorts before a start (+1): touching streams are not both open.
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


async def burst(port: int, requests: list[tuple[str, str, dict]], pid: int | None, timeout: float) -> dict:
    results = [StreamResult() for _ in requests]
    peaks: dict[int, int] = {}  # PID -> its highest VmHWM seen, kB
    done = asyncio.Event()

    async def sample_memory() -> None:
        for _ in range(int(timeout / 0.5) + 10):
            for member, memory in tree_memory(pid).items():
                peaks[member] = max(peaks.get(member, 0), memory["VmHWM"])
            if done.is_set():
                return
            try:
                await asyncio.wait_for(done.wait(), 0.5)
            except asyncio.TimeoutError:
                pass

    sampler = asyncio.ensure_future(sample_memory()) if pid else None
    outcomes = await asyncio.gather(
        *(http_stream(port, *request, stamps=True, timeout=timeout, result=result) for request, result in zip(requests, results)),
        return_exceptions=True,
    )
    done.set()
    if sampler:
        await sampler
    good = [
        r for r, outcome in zip(results, outcomes)
        if not isinstance(outcome, BaseException) and r.status == 200 and r.done and r.events >= BURST_TOKENS
    ]
    stamps = [r.first_stamp for r in good if r.first_stamp is not None]
    return {
        "open": most_at_once([(r.headers_at, r.ended_at) for r in results if r.headers_at is not None]),
        "failed": len(results) - len(good),
        "first": first_event(good),
        "relay": [r.delays[0] for r in good if r.delays],
        "spread": max(stamps) - min(stamps) if stamps else float("nan"),
        "memory": sum(peaks.values()) / 1024,
    }


async def server_burst(start, args) -> dict:
    """A fresh server, warmed by one turn, then the burst: its peak memory is the burst's."""
    with tempfile.TemporaryDirectory(prefix="bench-turns-") as scratch:
        folder = Path(scratch) / "chats"
        write_chats(folder, 1, 0, prefix="warm")
        write_chats(folder, args.burst, PREVIOUS_TURN, prefix="burst", model=BURST_MODEL)
        with start(str(folder)) as (port, process):
            await sequential(port, turns("warm", 1))
            idle = sum(m["VmRSS"] for m in tree_memory(process.pid).values()) / 1024
            figures = await burst(port, turns("burst", args.burst), process.pid, args.burst_timeout)
    return figures | {"idle": idle}


async def long_chat_turns(start, args) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-turns-") as scratch:
        folder = Path(scratch) / "chats"
        write_chats(folder, 1, 0, prefix="warm")
        write_chats(folder, args.long_turns, LONG_CHAT, prefix="long")
        with start(str(folder)) as (port, _):
            await sequential(port, turns("warm", 1))
            results = await sequential(port, turns("long", args.long_turns), timeout=120)
    return [r.ended_at - r.sent_at for r in results]


async def direct_long_chat(port: int, args) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-turns-") as scratch:
        write_chats(Path(scratch), 1, LONG_CHAT, prefix="long")
        chat = json.loads((Path(scratch) / "long-00000.json").read_bytes())
    body = completion_body(ONE_TOKEN) | {"temperature": chat["temperature"], "max_tokens": chat["max_tokens"]}
    body["messages"] = chat["messages"] + body["messages"]
    results = await sequential(port, [("POST", COMPLETIONS, body)] * args.long_turns, timeout=120)
    return [r.ended_at - r.sent_at for r in results]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def ratio(value: float, base: float | None, target: str, against: str) -> str:
    return f"{value / base:.2f} x {against} (target {target})" if base else f"no {against} (--seed not given)"


def rows(direct: dict, seed: dict | None, proxy: dict, args) -> list[tuple]:
    seed = seed or {}

    def seed_column(key: str, show) -> str:
        return show(seed[key]) if key in seed else "-"

    def times(key: str, q: float):
        """The row's three cells for a list of times, and chatproxy's and the seed's ratio to direct."""
        d, p = percentile(direct[key], q), percentile(proxy[key], q)
        seed_ratio = f"; seed {percentile(seed[key], q) / d:.1f} x" if key in seed else ""
        return ms(d), seed_column(key, lambda v: ms(percentile(v, q))), ms(p), p / d, seed_ratio

    n = args.burst
    lines = [
        ("1. CPU per 1-token turn, server + children (ms)", ms(direct["cpu"]) + " (the fake)", seed_column("cpu", ms),
         ms(proxy["cpu"]), ratio(proxy["cpu"], seed.get("cpu"), "<= 0.5", "seed")),
        (f"2. burst of {n:,}: streams open at once (max)", str(direct["open"]), seed_column("open", str), str(proxy["open"]), f"target {n:,}"),
        (f"2. burst of {n:,}: failed", str(direct["failed"]), seed_column("failed", str), str(proxy["failed"]), "target 0"),
    ]
    for name, q, target in (("p50", 0.5, "3"), ("p99", 0.99, "5")):
        d, s, p, x, seed_ratio = times("first", q)
        lines.append((f"2. burst: first event {name} (ms, from sending)", d, s, p, f"{x:.2f} x direct (target <= {target}){seed_ratio}"))
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        d, s, p, _, _ = times("relay", q)
        lines.append((f"2. burst: first event {name} (ms, after the fake sent it)", d, s, p, "what the relay adds (no target)"))
    lines += [
        ("2. burst: peak memory, sum of VmHWM, server + children (MB)", "", seed_column("memory", "{:.0f}".format), f"{proxy['memory']:.0f}",
         f"target <= 100; idle after warm-up {proxy['idle']:.0f} MB (VmRSS)"),
        ("2. burst: turn starts spread, last - first (s)", f"{direct['spread']:.2f}", seed_column("spread", "{:.2f}".format),
         f"{proxy['spread']:.2f}", "from the fake's first-token stamps"),
    ]
    d, s, p, x, seed_ratio = times("long", 0.5)
    lines.append((f"3. turn to end, {LONG_CHAT:,}-message chat, p50 (ms)", d, s, p, f"{x:.2f} x direct (target <= 2){seed_ratio}"))
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        put, v1 = percentile(proxy["put"], q), percentile(proxy["v1"], q)
        lines.append((f"4. PUT /chat first event {name} (ms)", ms(percentile(proxy["direct"], q)), seed_column("put", lambda v: ms(percentile(v, q))),
                      ms(put), f"{(put - v1) * 1e3:+.2f} ms over /v1 ({ms(v1)} ms; target <= +0.5)"))
    return lines


async def run(args) -> None:
    with fake_upstream_process() as (upstream_port, upstream):
        contenders = {"chatproxy": functools.partial(chatproxy, upstream_port)}
        if args.seed:
            contenders["seed"] = functools.partial(seed_server, args.seed, args.seed_python, upstream_port)
        direct = await direct_sequential(upstream_port, upstream.pid, args)
        direct |= await burst(upstream_port, [("POST", COMPLETIONS, completion_body(BURST_MODEL))] * args.burst, None, args.burst_timeout)
        direct["long"] = await direct_long_chat(upstream_port, args)
        cpu = await interleaved_cpu(contenders, args)
        figures = {}
        for name, start in contenders.items():
            has_v1 = name == "chatproxy"  # the seed has no /v1 pass-through
            figures[name] = await sequential_figures(start, upstream_port, args, has_v1) | {"cpu": cpu[name]}
            figures[name] |= await server_burst(start, args)
            figures[name]["long"] = await long_chat_turns(start, args)
    title = "chatproxy turn benchmark (issue 14): direct = the fake LM Studio without a proxy"
    print(table(title, rows(direct, figures.get("seed"), figures["chatproxy"], args), HEADER))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts for a smoke run")
    parser.add_argument("--seed", help="path of the original server.py (python-proxy/ of nlac/simple-ai-chat)")
    parser.add_argument("--seed-python", default=sys.executable, help="a Python with flask, flask-cors and requests")
    args = parser.parse_args()
    args.warm, args.cpu_turns, args.burst, args.long_turns, args.first = (
        (10, 100, 200, 5, 30) if args.quick else (50, 1000, 1000, 30, 300)
    )
    args.burst_timeout = 60 if args.quick else 120
    if args.seed and not Path(args.seed).is_file():
        parser.error(f"--seed {args.seed}: no such file")
    started = time.monotonic()
    asyncio.run(run(args))
    print(f"({'quick run, ' if args.quick else ''}took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
