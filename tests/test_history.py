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


# -- hand-edited files: whatever shape a chat has, the rules answer or refuse, never crash ------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from store import StoreError  # noqa: E402

junk = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 5) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["messages", "alternatives", "content", "role", "0", "1", "2"]), children, max_size=3),
    max_leaves=10,
)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]) | junk, "content": st.text(max_size=5) | junk}) | junk
odd_chats = st.fixed_dictionaries(
    {"messages": st.lists(message, max_size=5)},
    optional={"alternatives": st.dictionaries(st.sampled_from(["0", "1", "2", "3", "x", "-1"]), st.lists(st.fixed_dictionaries({"messages": st.lists(message, max_size=3)}) | junk, max_size=2) | junk, max_size=3) | junk},
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("edit"), st.integers(-1, 5), st.text(max_size=3)),
        st.tuples(st.just("rerun"), st.integers(-1, 5), st.text(max_size=3)),
        st.tuples(st.just("regenerate")),
        st.tuples(st.just("switch"), st.integers(-1, 5), st.integers(-1, 2)),
        st.tuples(st.just("branches")),
        st.tuples(st.just("texts")),
    ),
    max_size=6,
)


def apply(chat: dict, step: tuple, reply: str | None = None) -> None:
    """One drawn operation; a refusal (StoreError) is an answer too. ``reply`` is appended
    after a regenerate, as the turn would."""
    import json

    try:
        if step[0] == "edit":
            history.edit(chat, step[1], step[2])
        elif step[0] == "rerun":
            history.rerun_from(chat, step[1], step[2])
        elif step[0] == "regenerate":
            history.prepare_regenerate(chat)
            if reply is not None:
                chat["messages"].append({"role": "assistant", "content": reply})
        elif step[0] == "switch":
            history.switch(chat, step[1], step[2])
        elif step[0] == "branches":
            json.dumps(history.branches(chat))
        else:
            assert all(isinstance(text, str) for text in history.all_texts(chat))
    except StoreError:
        pass


@settings(max_examples=400, deadline=None)
@given(chat=odd_chats, steps=operations)
def test_any_chat_shape_is_answered_or_refused_never_crashed(chat, steps):
    import json

    for step in steps:
        apply(chat, step)
        assert isinstance(chat["messages"], list)
        json.dumps(chat)  # still storable


def test_damaged_alternatives_are_set_aside_not_lost_and_numbered_alike():
    good = {"messages": [{"role": "assistant", "content": "kept"}]}
    chat = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "now"}],
            "alternatives": {"1": ["junk", good], "x": 5}}
    assert history.branches(chat) == [{"index": 1, "alternatives": [{"alternative": 0, "messages": 1, "preview": "kept"}]}]
    history.switch(chat, 1, 0)
    assert contents(chat) == ["q", "kept"]
    assert chat["alternatives"]["1"][0]["messages"][0]["content"] == "now"
    assert chat["alternatives_unreadable"] == [{"1": ["junk"]}, {"x": 5}]
    assert list(chat["alternatives"]) == ["1"]


well_formed = st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=6).map(lambda texts: chat_of(*texts))


@settings(max_examples=400, deadline=None)
@given(chat=well_formed, steps=operations)
def test_no_sequence_of_operations_loses_a_text(chat, steps):
    seen = every_text(chat)
    for step in steps:
        apply(chat, step, reply="new reply")
        seen |= every_text(chat)
        assert every_text(chat) == seen
        assert "alternatives_unreadable" not in chat
