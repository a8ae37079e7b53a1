"""Search on PostgreSQL: the same request and answer as the folder's (store/search.py).

A chat is found when every word of the query is in its name, its system prompt or one of
its messages (any branch), the last word as a prefix. Words are looked up in the
``tsvector`` of each message and chat (GIN indexes); a word written without spaces
(Chinese, Japanese) is looked up anywhere inside the text by trigrams (pg_trgm), as the
folder's trigram table does. Name matches rank ten times above the rest, as in the folder.
The snippet comes from the message that matches best.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from .. import names
from ..search import excerpt, is_unspaced, like_pattern, query_words

# ts_rank's weights give a name (weight A) 1.0 and text (weight D) 0.1; a trigram match
# has no rank of its own and counts the same.
NAME_RANK, TEXT_RANK = 1.0, 0.1
HEADLINE = "StartSel=**, StopSel=**, MaxWords=16, MinWords=8, ShortWord=0, MaxFragments=1, FragmentDelimiter=…"

_WORD_BY_INDEX = sql.SQL(
    "SELECT chat_id, {number} AS word, max(ts_rank(search, q)) AS rank"
    " FROM messages, to_tsquery('chatproxy', {query}) q WHERE search @@ q GROUP BY chat_id"
    " UNION ALL SELECT id, {number}, ts_rank(search, q) FROM chats, to_tsquery('chatproxy', {query}) q WHERE search @@ q"
)
_WORD_BY_TRIGRAMS = sql.SQL(
    "SELECT DISTINCT chat_id, {number} AS word, {text_rank}::real AS rank FROM messages WHERE unspaced AND content ILIKE {pattern}"
    " UNION ALL SELECT id, {number}, CASE WHEN name ILIKE {pattern} THEN {name_rank} ELSE {text_rank} END FROM chats"
    " WHERE (name || E'\\n' || coalesce(prompt, '')) ILIKE {pattern}"
)
_SEARCH = sql.SQL(
    """
WITH hits AS ({hits}),
best AS (SELECT chat_id, word, max(rank) AS rank FROM hits GROUP BY chat_id, word),
found AS (
    SELECT chat_id, sum(rank) AS score FROM best GROUP BY chat_id HAVING count(*) = {words}
    ORDER BY score DESC, chat_id LIMIT {limit})
SELECT c.stem, c.model, f.score, {snippet}
FROM found f JOIN chats c ON c.id = f.chat_id, LATERAL (SELECT coalesce(
    (SELECT m.content FROM messages m WHERE m.chat_id = f.chat_id AND ({matches})
     ORDER BY ts_rank(m.search, {any_word}) DESC, m.branch, m.position LIMIT 1),
    c.prompt,
    (SELECT m.content FROM messages m WHERE m.chat_id = f.chat_id AND m.branch = 0 AND m.position = 0),
    '') AS text) source
ORDER BY f.score DESC, c.name COLLATE "C"
"""
)


def _tsquery(word: str, prefix: bool) -> str:
    # \w+ words hold no quote or backslash: quoted, each is one term, never an operator.
    return f"'{word}'" + (":*" if prefix else "")


async def search(conn: psycopg.AsyncConnection, query: str, limit: int) -> list[dict]:
    words = query_words(query)
    if not words:
        return []
    hits, indexed, patterns = [], [], []
    for number, word in enumerate(words):
        if is_unspaced(word):
            patterns.append(like_pattern(word))
            hits.append(_WORD_BY_TRIGRAMS.format(
                number=number, pattern=sql.Literal(patterns[-1]),
                text_rank=sql.Literal(TEXT_RANK), name_rank=sql.Literal(NAME_RANK),
            ))
        else:
            indexed.append(_tsquery(word, prefix=number == len(words) - 1))
            hits.append(_WORD_BY_INDEX.format(number=number, query=sql.Literal(indexed[-1])))
    any_word = sql.SQL("to_tsquery('chatproxy', {})").format(" | ".join(indexed)) if indexed else sql.SQL("NULL::tsquery")
    matches = []
    if indexed:
        matches.append(sql.SQL("m.search @@ {}").format(any_word))
    if patterns:
        matches.append(sql.SQL("(m.unspaced AND m.content ILIKE ANY({}))").format(sql.Literal(patterns)))
    statement = _SEARCH.format(
        hits=sql.SQL(" UNION ALL ").join(hits),
        words=len(words),
        limit=limit,
        matches=sql.SQL(" OR ").join(matches),
        any_word=any_word,
        # A word inside unspaced text is marked by excerpt(): ts_headline knows only whole words.
        snippet=sql.SQL("source.text") if patterns else sql.SQL("ts_headline('chatproxy', source.text, {}, {})").format(any_word, HEADLINE),
    )
    cursor = await conn.execute(statement)
    results = []
    for stem, model, score, text in await cursor.fetchall():
        name = names.name_for(stem + names.SUFFIX)
        snippet = excerpt(text, words) if patterns else text
        results.append({"id": name, "name": name, "model": model if isinstance(model, str) else None,
                        "snippet": snippet, "score": round(float(score), 4)})
    return results

