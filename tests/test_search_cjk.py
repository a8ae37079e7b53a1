"""Search finds a word inside Chinese or Japanese text, written without spaces, through the API."""

from __future__ import annotations

import json
import sqlite3
from urllib.parse import quote

import pytest

from store.search import FILE_NAME, SCHEMA, excerpt
from tests.helpers import call, turn
from tests.helpers import create_chat as create

pytestmark = pytest.mark.both_engines

SENTENCE = "这是一个关于人工智能的很长的句子，我们讨论机器学习的发展历史。"


async def add(proxy, name: str, *contents: str) -> None:
    """A chat of these messages, user and assistant in turn, through POST /chats/import."""
    messages = [{"role": ("user", "assistant")[i % 2], "content": c} for i, c in enumerate(contents)]
    response = await call(proxy, "POST", "/chats/import", raw=json.dumps({"name": name, "chat": {"model": "m", "messages": messages}}).encode())
    assert response.status == 200 and response.json["imported"] == [{"position": 0, "name": name}], response.body


async def search(proxy, query: str) -> list[dict]:
    response = await call(proxy, "GET", "/chats?q=" + quote(query))
    assert response.status == 200, response.body
    return response.json["chats"]


def found(results):
    return [result["name"] for result in results]


@pytest.mark.gen_test
async def test_a_chinese_word_inside_a_longer_sentence_is_found_with_a_snippet(proxy):
    await add(proxy, "ai", "a question", SENTENCE)
    await add(proxy, "other", "无关的内容", "nothing about it")
    results = await search(proxy, "人工智能")
    assert found(results) == ["ai"]
    assert "**人工智能**" in results[0]["snippet"]
    assert found(await search(proxy, "机器学习")) == ["ai"]
    assert await search(proxy, "人工智慧") == []  # one character off: not there


@pytest.mark.gen_test
async def test_japanese_words_of_any_length_and_every_word_must_be_there(proxy):
    await add(proxy, "study", "私は機械学習を勉強しています", "Rust も少し")
    await add(proxy, "travel", "京都で勉強しました")
    assert found(await search(proxy, "機械学習")) == ["study"]
    assert sorted(found(await search(proxy, "勉強"))) == ["study", "travel"]  # two characters: no trigram
    two = await search(proxy, "学習")
    assert found(two) == ["study"] and "**学習**" in two[0]["snippet"]
    assert found(await search(proxy, "勉強 rust")) == ["study"]  # with a Latin word
    assert found(await search(proxy, "勉強 京都")) == ["travel"]
    assert await search(proxy, "機械学習 京都") == []


@pytest.mark.gen_test
async def test_names_with_chinese_are_found_and_rank_above_contents(proxy):
    await add(proxy, "人工智能笔记", "notes")
    await add(proxy, "随笔", "我读了一本人工智能的书")
    assert found(await search(proxy, "人工智能")) == ["人工智能笔记", "随笔"]


@pytest.mark.gen_test
async def test_our_own_changes_are_searched_at_once(proxy, fake):
    await create(proxy, "chat")
    await turn(proxy, "chat", content=SENTENCE)
    assert found(await search(proxy, "人工智能")) == ["chat"]
    await call(proxy, "PATCH", "/chat", {"name": "chat", "new_name": "renamed"})
    assert found(await search(proxy, "人工智能")) == ["renamed"]
    await call(proxy, "DELETE", "/chat?name=renamed")
    assert await search(proxy, "人工智能") == []


@pytest.mark.gen_test
async def test_latin_text_is_searched_as_before_in_a_chat_with_chinese(proxy):
    await add(proxy, "mixed", "Tokenizers split " + SENTENCE)
    results = await search(proxy, "tokeniz")  # the last word as a prefix, by the word index
    assert found(results) == ["mixed"] and "**Tokenizers**" in results[0]["snippet"]


@pytest.mark.gen_test
async def test_an_index_built_by_an_older_chatproxy_is_built_again(proxy, chats_dir):
    await add(proxy, "ai", SENTENCE)
    stat = (chats_dir / "ai.json").stat()
    old = sqlite3.connect(chats_dir / FILE_NAME)  # the index as the previous version left it
    old.executescript(SCHEMA)
    old.execute("INSERT INTO files (id, file_name, mtime_ns, size) VALUES (1, 'ai.json', ?, ?)", (stat.st_mtime_ns, stat.st_size))
    old.execute("INSERT INTO docs (rowid, name, body) VALUES (1, 'ai', ?)", (SENTENCE,))
    old.commit()
    old.close()
    assert found(await search(proxy, "人工智能")) == ["ai"]


def test_an_excerpt_marks_every_word_and_says_where_it_is_cut():
    text = "一" * 40 + "人工智能" + "二" * 40
    snippet = excerpt(text, ["人工智能"])
    assert snippet.startswith("…") and snippet.endswith("…") and "**人工智能**" in snippet
    assert excerpt("短い文", ["文"]) == "短い**文**"
    assert excerpt("no match here", ["x"]) == "no match here"
