"""Upstream benchmark: what several upstreams and failover add, and what the HTTP client costs.

    python -m bench.upstreams             # one upstream against three; a failover against a failed connect
    python -m bench.upstreams --clients   # CPU per streamed request and memory at 1,000 streams, per HTTP client
    python -m bench.upstreams --quick     # smaller counts, for a smoke run

Issue 16's targets: the first event with three upstreams within 0.2 ms of one upstream's,
and a failover costing no more than the failed connect itself. Everything runs on
127.0.0.1 against fake upstreams (tests/fake_lmstudio.py); the processes are started and
stopped here, every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from typing import Iterator

from bench.common import HOST, chatproxy, completion_body, create_chats, fake_upstream_process, free_port, http_stream, percentile, process_memory, table, turn_body

MODEL = "bench:tokens=1"
COMPLETIONS = "/v1/chat/completions"


@contextmanager
def fakes(count: int) -> Iterator[list[int]]:
    """``count`` fake upstreams, each listing MODEL."""
    with ExitStack() as stack:
        yield [stack.enter_context(fake_upstream_process(MODEL))[0] for _ in range(count)]


# -- one upstream against three ----------------------------------------------------------------


async def first_event(port: int, method: str, path: str, body: dict) -> float:
    result = await http_stream(port, method, path, body)
    assert result.done and result.first_event_at, result
    return result.first_event_at - result.sent_at


async def one_against_three(count: int) -> list[tuple]:
    """The same requests to a chatproxy with one upstream and to one with three, alternating."""
    with fakes(3) as ports, chatproxy(ports[0]) as (one, _), chatproxy(ports) as (three, _):  # --lm-studio-url; [[upstreams]]
        for port in (one, three):
            await create_chats(port, [f"c{i}" for i in range(count)], MODEL)
        times: dict[tuple[str, int], list[float]] = {}
        for label, method, path in (("/v1 pass-through", "POST", COMPLETIONS), ("PUT /chat", "PUT", "/chat")):
            for number in range(count):
                for port in (one, three):
                    body = completion_body(MODEL) if method == "POST" else turn_body(f"c{number}")
                    times.setdefault((label, port), []).append(await first_event(port, method, path, body))
        rows = []
        for label in ("/v1 pass-through", "PUT /chat"):
            for name, q in (("p50", 0.5), ("p99", 0.99)):
                a, b = percentile(times[(label, one)], q) * 1e3, percentile(times[(label, three)], q) * 1e3
                rows.append((f"{label}: first event {name} (ms)", f"{a:.3f}", f"{b:.3f}", f"{b - a:+.3f} ms"))
        return rows


# -- a failover against the failed connect -----------------------------------------------------


async def failover_cost(count: int) -> list[tuple]:
    """In one process: the head through a refused upstream and then a good one, against the
    good one alone and against the refused connect alone."""
    import jsonbytes
    from lmstudio.call import Target, UpstreamCall
    from lmstudio.http import UpstreamHTTPClient
    from lmstudio.upstream import Upstream
    from lmstudio.upstreams import CHAT_HEADERS

    with fakes(1) as (port,):
        client = UpstreamHTTPClient(force_instance=True, max_clients=8)
        good = Upstream("good", f"http://{HOST}:{port}", client, 10, 300)
        down = Upstream("down", f"http://{HOST}:{free_port()}", client, 10, 300)
        body = jsonbytes.dumps(completion_body(MODEL))

        async def head(upstreams: list) -> float:
            started_at = time.perf_counter()
            call = UpstreamCall([Target(upstream, body) for upstream in upstreams], "POST", COMPLETIONS, CHAT_HEADERS)
            try:
                await call.head()
            except Exception:
                return time.perf_counter() - started_at  # the refused connect alone
            answered = time.perf_counter() - started_at
            await call.read_body()
            return answered

        kinds = {"good upstream alone": [good], "refused, then the good one": [down, good], "the refused connect alone": [down]}
        times: dict[str, list[float]] = {}
        for _ in range(count):
            for name, upstreams in kinds.items():
                times.setdefault(name, []).append(await head(upstreams))
        client.close()
    p50 = {name: percentile(values, 0.5) * 1e3 for name, values in times.items()}
    added = p50["refused, then the good one"] - p50["good upstream alone"]
    rows = [(f"head after {name}: p50 (ms)", f"{value:.3f}") for name, value in p50.items()]
    rows.append(("failover added, against the refused connect", f"{added:+.3f} vs {p50['the refused connect alone']:.3f}"))
    return rows


# -- the HTTP client ---------------------------------------------------------------------------

CLIENTS = ("tornado-simple", "tornado-curl", "chatproxy")


def measure_clients(requests: int, streams: int) -> list[tuple]:
    rows = []
    with fakes(1) as (port,):
        for kind in CLIENTS:
            out = subprocess.run(
                [sys.executable, "-m", "bench.upstreams", "--client-run", kind, str(port), str(requests), str(streams)],
                capture_output=True, text=True, check=True, timeout=600,
            )
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((
                kind, f"{figures['cpu_ms']:.3f}", f"{figures['idle_mb']:.1f}",
                f"{figures['peak_mb']:.1f}", f"+{figures['peak_mb'] - figures['before_mb']:.1f}",
            ))
    return rows


async def client_run(kind: str, port: int, requests: int, streams: int) -> dict:
    """In a process of its own: CPU per streamed one-token request, and memory at ``streams`` at once."""
    from tornado.httpclient import HTTPRequest

    before = process_memory(os.getpid())["VmRSS"]
    url, max_clients = f"http://{HOST}:{port}{COMPLETIONS}", streams + 64
    if kind == "chatproxy":
        from lmstudio import Upstreams

        upstreams = Upstreams.build((), f"http://{HOST}:{port}", 10, 300, max_clients)

        async def one(model: str) -> None:
            call = upstreams.open_chat(model, completion_body(model))
            await call.head()
            await call.read_body(1 << 20)
    else:
        from tornado.curl_httpclient import CurlAsyncHTTPClient
        from tornado.simple_httpclient import SimpleAsyncHTTPClient

        implementation = SimpleAsyncHTTPClient if kind == "tornado-simple" else CurlAsyncHTTPClient
        client = implementation(force_instance=True, max_clients=max_clients)

        async def one(model: str) -> None:
            pieces: list[bytes] = []
            request = HTTPRequest(url, method="POST", body=json.dumps(completion_body(model)), request_timeout=0,
                                  headers={"Content-Type": "application/json"}, header_callback=lambda line: None,
                                  streaming_callback=pieces.append)
            await client.fetch(request)
    idle = process_memory(os.getpid())["VmRSS"]
    for _ in range(min(100, requests)):
        await one(MODEL)
    cpu = time.process_time()
    for _ in range(requests):
        await one(MODEL)
    cpu_ms = 1e3 * (time.process_time() - cpu) / requests
    await asyncio.gather(*(one("bench:tokens=5:interval=0.4") for _ in range(streams)))
    memory = process_memory(os.getpid())
    return {"cpu_ms": cpu_ms, "before_mb": before / 1024, "idle_mb": idle / 1024, "peak_mb": memory["VmHWM"] / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", action="store_true", help="compare the HTTP clients instead")
    parser.add_argument("--quick", action="store_true", help="small counts for a smoke run")
    parser.add_argument("--client-run", nargs=4, metavar=("KIND", "PORT", "REQUESTS", "STREAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_run:
        kind, port, requests, streams = args.client_run
        print(json.dumps(asyncio.run(client_run(kind, int(port), int(requests), int(streams)))))
        return
    started_at = time.monotonic()
    if args.clients:
        requests, streams = (300, 100) if args.quick else (2000, 1000)
        rows = measure_clients(requests, streams)
        header = ("client", "CPU per request (ms)", "idle RSS (MB)", f"peak RSS at {streams} streams (MB)", "over start")
        print(table(f"HTTP clients: {requests} streamed one-token requests one after another, then {streams} at once", rows, header))
    else:
        count = 30 if args.quick else 300
        print(table("One upstream against three (the same fake upstreams, requests alternating)", asyncio.run(one_against_three(count)),
                    ("measure", "one upstream", "three upstreams", "added")))
        print()
        print(table("A failover against the failed connect (in one process, keep-alive to the good upstream)",
                    asyncio.run(failover_cost(count)), ("measure", "figure")))
    print(f"(took {time.monotonic() - started_at:.0f} s)")


if __name__ == "__main__":
    main()
