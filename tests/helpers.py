"""What test modules share: serving an app on a test socket, running the real server process,
JSON calls, a raw HTTP/1.1 stream reader, the one error-shape check, and waiting on server state."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders
from tornado.iostream import StreamClosedError
from tornado.tcpclient import TCPClient
from tornado.testing import bind_unused_port

from lmstudio.sse import Event, SSEDecoder


def serve_app(io_loop, request, app) -> str:
    """Serve ``app`` on a free 127.0.0.1 port until the test ends; returns its base URL."""
    listener, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_socket(listener)

    def stop() -> None:
        server.stop()
        io_loop.run_sync(server.close_all_connections, timeout=5)

    request.addfinalizer(stop)
    return f"http://127.0.0.1:{port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_refusing: list[socket.socket] = []  # kept open for the whole run


def closed_port_url() -> str:
    """A URL where connecting is refused: its port is bound by a socket that never listens,
    kept open for the whole run, so no server started later can take the port."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    _refusing.append(holder)
    return f"http://127.0.0.1:{holder.getsockname()[1]}"


async def start_server(project_root, clean_env, tmp_path, fake, **settings):
    """Run chatproxy.py as a process against ``fake``; ``section__name=value`` settings go to
    its TOML config. Returns the process and its base URL once it answers GET /chats."""
    port = free_port()
    config = tmp_path / "test.toml"
    sections = {
        "server": {"host": '"127.0.0.1"', "port": port},
        "upstream": {"url": f'"{fake.url}"'},
        "storage": {"chats_dir": f'"{tmp_path / "chats"}"'},
        "chats": {"model_titles": "false"},  # as in tests/conftest.py
    }
    for key, value in settings.items():
        section, name = key.split("__")
        sections.setdefault(section, {})[name] = value
    lines = [line for section, values in sections.items() for line in (f"[{section}]", *(f"{k} = {v}" for k, v in values.items()))]
    config.write_text("\n".join(lines) + "\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(project_root / "chatproxy.py"), "--config", str(config),
        env=clean_env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        try:
            if (await call(base, "GET", "/chats")).status == 200:
                return process, base
        except OSError:
            pass
        if process.returncode is not None or loop.time() > deadline:
            process.kill()
            raise AssertionError("chatproxy did not start: " + (await process.stdout.read()).decode())
        await asyncio.sleep(0.05)


async def stop_server(process) -> None:
    """Kill a server process start_server started, unless it has already exited."""
    if process.returncode is None:
        process.kill()
        await process.wait()


@dataclass
class Response:
    status: int
    headers: HTTPHeaders
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


async def call(base_url: str, method: str, path: str, body=None, raw: bytes | None = None, headers=None) -> Response:
    if body is not None:
        raw = json.dumps(body).encode()
    request = HTTPRequest(
        base_url + path,
        method=method,
        body=raw if raw is not None else (b"" if method in ("POST", "PUT") else None),
        headers=headers,
        allow_nonstandard_methods=True,
        request_timeout=10,
    )
    response = await AsyncHTTPClient().fetch(request, raise_error=False)
    return Response(response.code, response.headers, response.body or b"")


async def stored_messages(base_url: str, name: str = "demo") -> list[dict]:
    """The chat's messages as GET /chat answers them (it must answer 200)."""
    response = await call(base_url, "GET", "/chat?name=" + quote(name, safe=""))
    assert response.status == 200, response.body
    return response.json["chat"]["messages"]


async def stored_reply(base_url: str, name: str = "demo") -> dict:
    return (await stored_messages(base_url, name))[-1]


def assert_error(response: "Response | Stream", status: int) -> str:
    """Every error, from every route: the status, JSON, exactly {"status": "error", "message": str}.

    Returns the message, for the caller to check what it says.
    """
    assert response.status == status, (response.status, response.body)
    assert response.headers["Content-Type"].startswith("application/json")
    payload = response.json
    assert set(payload) == {"status", "message"}, payload
    assert payload["status"] == "error"
    assert isinstance(payload["message"], str) and payload["message"]
    return payload["message"]


async def create_chat(base_url: str, name: str = "demo", model: str = "test-model", **fields) -> dict:
    response = await call(base_url, "POST", "/chat", {"name": name, "model": model, **fields})
    assert response.status == 200, response.body
    return response.json


async def turn(base_url: str, name: str = "demo", content: str = "hi", **kwargs) -> "Stream":
    """PUT /chat with a user message; ``kwargs`` go to stream()."""
    return await stream(base_url, "/chat", {"name": name, "message": {"role": "user", "content": content}}, **kwargs)


@dataclass
class Stream:
    status: int = 0
    headers: HTTPHeaders = field(default_factory=HTTPHeaders)
    chunks: list[bytes] = field(default_factory=list)  # HTTP chunks: one per server flush
    body: bytes = b""

    @property
    def events(self) -> list[Event]:
        decoder = SSEDecoder()
        return [event for chunk in self.chunks for event in decoder.feed(chunk)]

    @property
    def data(self) -> list[str]:
        return [event.data for event in self.events]

    @property
    def json(self):
        return json.loads(self.body)

    def content(self) -> str:
        text = []
        for data in self.data:
            if data == "[DONE]":
                continue
            chunk = json.loads(data)
            for choice in chunk.get("choices") or []:
                text.append(choice.get("delta", {}).get("content") or "")
        return "".join(text)


async def stream(base_url: str, path: str, body: dict | None, method: str = "PUT", stop=None, timeout: float = 10, headers: dict | None = None) -> Stream:
    """Send a request on a raw socket and read the answer chunk by chunk, as framed by the server.

    ``stop(result)`` is called after each chunk; when it returns true the client hangs up,
    as a browser's Abort button does.
    """
    url = urlsplit(base_url)
    payload = json.dumps(body).encode() if body is not None else b""
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    connection = await TCPClient().connect(url.hostname, url.port)
    result = Stream()
    try:
        connection.write(
            f"{method} {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n{extra}Connection: close\r\n\r\n".encode() + payload
        )
        await asyncio.wait_for(_read(connection, result, stop), timeout)
    finally:
        connection.close()
    return result


async def _read(connection, result: Stream, stop) -> None:
    head = (await connection.read_until(b"\r\n\r\n")).decode("latin-1")
    status_line, _, header_lines = head.partition("\r\n")
    result.status = int(status_line.split()[1])
    result.headers = HTTPHeaders.parse(header_lines)
    if stop is not None and stop(result):
        return
    if result.headers.get("Transfer-Encoding") != "chunked":
        length = int(result.headers.get("Content-Length", 0))
        result.body = await connection.read_bytes(length) if length else b""
        return
    while True:
        try:
            size = int((await connection.read_until(b"\r\n")).strip(), 16)
        except StreamClosedError:
            return
        data = await connection.read_bytes(size + 2)
        if size == 0:
            return
        result.chunks.append(data[:-2])
        if stop is not None and stop(result):
            return


async def wait_for(predicate, timeout: float = 5, what: str = "condition") -> None:
    """Wait until ``predicate()`` is true, checking on every loop turn, failing after ``timeout``.

    For server-side state only: what the fake LM Studio saw has its own waits (``fake.wait_*``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


async def eventually(probe, check=bool, what: str = "condition", timeout: float = 10):
    """Wait until ``check(await probe())`` holds (a server asked, or a page measure no locator
    waits on), failing after ``timeout`` with the last value; returns that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check(value := await probe()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value {value!r}")
        await asyncio.sleep(0.02)
    return value


def child_pids(pid: int) -> list[int]:
    """The processes ``pid`` started, from /proc (Linux)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            if int(fields[1]) == pid:
                children.append(int(entry))
    return children


def has_exited(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def begin_turn(store, name: str, plan: dict, turn: dict) -> dict:
    """store.begin_turn, returning once the turn's start is durable: the chat as changed."""
    chat, durable = await store.begin_turn(name, plan, turn)
    await durable
    return chat


LONG = "word " * 60  # a question of some 60 tokens


async def a_long_chat(proxy, fake, turns: int = 5, context_length: int | None = None) -> None:
    """A chat of ``turns`` long questions, its model served with ``context_length`` (the
    model lists are read once, at the first turn: it is set before)."""
    fake.context_length = context_length
    await create_chat(proxy, max_tokens=100)
    assert (await call(proxy, "PATCH", "/chat", {"name": "demo", "system_prompt": "Be brief."})).status == 200
    for number in range(turns):
        assert (await turn(proxy, content=f"{number} {LONG}")).data[-1] == "[DONE]"
    assert len(fake.requests) == turns
