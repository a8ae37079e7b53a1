"""Search on PostgreSQL: the same request and answer as the folder's (store/search.py).

A chat is found when every word of the query is in its name, its title, its system prompt
or one of its messages (any branch), the last word as a prefix; it is answered as the
listing's entry for it (chats.summary) with a snippet and a score. A word of the messages is looked up
in ``chat_words`` (how often each word occurs in each chat, kept by triggers: migration
003), so a common word costs an index range, not every message that holds it; names and
system prompts in the ``tsvector`` of each chat (GIN index). A word written without spaces
(Chinese, Japanese) is looked up anywhere inside the text by trigrams (pg_trgm), as the
folder's trigram table does. Name and title matches rank ten times above the rest, as in the folder;
more occurrences of a word rank a chat higher. The snippet comes from the message of the
chat that matches best.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..search import excerpt, is_unspaced, like_pattern, query_words
from .chats import SUMMARY_COLUMNS, summary

# ts_rank's weights give a name (weight A) 1.0 and text (weight D) 0.1; a trigram match
# has no rank of its own and counts the same.
NAME_RANK, TEXT_RANK = 1.0, 0.1
MASK_BITS = 62  # terms a query's mask holds as an int8; more (a pasted paragraph) use bit strings
HEADLINE = "StartSel=**, StopSel=**, MaxWords=16, MinWords=8, ShortWord=0, MaxFragments=1, FragmentDelimiter=…"

# The words of the query as the index holds them (the configuration's lexemes: accents
# gone, lower case), in order; each is a term every chat found must hold.
_LEXEMES = (
    "SELECT w.n, t.lexeme FROM unnest(%s::text[]) WITH ORDINALITY AS w(word, n),"
    " unnest(to_tsvector('chatproxy', w.word)) t ORDER BY w.n, t.positions[1]"
)
# A word's rank in a chat's messages: more occurrences rank higher, never as high as a name.
# In float8, not numeric: a word in every chat is 50,000 of these (numeric was two thirds of
# such a search).
_HITS_RANK = "({text_rank}::float8 * hits / (hits + 1))::real"
# Where a term is, each place a row (chat, the term's bit, rank): in the messages
# (chat_words: one row per chat holding it; the last term is a prefix, a range of the
# index, a row per word of it), in the names and system prompts (the chats' tsvector), or,
# for a word written without spaces, by trigrams.
_TERM_EXACT = sql.SQL(
    "SELECT chat_id, {bit} AS bit, " + _HITS_RANK + " AS rank FROM chat_words WHERE word = {lexeme}"
)
_TERM_PREFIX = sql.SQL(
    "SELECT chat_id, {bit} AS bit, " + _HITS_RANK + " AS rank FROM chat_words"
    " WHERE word >= {lexeme} AND word < {lexeme} || chr(1114111)"
)
_TERM_IN_NAMES = sql.SQL(
    " UNION ALL SELECT id, {bit}, ts_rank(search, to_tsquery('chatproxy', {query})) FROM chats"
    " WHERE search @@ to_tsquery('chatproxy', {query})"  # a constant: the planner sees how rare it is
)
_WORD_BY_TRIGRAMS = sql.SQL(
    "SELECT DISTINCT chat_id, {bit} AS bit, {text_rank}::real AS rank FROM messages WHERE unspaced AND content ILIKE {pattern}"
    " UNION ALL SELECT id, {bit}, CASE WHEN (name || E'\\n' || coalesce(title, '')) ILIKE {pattern} THEN {name_rank} ELSE {text_rank} END"
    " FROM chats WHERE (name || E'\\n' || coalesce(title, '') || E'\\n' || coalesce(prompt, '')) ILIKE {pattern}"
)
# One pass over every place found: a chat is found when its places hold every term (their
# bits together are all ones), scored by the sum of its places' ranks.
_EVERY_TERM = sql.SQL(
    "SELECT chat_id, sum(rank) AS score FROM ({hits}) hits GROUP BY chat_id HAVING bit_or(bit) = {every_term}"
    " ORDER BY score DESC, chat_id LIMIT {limit}"
)
# One word typed, a prefix (the usual search, and the costly one when the word is in every
# chat): the chats holding the word itself are one row each and need no grouping; only the
# longer words it begins and the names are summed by chat, and joined to them (half the
# time of grouping them all, for a word in 50,000 chats).
_ONE_WORD = sql.SQL(
    "SELECT coalesce(w.chat_id, o.chat_id) AS chat_id, coalesce(w.rank, 0) + coalesce(o.rank, 0) AS score"
    " FROM (SELECT chat_id, " + _HITS_RANK + " AS rank FROM chat_words WHERE word = {lexeme}) w"
    " FULL JOIN (SELECT chat_id, sum(rank) AS rank FROM ("
    "SELECT chat_id, 1 AS bit, " + _HITS_RANK + " AS rank FROM chat_words"
    " WHERE word > {lexeme} AND word < {lexeme} || chr(1114111){in_names}) others GROUP BY chat_id) o"
    " ON o.chat_id = w.chat_id ORDER BY score DESC, chat_id LIMIT {limit}"
)
_SEARCH = sql.SQL(
    """
WITH found AS ({found})
SELECT {summary}, f.score, {snippet}
FROM found f JOIN chats c ON c.id = f.chat_id, LATERAL (SELECT coalesce(
    (SELECT m.content FROM messages m WHERE m.chat_id = f.chat_id AND ({matches})
     ORDER BY ts_rank(m.search, {any_word}) DESC, m.branch, m.position LIMIT 1),
    c.prompt,
    (SELECT m.content FROM messages m WHERE m.chat_id = f.chat_id AND m.branch = 0 AND m.position = 0),
    '') AS text) source
ORDER BY f.score DESC, c.name COLLATE "C"
"""
)


def _term_bit(number: int, terms: int) -> sql.Composable:
    """A term's bit in the mask of the terms a chat holds: an integer (bit_or over integers
    is several times faster than over bit strings) unless there are too many terms for one."""
    if terms <= MASK_BITS:
        return sql.SQL("{}::int8").format(sql.Literal(1 << number))
    return sql.SQL("B{}").format(sql.Literal("".join("1" if place == number else "0" for place in range(terms))))


def _every_term(terms: int) -> sql.Composable:
    if terms <= MASK_BITS:
        return sql.SQL("{}::int8").format(sql.Literal((1 << terms) - 1))
    return sql.SQL("B{}").format(sql.Literal("1" * terms))


def _tsquery(word: str, prefix: bool) -> str:
    # \w+ words hold no quote or backslash: quoted, each is one term, never an operator.
    return f"'{word}'" + (":*" if prefix else "")


async def _terms(conn: psycopg.AsyncConnection, words: list[str]) -> list[tuple[str, bool]] | None:
    """Each word as terms: (lexeme, whether it is a prefix), a word written without spaces
    as itself; None if a word has no lexeme (it can match nothing)."""
    spaced = [word for word in words if not is_unspaced(word)]
    lexemes: dict[int, list[str]] = {}
    if spaced:
        cursor = await conn.execute(_LEXEMES, (spaced,))
        for number, lexeme in await cursor.fetchall():
            lexemes.setdefault(number - 1, []).append(lexeme)
        if len(lexemes) < len(spaced):
            return None
    terms, spaced_number = [], 0
    for number, word in enumerate(words):
        if is_unspaced(word):
            terms.append((word, False))
            continue
        own = lexemes[spaced_number]
        spaced_number += 1
        last = number == len(words) - 1
        terms += [(lexeme, last and place == len(own) - 1) for place, lexeme in enumerate(own)]
    return terms


async def search(conn: psycopg.AsyncConnection, query: str, limit: int) -> list[dict]:
    words = query_words(query)
    terms = await _terms(conn, words) if words else None
    if not terms:
        return []
    hits, indexed, patterns = [], [], []
    for number, (term, prefix) in enumerate(terms):
        bit = _term_bit(number, len(terms))
        if is_unspaced(term):
            patterns.append(like_pattern(term))
            hits.append(_WORD_BY_TRIGRAMS.format(
                bit=bit, pattern=sql.Literal(patterns[-1]),
                text_rank=sql.Literal(TEXT_RANK), name_rank=sql.Literal(NAME_RANK),
            ))
        else:
            indexed.append(_tsquery(term, prefix))
            in_messages = (_TERM_PREFIX if prefix else _TERM_EXACT).format(
                bit=bit, lexeme=sql.Literal(term), text_rank=sql.Literal(TEXT_RANK)
            )
            hits.append(in_messages + _TERM_IN_NAMES.format(bit=bit, query=sql.Literal(indexed[-1])))
    any_word = sql.SQL("to_tsquery('chatproxy', {})").format(" | ".join(indexed)) if indexed else sql.SQL("NULL::tsquery")
    matches = []
    if indexed:
        matches.append(sql.SQL("m.search @@ {}").format(any_word))
    if patterns:
        matches.append(sql.SQL("(m.unspaced AND m.content ILIKE ANY({}))").format(sql.Literal(patterns)))
    if len(terms) == 1 and terms[0][1] and not patterns:
        found = _ONE_WORD.format(
            lexeme=sql.Literal(terms[0][0]), text_rank=sql.Literal(TEXT_RANK), limit=limit,
            in_names=_TERM_IN_NAMES.format(bit=sql.SQL("1"), query=sql.Literal(indexed[0])),
        )
    else:
        found = _EVERY_TERM.format(hits=sql.SQL(" UNION ALL ").join(hits), every_term=_every_term(len(terms)), limit=limit)
    statement = _SEARCH.format(
        summary=sql.SQL(SUMMARY_COLUMNS),
        found=found,
        matches=sql.SQL(" OR ").join(matches),
        any_word=any_word,
        # A word inside unspaced text is marked by excerpt(): ts_headline knows only whole words.
        snippet=sql.SQL("source.text") if patterns else sql.SQL("ts_headline('chatproxy', source.text, {}, {})").format(any_word, HEADLINE),
    )
    cursor = await conn.execute(statement)
    results = []
    for *columns, score, text in await cursor.fetchall():
        snippet = excerpt(text, words) if patterns else text
        results.append({**summary(*columns), "snippet": snippet, "score": round(float(score), 4)})
    return results

