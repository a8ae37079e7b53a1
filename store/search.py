"""Full-text search over the chats: SQLite FTS5, as a rebuildable index beside the JSON files.

The JSON files are the truth; ``.search.sqlite`` in the chats folder is a cache of them.
Delete it and it is built again; a file changed by hand is read again at the next search
after the listing index (index.py) has seen its new mtime or size. Our own writes do not
touch SQLite: the search brings the index up to date with what the listing knows, reading
only the files that changed since. SQLite runs without fsync (a crash at worst leaves an
index to rebuild, which opening it detects).
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
from typing import Callable

from . import history, names
from .index import ChatIndex

log = logging.getLogger("chatproxy.store")

FILE_NAME = ".search.sqlite"
# Name matches rank above content matches.
NAME_WEIGHT, BODY_WEIGHT = 10.0, 1.0
SNIPPET_WORDS = 16
_WORD = re.compile(r"\w+", re.UNICODE)

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (id INTEGER PRIMARY KEY, file_name TEXT UNIQUE NOT NULL,
                                  mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5(name, body, tokenize = 'unicode61 remove_diacritics 2');
"""


def match_expression(query: str) -> str | None:
    """The user's words as an FTS5 query: every word must appear, the last one as a prefix
    (results while typing). Words are quoted, so FTS5's operators in the input are text."""
    words = _WORD.findall(query)
    if not words:
        return None
    quoted = [f'"{word}"' for word in words]
    quoted[-1] += "*"
    return " ".join(quoted)


class SearchIndex:
    def __init__(self, directory: str, index: ChatIndex, read_chat: Callable[[str], dict | None]) -> None:
        self._path = os.path.join(directory, FILE_NAME)
        self._index = index
        self._read_chat = read_chat
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._known: dict[str, tuple[int, int, int]] = {}  # file name -> (mtime_ns, size, id)
        self._generation = -1

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def forget(self, file_name: str) -> None:
        """A chat deleted or renamed by us: out of the results at once."""
        with self._lock:
            if self._db is None:
                self._known.pop(file_name, None)
            elif file_name in self._known:
                with self._db:
                    self._delete(file_name)

    def search(self, query: str, limit: int) -> list[dict]:
        expression = match_expression(query)
        with self._lock:
            self._sync()
            if expression is None:
                return []
            rows = self._db.execute(
                f"SELECT files.file_name, bm25(docs, {NAME_WEIGHT}, {BODY_WEIGHT}) AS score,"
                f" snippet(docs, 1, '**', '**', '…', {SNIPPET_WORDS})"
                " FROM docs JOIN files ON files.id = docs.rowid WHERE docs MATCH ? ORDER BY score LIMIT ?",
                (expression, limit),
            ).fetchall()
        results = []
        for file_name, score, snippet in rows:
            summary = self._index.summary(file_name) or {"id": names.name_for(file_name), "name": names.name_for(file_name), "model": None}
            results.append({**summary, "snippet": snippet, "score": round(-score, 4)})
        return results

    # -- keeping up with the files ----------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as error:
            log.warning("The search index %s is damaged (%s); building it again", self._path, error)
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(self._path + suffix)
                except FileNotFoundError:
                    pass
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = OFF")
            db.executescript(SCHEMA)
            self._known = {row[0]: (row[1], row[2], row[3]) for row in db.execute("SELECT file_name, mtime_ns, size, id FROM files")}
        except sqlite3.DatabaseError:
            db.close()
            raise
        self._generation = -1
        return db

    def _sync(self) -> None:
        if self._db is None or not os.path.exists(self._path):  # deleted by hand: rebuilt
            if self._db is not None:
                self._db.close()
            self._db = self._open()
        generation, current = self._index.changes_since(self._generation)
        if current is None:
            return
        db = self._db
        with db:
            db.execute("BEGIN")
            for file_name in [name for name in self._known if name not in current]:
                self._delete(file_name)
            for file_name, stamp in current.items():
                known = self._known.get(file_name)
                if known is not None and known[:2] == stamp:
                    continue
                if known is not None:
                    self._delete(file_name)
                chat = self._read_chat(file_name)
                if chat is None:
                    continue
                cursor = db.execute("INSERT INTO files (file_name, mtime_ns, size) VALUES (?, ?, ?)", (file_name, *stamp))
                body = "\n".join(history.all_texts(chat) + [str(chat.get("system_prompt") or "")])
                db.execute("INSERT INTO docs (rowid, name, body) VALUES (?, ?, ?)", (cursor.lastrowid, names.name_for(file_name), body))
                self._known[file_name] = (*stamp, cursor.lastrowid)
        self._generation = generation

    def _delete(self, file_name: str) -> None:
        row_id = self._known.pop(file_name)[2]
        self._db.execute("DELETE FROM files WHERE id = ?", (row_id,))
        self._db.execute("DELETE FROM docs WHERE rowid = ?", (row_id,))
