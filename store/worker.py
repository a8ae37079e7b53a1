"""The store's worker process: chat files are read and written there, not in the server.

Why a process: a durable write is a dozen system calls, each a trip through the GIL, and
fsync work the kernel bills to the caller. On threads of the server, the 2,000 writes of
1,000 turns starting and ending within a second took the GIL and the CPU from the event
loop and held every stream's events back by up to 200 ms. In a process of its own, at a
lower CPU priority, they hold nothing back: the loop only writes a request to a pipe and
reads the answer.

The protocol, on the worker's stdin and stdout, is frames of a 4-byte big-endian length
and a body. A request body is JSON ``[id, operation, [arguments]]``. An answer body is the
request's id (4 bytes), a kind (1 byte) and a payload: the result as JSON, the result as
it is (bytes: the listing, already JSON), or JSON ``[error class, message]``. Answers come
in the order the worker's threads finish. A turn's start (``begin_turn``) is answered
twice: first EARLY with the changed chat, before it is written, so the server can ask LM
Studio while the write becomes durable; then as any request, once it is.

The worker ignores SIGINT and SIGTERM: a Ctrl-C in the terminal or a service manager
signals the whole process group, and the server still has partial replies to store. It
exits when its stdin closes (the server stopped, or died), after finishing what it was
asked. It is started as ``python -m store DIRECTORY LOG_FORMAT`` (store/__main__.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import struct
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any, Awaitable, BinaryIO, Sequence

import jsonbytes
from logs import configure_logging

from . import errors
from .folder import ChatFolder

log = logging.getLogger("chatproxy.store")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LENGTH = struct.Struct(">I")
ANSWER = struct.Struct(">IB")
RESULT, AS_IS, ERROR, EARLY = 0, 1, 2, 3
# File work is fsync-bound: a few threads let writes to different chats overlap.
IO_THREADS = 8
# Below the server: when the CPU is short, streams go first and file work waits. Not the
# lowest (19): next to a CPU-bound model on every core, a turn then waited +61 ms for its
# write, against +12 ms at 10; under 1,000 starting turns, 19 and 10 measured alike.
NICENESS = 10
STOP_TIMEOUT_S = 30
MAX_ANSWER = 1 << 31  # beyond any chat or listing: the stream is out of step

OPERATIONS = {
    "count": ChatFolder.count,
    "listing_json": ChatFolder.listing_json,
    "read": ChatFolder.read,
    "branches": ChatFolder.branches,
    "search": ChatFolder.search,
    "export_lines": ChatFolder.export_lines,
    "is_writable": ChatFolder.is_writable,
    "create": ChatFolder.create,
    "create_unique": ChatFolder.create_unique,
    "append": ChatFolder.append,
    "begin_turn": ChatFolder.begin_turn,  # answered early too: its last argument is the early answer
    "edit_message": ChatFolder.edit_message,
    "switch_branch": ChatFolder.switch_branch,
    "update_settings": ChatFolder.update_settings,
    "rename": ChatFolder.rename,
    "remove_message": ChatFolder.remove_message,
    "delete": ChatFolder.delete,
}
EARLY_ANSWERED = {"begin_turn"}


# -- the worker ----------------------------------------------------------------------------


def serve(directory: str, requests: BinaryIO, answers: BinaryIO) -> None:
    folder = ChatFolder(directory)
    folder.open()
    answer_lock = threading.Lock()

    def answer(request_id: int, kind: int, payload: bytes) -> None:
        frame = LENGTH.pack(ANSWER.size + len(payload)) + ANSWER.pack(request_id, kind) + payload
        with answer_lock:
            answers.write(frame)
            answers.flush()

    def handle(request_id: int, operation: str, arguments: list) -> None:
        if operation in EARLY_ANSWERED:
            arguments = [*arguments, lambda early: answer(request_id, EARLY, jsonbytes.dumps(early))]
        try:
            result = OPERATIONS[operation](folder, *arguments)
        except errors.StoreError as error:
            answer(request_id, ERROR, jsonbytes.dumps([type(error).__name__, str(error)]))
        except Exception as error:
            log.exception("Storage operation '%s' failed", operation)
            failure = errors.from_os_error(error, operation) if isinstance(error, OSError) else errors.StorageFailure(f"Storage failed: {error}")
            answer(request_id, ERROR, jsonbytes.dumps([type(failure).__name__, str(failure)]))
        else:
            if isinstance(result, bytes):
                answer(request_id, AS_IS, result)
            else:
                answer(request_id, RESULT, jsonbytes.dumps(result))

    with ThreadPoolExecutor(IO_THREADS, thread_name_prefix="chatstore") as pool:
        while head := _read_exactly(requests, LENGTH.size):
            body = _read_exactly(requests, LENGTH.unpack(head)[0])
            if not body:
                break  # the server went away in the middle of a request
            pool.submit(handle, *jsonbytes.loads(body))
    folder.close()


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    return data if data is not None and len(data) == size else b""


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with suppress(AttributeError, OSError):  # no os.nice on Windows
        os.nice(NICENESS)
    directory, log_format = argv
    configure_logging(False, log_format)
    # The answers get stdout to themselves: anything else printed goes to stderr.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(directory, sys.stdin.buffer, answers)


# -- the server's end ----------------------------------------------------------------------


class _Connection:
    """One worker process, and the requests it has not answered yet."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pending: dict[int, asyncio.Future] = {}
        self.early: dict[int, asyncio.Future] = {}  # requests answered early too (EARLY_ANSWERED)
        self.closing = False
        self.reader = asyncio.ensure_future(self._read_answers())

    @property
    def alive(self) -> bool:
        return not self.reader.done()

    async def _read_answers(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while True:
                (length,) = LENGTH.unpack(await stdout.readexactly(LENGTH.size))
                if length > MAX_ANSWER:
                    log.error("The storage worker sent a frame of %d bytes; restarting it", length)
                    self.process.kill()
                    break
                frame = await stdout.readexactly(length)
                request_id, kind = ANSWER.unpack_from(frame)
                answer = (kind, frame[ANSWER.size :])
                early = self.early.pop(request_id, None)
                if early is not None and not early.done():
                    early.set_result(answer)  # the EARLY answer, or an error that came first
                if kind == EARLY:
                    continue
                future = self.pending.pop(request_id, None)
                if future is not None and not future.done():
                    future.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker is gone
        code = await self.process.wait()
        if not self.closing:
            log.error("The storage worker stopped (exit code %s) with %d request(s) open; "
                      "the next request starts a new one", code, len(self.pending))
        failure = errors.StorageFailure(f"The storage worker stopped (exit code {code}); the change may not have been saved")
        for future in [*self.early.values(), *self.pending.values()]:
            if not future.done():
                future.set_exception(failure)
                future.exception()  # an early request's final answer may never be awaited
        self.pending.clear()
        self.early.clear()


class StoreWorker:
    """The server's end: starts the worker on first use (and again after it died), sends
    requests, hands each answer to its caller."""

    def __init__(self, directory: str | os.PathLike, log_format: str = "text", command: Sequence[str] | None = None) -> None:
        self._directory = os.path.abspath(directory)
        self._log_format = log_format
        # The worker's program; tests give one that fails file operations on request.
        self._command = tuple(command or (sys.executable, "-m", "store"))
        self._connection: _Connection | None = None
        self._starting: asyncio.Future[_Connection] | None = None
        self._ids = itertools.count()

    @property
    def pid(self) -> int | None:
        return self._connection.process.pid if self._connection and self._connection.alive else None

    async def start(self) -> None:
        """Start the worker and wait until it answers, so no request waits for its start-up."""
        await self.call("is_writable")

    async def call(self, operation: str, *arguments: Any) -> Any:
        connection = await self._connected()
        return _result(*await self._send(connection, operation, arguments))

    async def call_early(self, operation: str, *arguments: Any) -> tuple[Any, Awaitable[Any]]:
        """For an EARLY_ANSWERED operation: its early answer, and the awaitable of its final
        one (a coroutine: the caller awaits it)."""
        connection = await self._connected()
        early = asyncio.get_running_loop().create_future()
        final = self._send(connection, operation, arguments, early)
        return _result(*await early), _final(final)

    def _send(self, connection: _Connection, operation: str, arguments: tuple, early: asyncio.Future | None = None) -> asyncio.Future:
        request_id = next(self._ids) & 0xFFFFFFFF
        future = asyncio.get_running_loop().create_future()
        connection.pending[request_id] = future
        if early is not None:
            connection.early[request_id] = early
        body = jsonbytes.dumps([request_id, operation, arguments])
        assert connection.process.stdin is not None
        connection.process.stdin.write(LENGTH.pack(len(body)) + body)
        return future

    async def close(self) -> None:
        """Let the worker finish what it was asked, then stop it."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        assert connection.process.stdin is not None
        connection.closing = True
        connection.process.stdin.close()
        try:
            await asyncio.wait_for(connection.process.wait(), STOP_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.error("The storage worker did not stop within %d s; killing it", STOP_TIMEOUT_S)
            connection.process.kill()
        await connection.reader

    async def _connected(self) -> _Connection:
        connection = self._connection
        if connection is not None and connection.alive:
            return connection
        if self._starting is None:  # one start, however many callers arrive meanwhile
            self._starting = asyncio.ensure_future(self._spawn())
            self._starting.add_done_callback(self._started)
        return await asyncio.shield(self._starting)

    def _started(self, _: asyncio.Future) -> None:
        self._starting = None  # a failed start is tried again by the next call

    async def _spawn(self) -> _Connection:
        process = await asyncio.create_subprocess_exec(
            *self._command, self._directory, self._log_format,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=PROJECT_ROOT,
        )
        self._connection = _Connection(process)
        return self._connection


def _result(kind: int, payload: bytes) -> Any:
    if kind == AS_IS:
        return payload
    if kind in (RESULT, EARLY):
        return jsonbytes.loads(payload)
    raise _rebuild(*jsonbytes.loads(payload))


async def _final(answer: asyncio.Future) -> Any:
    return _result(*await answer)


def _rebuild(class_name: str, message: str) -> errors.StoreError:
    """The worker's error, as the store's own exception class with the worker's message."""
    error_class = getattr(errors, class_name, errors.StorageFailure)
    error = Exception.__new__(error_class)
    Exception.__init__(error, message)
    return error


