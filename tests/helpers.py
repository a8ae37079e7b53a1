"""Test clients: JSON calls, a raw HTTP/1.1 stream reader, and the one error-shape check."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httputil import HTTPHeaders
from tornado.iostream import StreamClosedError
from tornado.tcpclient import TCPClient

from lmstudio.sse import Event, SSEDecoder


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


async def stream(base_url: str, path: str, body: dict, method: str = "PUT", stop=None, timeout: float = 10) -> Stream:
    """Send a request on a raw socket and read the answer chunk by chunk, as framed by the server.

    ``stop(result)`` is called after each chunk; when it returns true the client hangs up,
    as a browser's Abort button does.
    """
    url = urlsplit(base_url)
    payload = json.dumps(body).encode()
    connection = await TCPClient().connect(url.hostname, url.port)
    result = Stream()
    try:
        connection.write(
            f"{method} {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
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
    """Wait until ``predicate()`` is true, checking on every loop turn, failing after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


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
