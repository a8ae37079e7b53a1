"""Benchmark plumbing: processes on 127.0.0.1, a lean raw HTTP client, figures.

Every process is started here and stopped here, by its PID. Every loop is bounded in
count and in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tests.helpers import child_pids

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
STAMP = re.compile(rb'"content": "([0-9.]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until_listening(port: int, process: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.pid} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listening on {port} after {timeout} s")


@contextmanager
def started(args: list[str], port: int, env: dict | None = None, python: str = sys.executable) -> Iterator[subprocess.Popen]:
    # Logs go to a file: an unread pipe fills up and blocks the server on its access log.
    log = tempfile.NamedTemporaryFile(prefix="bench-", suffix=".log", delete=False)
    process = subprocess.Popen([python, *args], cwd=ROOT, env=env, stdout=log, stderr=log)
    failed = True
    try:
        wait_until_listening(port, process)
        yield process
        failed = False
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        if failed:
            print(f"(server log kept: {log.name})", file=sys.stderr)
        else:
            os.unlink(log.name)


@contextmanager
def fake_upstream_process(models: str | None = None) -> Iterator[tuple[int, subprocess.Popen]]:
    """The fake LM Studio of the tests; ``models``: the one model it lists, else its own."""
    port = free_port()
    with started(["-m", "tests.fake_lmstudio", "--port", str(port), *(("--models", models) if models else ())], port) as process:
        yield port, process


@contextmanager
def fake_upstream() -> Iterator[int]:
    with fake_upstream_process() as (port, _):
        yield port


@contextmanager
def chatproxy(upstream_port: int | list[int], chats_dir: str | None = None, store: str | None = None) -> Iterator[tuple[int, subprocess.Popen]]:
    """chatproxy on ``chats_dir`` (else a folder of its own), or on ``store`` (a postgresql://
    URL); in front of one upstream, or of several (a list of ports: one [[upstreams]] each)."""
    port = free_port()
    several = upstream_port if isinstance(upstream_port, list) else []
    with tempfile.TemporaryDirectory() as scratch:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATPROXY_", "LM_STUDIO_URL", "CHATS_DIR"))}
        args = [
            "chatproxy.py", "--host", HOST, "--port", str(port),
            *(() if several else ("--lm-studio-url", f"http://{HOST}:{upstream_port}")),
            *(("--store", store) if store else ("--chats-dir", chats_dir or os.path.join(scratch, "chats"))),
        ]
        env["CHATPROXY_CONFIG"] = _bench_config(scratch, several)
        with started(args, port, env) as process:
            yield port, process


@contextmanager
def postgres_server() -> Iterator["PostgresServer"]:
    """A PostgreSQL of the benchmark's own (Debian's package, as the tests run it), keeping
    what it commits (fsync on, as in a deployment); removed at the end."""
    from tests.postgres import DURABLE, PostgresServer, find_binaries

    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    server = PostgresServer(binaries, DURABLE)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextmanager
def seed_server(seed: str, python: str, upstream_port: int, chats_dir: str) -> Iterator[tuple[int, subprocess.Popen]]:
    """The original Flask server (python-proxy/server.py of nlac/simple-ai-chat), as its README runs it."""
    port = free_port()
    args = [seed, "--host", HOST, "--port", str(port), "--lm-studio-url", f"http://{HOST}:{upstream_port}", "--chats-dir", chats_dir]
    with started(args, port, python=python) as process:
        yield port, process


def _bench_config(scratch: str, upstream_ports: list[int]) -> str:
    """Stop quickly when a benchmark ends; no background title requests (a new chat's first
    reply has the model asked for a title: one more upstream request, not what is timed);
    the upstreams, when there are several."""
    path = os.path.join(scratch, "bench.toml")
    lines = ["[shutdown]", "grace = 1", "[chats]", "model_titles = false"]
    for number, upstream_port in enumerate(upstream_ports):
        lines += ["[[upstreams]]", f'name = "u{number}"', f'url = "http://{HOST}:{upstream_port}"']
    Path(path).write_text("\n".join(lines) + "\n")
    return path


def request_bytes(method: str, path: str, body: dict | bytes | None = None) -> bytes:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
    )


async def http_call(port: int, method: str, path: str, body: dict | bytes | None = None, timeout: float = 30) -> tuple[int, float, bytes]:
    """One request on a fresh connection, read to the end: (status, seconds, raw answer)."""
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    started = time.perf_counter()
    writer.write(request_bytes(method, path, body))
    data = await asyncio.wait_for(reader.read(), timeout)
    elapsed = time.perf_counter() - started
    writer.close()
    return int(data.split(b" ", 2)[1]), elapsed, data


async def create_chats(port: int, names: list[str], model: str) -> None:
    for start in range(0, len(names), 50):
        answers = await asyncio.gather(
            *(http_call(port, "POST", "/chat", {"name": n, "model": model}) for n in names[start : start + 50])
        )
        assert all(status == 200 for status, _, _ in answers), [a[0] for a in answers]


def turn_body(name: str) -> dict:
    return {"name": name, "message": {"role": "user", "content": "hi"}}


@dataclass
class StreamResult:
    sent_at: float = 0.0  # before connecting: a connection the server is slow to accept counts
    headers_at: float | None = None
    first_event_at: float | None = None
    last_event_at: float | None = None
    ended_at: float | None = None  # the answer read to its end, or the stream broken off
    events: int = 0
    done: bool = False
    status: int = 0
    first_stamp: float | None = None  # when the upstream sent the first token (stamp=1 models)
    delays: list[float] = field(default_factory=list)  # receive time - upstream stamp


async def http_stream(
    port: int, method: str, path: str, body: dict, stamps: bool = False, timeout: float = 120, result: StreamResult | None = None
) -> StreamResult:
    """One streamed request on a fresh connection; counts events as they arrive.

    Pass ``result`` to keep what was seen when the stream fails (it raises, as always).
    """
    result = result or StreamResult()
    result.sent_at = time.monotonic()
    try:
        await asyncio.wait_for(_exchange(port, request_bytes(method, path, body), result, stamps), timeout)
    finally:
        result.ended_at = time.monotonic()
    return result


async def _exchange(port: int, request: bytes, result: StreamResult, stamps: bool) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        await _read_events(reader, result, stamps)
    finally:
        writer.close()


async def _read_events(reader: asyncio.StreamReader, result: StreamResult, stamps: bool) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    result.headers_at = time.monotonic()
    result.status = int(head.split(b" ", 2)[1])
    tail = b""
    while True:
        data = await reader.read(262144)
        if not data:
            return
        now = time.monotonic()
        data = tail + data
        cut = data.rfind(b"\n\n")
        if cut < 0:
            tail = data
            continue
        complete, tail = data[: cut + 2], data[cut + 2 :]
        count = complete.count(b"data: ")
        if not count:
            continue
        if b"data: [DONE]" in complete:
            result.done = True
            count -= 1
        if count:
            result.events += count
            if result.first_event_at is None:
                result.first_event_at = now
            result.last_event_at = now
            if stamps:
                sent = [float(stamp) for stamp in STAMP.findall(complete)]
                if sent and result.first_stamp is None:
                    result.first_stamp = sent[0]
                result.delays.extend(now - stamp for stamp in sent)


def completion_body(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def process_memory(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS in kB, and the thread count, from /proc."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "Threads"):
            figures[key] = int(value.split()[0])
    return figures


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process under it (children, their children), from /proc."""
    tree, walked = [pid], 0
    while walked < len(tree) and walked < 100:  # breadth first, the list growing as it is walked
        tree += child_pids(tree[walked])
        walked += 1
    return tree


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces): field 3 onwards."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and all its live descendants, plus the children they reaped."""
    ticks = 0
    for member in process_tree(pid):
        try:
            fields = _stat_fields(member)
        except OSError:
            continue
        ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_memory(pid: int) -> dict[int, dict[str, int]]:
    """process_memory() of ``pid`` and of every process under it, by PID."""
    figures = {}
    for member in process_tree(pid):
        try:
            figures[member] = process_memory(member)
        except OSError:
            continue
    return figures


def table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...] = ("measure", "direct", "chatproxy", "figure")) -> str:
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)
