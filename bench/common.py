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
def started(args: list[str], port: int, env: dict | None = None) -> Iterator[subprocess.Popen]:
    # Logs go to a file: an unread pipe fills up and blocks the server on its access log.
    log = tempfile.NamedTemporaryFile(prefix="bench-", suffix=".log", delete=False)
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log, stderr=log)
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
def fake_upstream() -> Iterator[int]:
    port = free_port()
    with started(["-m", "tests.fake_lmstudio", "--port", str(port)], port):
        yield port


@contextmanager
def chatproxy(upstream_port: int, chats_dir: str | None = None) -> Iterator[tuple[int, subprocess.Popen]]:
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATPROXY_", "LM_STUDIO_URL", "CHATS_DIR"))}
        args = [
            "chatproxy.py", "--host", HOST, "--port", str(port),
            "--lm-studio-url", f"http://{HOST}:{upstream_port}",
            "--chats-dir", chats_dir or os.path.join(scratch, "chats"),
        ]
        env["CHATPROXY_CONFIG"] = _bench_config(scratch)
        with started(args, port, env) as process:
            yield port, process


def _bench_config(scratch: str) -> str:
    """Stop quickly when a benchmark ends."""
    path = os.path.join(scratch, "bench.toml")
    Path(path).write_text("[shutdown]\ngrace = 1\n")
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
    sent_at: float = 0.0
    first_event_at: float | None = None
    last_event_at: float | None = None
    events: int = 0
    done: bool = False
    status: int = 0
    delays: list[float] = field(default_factory=list)  # receive time - upstream stamp


async def http_stream(port: int, method: str, path: str, body: dict, stamps: bool = False, timeout: float = 120) -> StreamResult:
    """One streamed request on a fresh connection; counts events as they arrive."""
    result = StreamResult()
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request_bytes(method, path, body))
        result.sent_at = time.monotonic()
        await asyncio.wait_for(_read_events(reader, result, stamps), timeout)
    finally:
        writer.close()
    return result


async def _read_events(reader: asyncio.StreamReader, result: StreamResult, stamps: bool) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
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
                result.delays.extend(now - float(stamp) for stamp in STAMP.findall(complete))


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


def table(title: str, rows: list[tuple[str, str, str, str]]) -> str:
    header = ("measure", "direct", "chatproxy", "figure")
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(4)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)
