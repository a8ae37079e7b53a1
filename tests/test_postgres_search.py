"""store/postgres/search.py: the folder's search answers, from PostgreSQL's full-text and
trigram indexes, against a real PostgreSQL."""

from __future__ import annotations

import pytest

from store.postgres import chats
from store.postgres.search import MASK_BITS, search
from tests.postgres import edit_message, new_chat, update_settings

SENTENCE = "这是一个关于人工智能的很长的句子，我们讨论机器学习的发展历史。"


async def names_found(conn, query: str, limit: int = 50) -> list[str]:
    return [result["name"] for result in await search(conn, query, limit)]


@pytest.mark.gen_test
async def test_names_and_contents_ranked_with_a_snippet_every_word_the_last_a_prefix(pg_conn):
    await chats.create(pg_conn, "Rust lifetimes", new_chat("what are lifetimes?", "borrow checker things"))
    await chats.create(pg_conn, "cooking", new_chat("a recipe", "mention rust once on the pan"))
    await chats.create(pg_conn, "unrelated", new_chat("nothing", "here"))
    found = await search(pg_conn, "rust", 50)
    assert [result["name"] for result in found] == ["Rust lifetimes", "cooking"]
    assert found[0]["model"] == "m" and found[0]["id"] == "Rust lifetimes" and found[0]["score"] > found[1]["score"]
    assert "**rust**" in found[1]["snippet"]
    assert await names_found(pg_conn, "recipe pan") == ["cooking"]  # words in two messages
    assert await names_found(pg_conn, "borr") == ["Rust lifetimes"]  # prefix while typing
    assert await names_found(pg_conn, "borr lifetimes") == []  # only the last word is a prefix
    assert await names_found(pg_conn, "rust nothing") == []


@pytest.mark.gen_test
async def test_every_branch_and_the_system_prompt_are_searched_and_changes_seen_at_once(pg_conn):
    await chats.create(pg_conn, "c", new_chat("the zebra question", "answer"))
    await edit_message(pg_conn, "c", 0, "an edited question")  # the zebra is in an alternative now
    assert await names_found(pg_conn, "zebra") == ["c"]
    await update_settings(pg_conn, "c", {"system_prompt": "Speak like a pirate"})
    assert await names_found(pg_conn, "pirate") == ["c"]
    await chats.rename(pg_conn, "c", "renamed")
    assert await names_found(pg_conn, "zebra") == ["renamed"]
    await chats.delete(pg_conn, "renamed")
    assert await names_found(pg_conn, "zebra") == []


@pytest.mark.gen_test
async def test_accents_are_ignored_and_text_postgresql_cannot_hold_is_still_found(pg_conn):
    await chats.create(pg_conn, "accents", new_chat("a b ünïcödé"))
    await chats.create(pg_conn, "nul", new_chat("before\x00after nulword"))
    assert await names_found(pg_conn, "unicode") == ["accents"]
    assert await names_found(pg_conn, "ÜNÏCÖDÉ") == ["accents"]
    assert await names_found(pg_conn, "nulword") == ["nul"]


@pytest.mark.gen_test
@pytest.mark.parametrize("query", ['"', "a OR b", "NEAR(a b)", "*", "-x", "col:val", "'; DROP TABLE chats; --", "ünïcödé", "😀", "^", "a & b | !c", "x:*", "_", "%"])
async def test_search_syntax_in_the_query_is_just_text(pg_conn, query):
    await chats.create(pg_conn, "x", new_chat("a b ünïcödé"))
    assert isinstance(await search(pg_conn, query, 50), list)
    assert await chats.count(pg_conn) == 1


@pytest.mark.gen_test
async def test_the_limit_is_kept(pg_conn):
    for number in range(5):
        await chats.create(pg_conn, f"c{number}", new_chat("common word"))
    assert len(await search(pg_conn, "common", 2)) == 2


@pytest.mark.gen_test
async def test_a_chinese_word_inside_a_longer_sentence_is_found_with_a_snippet(pg_conn):
    await chats.create(pg_conn, "ai", new_chat("a question", SENTENCE))
    await chats.create(pg_conn, "other", new_chat("无关的内容", "nothing about it"))
    results = await search(pg_conn, "人工智能", 50)
    assert [result["name"] for result in results] == ["ai"] and "**人工智能**" in results[0]["snippet"]
    assert isinstance(results[0]["score"], float)
    assert await names_found(pg_conn, "机器学习") == ["ai"]
    assert await names_found(pg_conn, "人工智慧") == []


@pytest.mark.gen_test
async def test_japanese_words_of_any_length_and_with_latin_words(pg_conn):
    await chats.create(pg_conn, "study", new_chat("私は機械学習を勉強しています", "Rust も少し"))
    await chats.create(pg_conn, "travel", new_chat("京都で勉強しました"))
    assert await names_found(pg_conn, "機械学習") == ["study"]
    assert sorted(await names_found(pg_conn, "勉強")) == ["study", "travel"]
    assert await names_found(pg_conn, "勉強 rust") == ["study"]
    assert await names_found(pg_conn, "勉強 京都") == ["travel"]
    assert await names_found(pg_conn, "機械学習 京都") == []


@pytest.mark.gen_test
async def test_chinese_names_rank_above_contents(pg_conn):
    await chats.create(pg_conn, "人工智能笔记", new_chat("notes"))
    await chats.create(pg_conn, "随笔", new_chat("我读了一本人工智能的书"))
    assert await names_found(pg_conn, "人工智能") == ["人工智能笔记", "随笔"]


@pytest.mark.gen_test
async def test_a_chinese_search_uses_the_trigram_index(pg_conn):
    await chats.create(pg_conn, "ai", new_chat(SENTENCE))
    await pg_conn.execute("SET enable_seqscan = off")  # a tiny table: make the planner show what it can use
    cursor = await pg_conn.execute("EXPLAIN SELECT 1 FROM messages WHERE unspaced AND content ILIKE '%人工智能%'")
    plan = "\n".join(row[0] for row in await cursor.fetchall())
    assert "messages_trigrams" in plan


@pytest.mark.gen_test
@pytest.mark.parametrize("count", [MASK_BITS, MASK_BITS + 1])
async def test_every_word_is_needed_with_as_many_words_as_an_integer_mask_holds_and_one_more(pg_conn, count):
    words = [f"w{number:03}x" for number in range(count)]
    await chats.create(pg_conn, "all", new_chat(" ".join(words)))
    await chats.create(pg_conn, "all but one", new_chat(" ".join(words[1:])))
    assert await names_found(pg_conn, " ".join(words)) == ["all"]
    assert sorted(await names_found(pg_conn, " ".join(words[1:]))) == ["all", "all but one"]


@pytest.mark.gen_test
async def test_a_word_typed_counts_the_word_the_longer_words_it_begins_and_the_name_together(pg_conn):
    await chats.create(pg_conn, "word only", new_chat("run"))
    await chats.create(pg_conn, "word and longer", new_chat("run runner"))
    await chats.create(pg_conn, "longer only", new_chat("runner"))
    await chats.create(pg_conn, "run in the name", new_chat("run"))
    found = {result["name"]: result["score"] for result in await search(pg_conn, "run", 50)}
    assert list(found) == ["run in the name", "word and longer", "longer only", "word only"]  # ties by name
    assert found["word and longer"] == pytest.approx(found["word only"] + found["longer only"], abs=1e-4)
