"""store/history.py: editing, regenerating and switching keep every message."""

from __future__ import annotations

import copy

import pytest

from store import InvalidChatValue, MessageIndexError
from store import history


def chat_of(*contents: str) -> dict:
    roles = ["user", "assistant"]
    return {"model": "m", "messages": [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]}


def contents(chat: dict) -> list[str]:
    return [m["content"] for m in chat["messages"]]


def every_text(chat: dict) -> set[str]:
    return set(history.all_texts(chat))


def test_regenerate_keeps_the_old_reply_as_an_alternative():
    chat = chat_of("q1", "a1", "q2", "a2")
    history.prepare_regenerate(chat)
    assert contents(chat) == ["q1", "a1", "q2"]
    assert chat["alternatives"] == {"3": [{"messages": [{"role": "assistant", "content": "a2"}], "alternatives": {}}]}


def test_regenerate_without_a_reply_sets_nothing_aside():
    chat = chat_of("q1", "a1", "q2")
    history.prepare_regenerate(chat)
    assert contents(chat) == ["q1", "a1", "q2"] and "alternatives" not in chat


def test_regenerate_needs_a_user_message():
    with pytest.raises(InvalidChatValue):
        history.prepare_regenerate({"messages": []})


def test_switching_swaps_and_switching_back_restores_exactly():
    chat = chat_of("q1", "a1", "q2", "a2")
    history.prepare_regenerate(chat)
    chat["messages"].append({"role": "assistant", "content": "a2 again"})
    before = copy.deepcopy(chat)
    history.switch(chat, 3, 0)
    assert contents(chat) == ["q1", "a1", "q2", "a2"]
    assert chat["alternatives"]["3"][0]["messages"][0]["content"] == "a2 again"
    history.switch(chat, 3, 0)
    assert chat == before


def test_a_branch_carries_its_sub_branches():
    chat = chat_of("q1", "a1", "q2", "a2")
    history.prepare_regenerate(chat)  # a2 aside at 3
    chat["messages"].append({"role": "assistant", "content": "b2"})
    history.rerun_from(chat, 0, "q1 edited")  # the whole branch, with a2 under it, aside at 0
    assert contents(chat) == ["q1 edited"]
    assert list(chat["alternatives"]) == ["0"]
    assert list(chat["alternatives"]["0"][0]["alternatives"]) == ["3"]
    history.switch(chat, 0, 0)
    assert contents(chat) == ["q1", "a1", "q2", "b2"]
    assert sorted(chat["alternatives"]) == ["0", "3"]
    history.switch(chat, 3, 0)
    assert contents(chat) == ["q1", "a1", "q2", "a2"]


def test_edit_keeps_the_old_branch_and_the_messages_after():
    chat = chat_of("q1", "a1", "q2", "a2")
    history.edit(chat, 2, "q2 fixed")
    assert contents(chat) == ["q1", "a1", "q2 fixed", "a2"]
    assert contents(chat["alternatives"]["2"][0]) == ["q2", "a2"]


def test_rerun_only_from_a_user_message():
    chat = chat_of("q1", "a1")
    with pytest.raises(InvalidChatValue):
        history.rerun_from(chat, 1, "x")
    with pytest.raises(MessageIndexError):
        history.rerun_from(chat, 5, "x")
    assert contents(chat) == ["q1", "a1"]


def test_switch_errors_change_nothing():
    chat = chat_of("q1", "a1")
    before = copy.deepcopy(chat)
    for index, alternative in ((1, 0), (0, 0)):
        with pytest.raises(InvalidChatValue):
            history.switch(chat, index, alternative)
    history.prepare_regenerate(chat)
    before = copy.deepcopy(chat)
    with pytest.raises(InvalidChatValue):
        history.switch(chat, 1, 1)
    assert chat == before


def test_nothing_is_ever_lost_over_many_operations():
    chat = chat_of("q1", "a1")
    seen = every_text(chat)
    for step in range(30):
        kind = step % 3
        if kind == 0:
            history.prepare_regenerate(chat)
            chat["messages"].append({"role": "assistant", "content": f"reply {step}"})
        elif kind == 1:
            history.edit(chat, 0, f"question {step}")
        else:
            history.switch(chat, 0, 0)
        seen |= every_text(chat)
        assert every_text(chat) == seen


def test_branches_lists_the_places_on_the_current_branch():
    chat = chat_of("q1", "a1", "q2", "a2")
    history.prepare_regenerate(chat)
    chat["messages"].append({"role": "assistant", "content": "new"})
    assert history.branches(chat) == [
        {"index": 3, "alternatives": [{"alternative": 0, "messages": 1, "preview": "a2"}]}
    ]
