"""store/formats.py: imports of every shape, and their one promise: whatever the upload,
either a ValueError before any item, or items that each hold a chat or say what is wrong."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from store import formats
from store.names import file_name_for

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "chat", "messages", "role", "content", "title", "mapping", "model", "current_node", "x"]), children, max_size=5
    ),
    max_leaves=20,
)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "wizard"]) | json_values, "content": st.text(max_size=10) | json_values}), max_size=3)
chats = st.fixed_dictionaries({"messages": messages | json_values}, optional={"name": json_values, "model": json_values, "title": json_values})
named = st.fixed_dictionaries({"name": st.text(max_size=10) | json_values, "chat": chats | json_values})
shaped = st.one_of(chats, named, st.lists(chats | named | json_values, max_size=3))
uploads = st.one_of(
    shaped.map(lambda v: json.dumps(v).encode()),
    st.lists(named | chats, max_size=3).map(lambda items: b"\n".join(json.dumps(i).encode() for i in items)),
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(json_values, max_size=4).map(lambda items: b"\n".join(json.dumps(i).encode() for i in items)),
)


@settings(max_examples=500, deadline=None)
@given(upload=uploads, default_name=st.none() | st.text(max_size=10))
def test_any_upload_gives_a_value_error_or_well_formed_items(upload, default_name):
    try:
        items = list(formats.parse_import(upload, default_name))
    except ValueError:
        return
    for item in items:
        assert isinstance(item.position, int) and item.position >= 0
        if item.error is not None:
            assert isinstance(item.error, str) and item.error
            continue
        assert isinstance(item.name, str) and item.name.strip()
        assert isinstance(item.chat, dict) and isinstance(item.chat["messages"], list)
        assert all(isinstance(m, dict) and isinstance(m["content"], str) for m in item.chat["messages"])
        json.dumps(item.chat)  # storable


def test_a_seed_chat_whose_name_is_not_text_gets_one():
    [item] = formats.parse_import(json.dumps({"name": 5, "messages": []}).encode(), None)
    assert item.name == "Imported chat 1" and item.error is None
    file_name_for(item.name)


def test_markdown_export_of_a_chat_with_reasoning_and_a_system_prompt():
    chat = {"model": "m", "system_prompt": "Be brief", "created_at": "2026-01-01",
            "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A", "reasoning": "line 1\nline 2"}]}
    text = formats.to_markdown("Name", chat)
    assert text.startswith("# Name\n\nModel: m · created 2026-01-01\n")
    assert "## System\n\nBe brief" in text and "## User\n\nQ" in text
    assert "> line 1\n> line 2" in text and text.rstrip().endswith("A")
