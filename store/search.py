"""Full-text search over the chats: SQLite FTS5, as a rebuildable index beside the JSON files.

A chat is found by its name, its title (both ranked alike) and the text of its messages.
Words are found by FTS5's unicode61 tokenizer, which takes a run of Chinese or Japanese
(written without spaces) as one word; so chats holding such text are also kept in a
trigram table, where a word is found anywhere inside that run. A query with such a word
is answered from the trigram table. The query rules (``query_words``, ``is_unspaced``,
``excerpt``) are the PostgreSQL engine's too.

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

from . import history, names, titles
from .index import ChatIndex

log = logging.getLogger("chatproxy.store")

FILE_NAME = ".search.sqlite"
# Matches in the name or the title rank above content matches.
NAME_WEIGHT, BODY_WEIGHT = 10.0, 1.0
SNIPPET_WORDS = 16
SNIPPET_CHARACTERS = 24  # in the trigram table, where each character starts a token
_WORD = re.compile(r"\w+", re.UNICODE)
# Scripts written without spaces between words (kana, CJK ideographs, Hangul); the same
# ranges as the PostgreSQL schema's messages.unspaced (store/postgres/migrations/001).
_UNSPACED = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff]")

# The index is a cache: one of another version is built again from the files.
SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (id INTEGER PRIMARY KEY, file_name TEXT UNIQUE NOT NULL,
                                  mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5(name, title, body, tokenize = 'unicode61 remove_diacritics 2');
"""
GRAMS_SCHEMA = "CREATE VIRTUAL TABLE IF NOT EXISTS grams USING fts5(name, title, body, tokenize = 'trigram')"
# The columns' weights in bm25(), in the tables' order; snippets come from the body.
WEIGHTS = f"{NAME_WEIGHT}, {NAME_WEIGHT}, {BODY_WEIGHT}"
BODY_COLUMN = 2


def query_words(query: str) -> list[str]:
    return _WORD.findall(query)


def is_unspaced(text: str) -> bool:
    # isascii() is a flag CPython keeps on every string: most chats skip the scan.
    return not text.isascii() and _UNSPACED.search(text) is not None


def match_expression(query: str) -> str | None:
    """The user's words as an FTS5 query: every word must appear, the last one as a prefix
    (results while typing). Words are quoted, so FTS5's operators in the input are text."""
    words = query_words(query)
    if not words:
        return None
    quoted = [f'"{word}"' for word in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def like_pattern(word: str) -> str:
    """``word`` anywhere, for ``LIKE ... ESCAPE '\\'``."""
    return "%" + re.sub(r"([\\%_])", r"\\\1", word) + "%"


def excerpt(text: str, words: list[str], width: int = SNIPPET_CHARACTERS) -> str:
    """A snippet of ``text`` around the first of ``words`` found in it (case-insensitively),
    each found word in ``**``, "…" where the text is cut: for matches no tokenizer marks."""
    folded = text.casefold()
    starts = [start for start in (folded.find(word.casefold()) for word in words) if start >= 0]
    first = min(starts, default=0)
    begin, end = max(0, first - width // 3), min(len(text), first + width)
    longest_first = sorted(words, key=len, reverse=True)
    marks = re.compile("|".join(re.escape(word) for word in longest_first), re.IGNORECASE)
    snippet = marks.sub(lambda match: f"**{match.group()}**", text[begin:end])
    return ("…" if begin > 0 else "") + snippet + ("…" if end < len(text) else "")


def _title(chat: dict) -> str:
    title = chat.get(titles.TITLE)
    return title if isinstance(title, str) else ""


def _has_trigram_tokenizer() -> bool:
    """FTS5's trigram tokenizer came with SQLite 3.34 (2020); without it, no trigram table."""
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize = 'trigram')")
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()
    return True


TRIGRAMS = _has_trigram_tokenizer()


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
        words = query_words(query)
        with self._lock:
            self._sync()
            if not words:
                return []
            if TRIGRAMS and any(is_unspaced(word) for word in words):
                rows = self._search_unspaced(words, limit)
            else:
                rows = self._db.execute(
                    f"SELECT files.file_name, bm25(docs, {WEIGHTS}) AS score,"
                    f" snippet(docs, {BODY_COLUMN}, '**', '**', '…', {SNIPPET_WORDS})"
                    " FROM docs JOIN files ON files.id = docs.rowid WHERE docs MATCH ? ORDER BY score LIMIT ?",
                    (match_expression(query), limit),
                ).fetchall()
        results = []
        for file_name, score, snippet in rows:
            summary = self._index.summary(file_name)
            if summary is not None:  # else removed since the index last looked
                results.append({**summary, "snippet": snippet, "score": round(-score, 4)})
        return results

    def _search_unspaced(self, words: list[str], limit: int) -> list[tuple[str, float, str]]:
        """Every word found anywhere in the trigram table's text: a phrase match for words of
        three characters or more (ranked, with FTS5's snippet), a scan for shorter ones
        (FTS5 cannot match those; ``+`` keeps its LIKE from trying)."""
        long = [word for word in words if len(word) >= 3]
        conditions, parameters = [], []
        if long:
            conditions.append("grams MATCH ?")
            parameters.append(" ".join(f'"{word}"' for word in long))
        for word in words:
            if len(word) < 3:
                conditions.append("(+grams.name LIKE ? ESCAPE '\\' OR +grams.title LIKE ? ESCAPE '\\' OR +grams.body LIKE ? ESCAPE '\\')")
                parameters += [like_pattern(word)] * 3
        ranked = f"bm25(grams, {WEIGHTS})" if long else "0"
        snippet = f"snippet(grams, {BODY_COLUMN}, '**', '**', '…', {SNIPPET_CHARACTERS})" if long else "grams.body"
        rows = self._db.execute(
            f"SELECT files.file_name, {ranked} AS score, {snippet} FROM grams JOIN files ON files.id = grams.rowid"
            f" WHERE {' AND '.join(conditions)} ORDER BY score, files.file_name LIMIT ?",
            (*parameters, limit),
        ).fetchall()
        return rows if long else [(file_name, score, excerpt(body, words)) for file_name, score, body in rows]

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
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                db.executescript("DROP TABLE IF EXISTS files; DROP TABLE IF EXISTS docs; DROP TABLE IF EXISTS grams;")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.executescript(SCHEMA)
            if TRIGRAMS:
                db.execute(GRAMS_SCHEMA)
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
                row = (cursor.lastrowid, names.name_for(file_name), _title(chat), "\n".join(history.all_texts(chat) + [str(chat.get("system_prompt") or "")]))
                db.execute("INSERT INTO docs (rowid, name, title, body) VALUES (?, ?, ?, ?)", row)
                if TRIGRAMS and any(is_unspaced(text) for text in row[1:]):
                    db.execute("INSERT INTO grams (rowid, name, title, body) VALUES (?, ?, ?, ?)", row)
                self._known[file_name] = (*stamp, cursor.lastrowid)
        self._generation = generation

    def _delete(self, file_name: str) -> None:
        row_id = self._known.pop(file_name)[2]
        self._db.execute("DELETE FROM files WHERE id = ?", (row_id,))
        self._db.execute("DELETE FROM docs WHERE rowid = ?", (row_id,))
        if TRIGRAMS:
            self._db.execute("DELETE FROM grams WHERE rowid = ?", (row_id,))
