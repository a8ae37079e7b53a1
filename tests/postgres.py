"""The tests' own PostgreSQL: one server per test session, a fresh database per test.

It is Debian's ``postgresql`` package (15). ``initdb`` and ``pg_ctl`` refuse to run as root,
and CI runs as root: there they run as the ``postgres`` user, in a temporary folder handed
to it. The server listens on a Unix socket in that folder only (no TCP), runs without
fsync (its data is thrown away) and is stopped at the end of the session. Each test's
database is cloned from a template the migrations were applied to once, and belongs to
``chatproxy``, a role without superuser rights, as a real deployment's would.

Without PostgreSQL installed, the tests that need it are skipped, unless
``CHATPROXY_TEST_POSTGRES=required`` (CI), where that is a failure. A server that is
installed but does not start is always an error.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from store import ChatNotFound, chatfile, history, names
from store.postgres import chats, rows, turns
from store.postgres.connection import connect
from store.postgres.engine import PostgresStore
from store.postgres.migrate import migrations
from tests.helpers import child_pids

PORT = 5432  # only names the socket file: the server has no TCP port
ROLE = "chatproxy"
TEMPLATE = "chatproxy_template"
# Every table chatproxy's migrations made but their own log: what a test may have filled.
_FILLED_TABLES = "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'chatproxy_migrations'"
SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}
# A server that keeps what it commits, as a deployment's does (the benchmarks).
DURABLE = {**SETTINGS, "fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


def new_chat(*contents: str, model: str = "m") -> dict:
    """A chat as POST /chat makes it, with messages of these contents, user and assistant in turn."""
    chat = chatfile.new_chat(model, 0.7, -1)
    chat["messages"] = [{"role": ("user", "assistant")[i % 2], "content": c} for i, c in enumerate(contents)]
    return chat


# The changes the API makes, on one connection, for the engine's SQL tests (the server makes
# them through PostgresStore and store/engine.py).


async def append(conn, name: str, messages: list[dict]) -> None:
    """Add messages after the last without reading the chat, as a turn does."""
    async with conn.transaction():
        cursor = await conn.execute("SELECT id FROM chats WHERE stem = %s FOR UPDATE", (names.stem_for(name),))
        row = await cursor.fetchone()
        if row is None:
            raise ChatNotFound(name)
        await rows.append(conn, row[0], messages)


async def edit_message(conn, name: str, index: int, content: str) -> dict:
    return await chats.change(conn, name, chatfile.changed_by(history.edit, index, content))


async def switch_branch(conn, name: str, index: int, alternative: int) -> dict:
    return await chats.change(conn, name, chatfile.changed_by(history.switch, index, alternative))


async def update_settings(conn, name: str, changes: dict) -> dict:
    """Set the given keys; a None value removes the key (e.g. clears the system prompt)."""
    return await chats.change(conn, name, chatfile.changed_by(chatfile.apply_settings, changes))


async def remove_message(conn, name: str, index: int) -> dict:
    """Remove the message at ``index``; returns it."""
    return await chats.change(conn, name, lambda chat: history.remove(chat, index))


async def journal_turn(conn, name: str, turn_id: object, reply: dict) -> bool:
    """One turn's reply so far (turns.journal_turns); False if the turn is no longer running."""
    return await turns.journal_turns(conn, {(names.stem_for(name), str(turn_id)): reply}) == 1


def without_stamp(chat: dict) -> dict:
    """``chat`` without ``updated_at``, which every change sets to the time."""
    return {key: value for key, value in chat.items() if key != "updated_at"}


def find_binaries() -> Path | None:
    """The newest Debian PostgreSQL's bin folder, or wherever ``initdb`` is on the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    def __init__(self, binaries: Path, settings: dict[str, str] = SETTINGS) -> None:
        self.binaries = binaries
        self.settings = settings
        # Under /tmp, whatever TMPDIR says: the postgres user must reach it, and the socket's
        # path must stay under the 107 bytes a Unix socket's name may have.
        self.folder = Path(tempfile.mkdtemp(prefix="chatproxy-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.pid: int | None = None
        self.start_seconds = 0.0  # initdb, start and the template's migrations
        self._numbers = itertools.count(1)
        self._numbers_lock = threading.Lock()
        self._emptied: list[str] = []  # databases of the template that tests left, emptied

    def _run(self, *command: str) -> None:
        """A PostgreSQL tool, as the ``postgres`` user when we are root."""
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run([*prefix, *command], cwd=self.folder, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}\n{log}")

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, user="postgres")
        self._run(
            str(self.binaries / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        )
        settings = {**self.settings, "unix_socket_directories": f"'{self.folder}'", "port": str(PORT)}
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        self.resume()
        with self.admin() as admin:
            admin.execute(f"CREATE ROLE {ROLE} LOGIN")
            admin.execute(f"CREATE DATABASE {TEMPLATE} OWNER {ROLE}")
        PostgresStore(self.url(TEMPLATE)).open()  # the schema, as chatproxy makes it at start-up

    def halt(self) -> None:
        """Stop the server, its data kept (PostgreSQL going away under chatproxy)."""
        self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def freeze(self, frozen: bool = True) -> None:
        """Stop (SIGSTOP) or continue (SIGCONT) the server and its backends: a database that
        takes queries and never answers, as one cut off by the network looks."""
        for pid in [self.pid, *child_pids(self.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def resume(self) -> None:
        self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        try:
            if self.pid is not None:
                self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except RuntimeError:
            with contextlib.suppress(ProcessLookupError):  # pg_ctl could not: the server by its PID
                os.kill(self.pid, signal.SIGQUIT)
            raise
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str, role: str = ROLE) -> str:
        return f"postgresql://{role}@/{database}?host={self.folder}&port={PORT}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url("postgres", role="postgres"), autocommit=True)

    def new_database(self, template: str = TEMPLATE) -> str:
        """A new database (the schema migrated, unless ``template`` is ``template0``); its name.
        One a finished test emptied (``drop_database``) serves again: emptying takes a tenth
        of the time of a clone and a drop."""
        with self._numbers_lock:
            if template == TEMPLATE and self._emptied:
                return self._emptied.pop()
            name = f"test_{next(self._numbers)}"
        with self.admin() as admin:
            admin.execute(f"CREATE DATABASE {name} TEMPLATE {template} OWNER {ROLE}")
        return name

    def drop_database(self, name: str, template: str = TEMPLATE) -> None:
        """Done with ``name``: emptied for the next test, or (a database of another template,
        or one still in use) dropped."""
        if template == TEMPLATE:
            try:
                with psycopg.connect(self.url(name), autocommit=True) as conn:
                    applied = conn.execute("SELECT array_agg(version ORDER BY version) FROM chatproxy_migrations").fetchone()[0]
                    if applied == [migration.version for migration in migrations()]:  # else a test changed it
                        conn.execute("SET lock_timeout = '1s'")
                        conn.execute(f"TRUNCATE {conn.execute(_FILLED_TABLES).fetchone()[0]} RESTART IDENTITY")
                        with self._numbers_lock:
                            self._emptied.append(name)
                        return
            except psycopg.Error:
                pass
        with self.admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _started_server():
    binaries = find_binaries()
    if binaries is None:
        message = "PostgreSQL is not installed (apt-get install postgresql)"
        if os.environ.get("CHATPROXY_TEST_POSTGRES") == "required":
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(binaries)
    started = time.monotonic()
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    server.start_seconds = time.monotonic() - started
    return server


@pytest.fixture(scope="session")
def postgres_server():
    server = _started_server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_postgres_server():
    """A server of the module's own, which its tests may stop and start again."""
    server = _started_server()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of a new database of its own with chatproxy's schema, dropped afterwards."""
    name = postgres_server.new_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture
def empty_postgres_url(postgres_server):
    """The URL of a new database without chatproxy's schema (for the migrations)."""
    name = postgres_server.new_database(template="template0")
    yield postgres_server.url(name)
    postgres_server.drop_database(name, template="template0")


@pytest.fixture
def pg_conn(io_loop, postgres_url):
    """An async connection (autocommit, set up as the pool's are) to a new database of
    its own, on the test's event loop: for ``gen_test`` tests, or ``io_loop.run_sync``."""
    conn = io_loop.run_sync(lambda: connect(postgres_url, autocommit=True))
    yield conn
    io_loop.run_sync(conn.close)
