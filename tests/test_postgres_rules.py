"""Every change through store/postgres gives exactly what the folder's rules give
(store/history.py on the chat dict): the same chat, or the same refusal with nothing
changed, for chats of any shape a file can hold (hand-edited ones too) and any text
(NUL, a lone surrogate, 64-bit integers). Against a real PostgreSQL."""

from __future__ import annotations

import contextlib
import copy

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from store import ChatNotFound, StoreError, chatfile, history, running
from store.postgres import chats, turns
from tests.postgres import append, edit_message, remove_message, switch_branch, update_settings, without_stamp

REPLY = {"role": "assistant", "content": "new reply"}

texts = st.sampled_from(["", "hi", "nul \x00", "half \ud83d", "人工智能"]) | st.text(max_size=4)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
messages = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant"]), "content": texts}, optional={"reasoning": texts, "extra": values}
) | values
alternatives = st.deferred(
    lambda: st.dictionaries(st.sampled_from(["0", "1", "2", "3", "x", "nul\x00"]), st.lists(tails, max_size=2) | values, max_size=3) | values
)
tails = st.fixed_dictionaries({"messages": st.lists(messages, max_size=3)}, optional={"alternatives": alternatives}) | values
shaped = st.fixed_dictionaries(
    {"messages": st.lists(messages, max_size=5)},
    optional={"alternatives": alternatives, "model": values, "system_prompt": texts, "updated_at": values, "kept": values},
)
# Chats the API makes: every change has something to act on.
plain = st.lists(texts, min_size=1, max_size=6).map(
    lambda contents: {"model": "m", "messages": [{"role": ("user", "assistant")[i % 2], "content": c} for i, c in enumerate(contents)]}
)
indexes = st.integers(-1, 6)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("edit"), indexes, texts),
        st.tuples(st.just("switch"), indexes, st.integers(-1, 2)),
        st.tuples(st.just("remove"), indexes),
        st.tuples(st.just("settings"), st.dictionaries(st.sampled_from(["model", "system_prompt", "temperature"]), values | st.none(), max_size=2)),
        st.tuples(st.just("append"), messages),
        st.tuples(st.just("turn"), st.just({"regenerate": True})),
        st.tuples(st.just("turn"), st.tuples(indexes, texts).map(lambda rerun: {"rerun": list(rerun)})),
        st.tuples(st.just("turn"), messages.map(lambda message: {"append": message})),
    ),
    max_size=6,
)


def by_the_rules(chat: dict, step: tuple) -> None:
    """``step`` done on the dict, as the folder does it."""
    if step[0] == "edit":
        history.edit(chat, step[1], step[2])
    elif step[0] == "switch":
        history.switch(chat, step[1], step[2])
    elif step[0] == "remove":
        history.remove(chat, step[1])
    elif step[0] == "settings":
        chatfile.apply_settings(chat, step[1])
    elif step[0] == "append":
        chat["messages"].append(step[1])
    else:
        running.begin(chat, step[1], {"id": "turn"})
        running.end(chat, "turn", REPLY)


async def by_sql(conn, name: str, step: tuple, number: int) -> None:
    if step[0] == "edit":
        await edit_message(conn, name, step[1], step[2])
    elif step[0] == "switch":
        await switch_branch(conn, name, step[1], step[2])
    elif step[0] == "remove":
        await remove_message(conn, name, step[1])
    elif step[0] == "settings":
        await update_settings(conn, name, step[1])
    elif step[0] == "append":
        await append(conn, name, [step[1]])
    else:
        lease = await turns.take_lease(conn, name, "tests", 60)
        try:
            await turns.begin_turn(conn, lease, name, copy.deepcopy(step[1]), {"id": str(number)})
            await turns.end_turn(conn, lease, name, str(number), REPLY)
        finally:
            await turns.release_lease(conn, lease)


# chat_words as it must be: every word of every message row, counted again from scratch.
COUNTED_AGAIN = """
SELECT w.lexeme, m.chat_id, sum(coalesce(array_length(w.positions, 1), 1))::int
FROM messages m, unnest(m.search) w GROUP BY w.lexeme, m.chat_id
"""


async def words_counted_right(conn) -> bool:
    """The search's counts (kept by triggers as rows come and go) against a fresh count."""
    cursor = await conn.execute(
        f"(SELECT word, chat_id, hits FROM chat_words EXCEPT {COUNTED_AGAIN})"
        f" UNION ALL ({COUNTED_AGAIN} EXCEPT SELECT word, chat_id, hits FROM chat_words)"
    )
    return await cursor.fetchall() == []


def check(io_loop, conn, chat: dict, plan: list) -> None:
    name = "chat"

    async def run() -> None:
        with contextlib.suppress(ChatNotFound):  # left by an example that failed, while shrinking
            await chats.delete(conn, name)
        await chats.create(conn, name, copy.deepcopy(chat))
        expected = copy.deepcopy(chat)
        assert await chats.get(conn, name) == expected
        for number, step in enumerate(plan):
            refusal = sql_refusal = None
            before = copy.deepcopy(expected)
            try:
                by_the_rules(expected, copy.deepcopy(step))
            except StoreError as error:
                refusal, expected = error, before
            try:
                await by_sql(conn, name, copy.deepcopy(step), number)
            except StoreError as error:
                sql_refusal = error
            event(f"{step[0]} {type(refusal).__name__}")
            assert (type(sql_refusal), str(sql_refusal)) == (type(refusal), str(refusal))
            assert without_stamp(await chats.get(conn, name)) == without_stamp(expected)
            assert await words_counted_right(conn)

    io_loop.run_sync(run, timeout=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chat=shaped, plan=steps)
def test_a_chat_of_any_shape_changes_as_the_folder_rules_say(io_loop, pg_conn, chat, plan):
    check(io_loop, pg_conn, chat, plan)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chat=plain, plan=steps)
def test_a_chat_the_api_makes_changes_as_the_folder_rules_say(io_loop, pg_conn, chat, plan):
    check(io_loop, pg_conn, chat, plan)
