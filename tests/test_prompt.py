"""Pure upstream rules: prompt sizes and fitting (issue 16, item 5), error bodies, what servers say they offer."""

from __future__ import annotations

import pytest

from lmstudio import PromptTooLong, error_message_from_body, estimate_tokens, fit_messages, reply_room
from lmstudio.catalog import NotThisKind, parse_llama_props, parse_lmstudio_models, parse_model_list
from lmstudio.prompt import MESSAGE_OVERHEAD, apportion


def chat(turns: int) -> list[dict]:
    """A system prompt, then ``turns`` user/assistant pairs."""
    messages = [{"role": "system", "content": "sys"}]
    for number in range(turns):
        messages += [{"role": "user", "content": f"q{number}"}, {"role": "assistant", "content": f"a{number}"}]
    return messages


def test_a_prompt_that_fits_is_sent_whole():
    messages = chat(3)
    fit = fit_messages(messages, [10] * len(messages), context_length=100, reply_tokens=20)
    assert fit.messages == messages and fit.dropped == range(0) and fit.prompt_tokens == 70


def test_truncate_keeps_system_prompt_and_first_question_and_drops_the_oldest_turns():
    messages = chat(5) + [{"role": "user", "content": "now"}]  # 12 messages
    fit = fit_messages(messages, [10] * len(messages), context_length=100, reply_tokens=30)
    # budget 70: system, q0, then the newest turns that fit whole
    assert [m["content"] for m in fit.messages] == ["sys", "q0", "q3", "a3", "q4", "a4", "now"]
    assert fit.dropped == range(2, 7) and fit.prompt_tokens == 70 and fit.reply_tokens == 30
    assert fit.messages[2]["role"] == "user"  # never starts a turn with its answer


def test_truncate_keeps_a_tool_call_with_its_result():
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "tool", "content": "result", "tool_call_id": "1"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "2"}]},
        {"role": "tool", "content": "result 2", "tool_call_id": "2"},
    ]
    fit = fit_messages(messages, [10] * 7, context_length=60, reply_tokens=10)
    assert [m["role"] for m in fit.messages] == ["user", "user", "assistant", "tool"]
    assert fit.dropped == range(1, 4)


@pytest.mark.parametrize("policy", ["error", "truncate"])
def test_a_prompt_that_cannot_fit_is_a_400_naming_the_sizes(policy):
    messages = chat(1) + [{"role": "user", "content": "long"}]
    sizes = [10, 10, 10, 500] if policy == "truncate" else [10, 10, 10, 200]
    with pytest.raises(PromptTooLong) as raised:
        fit_messages(messages, sizes, context_length=200, reply_tokens=50, policy=policy)
    error = raised.value
    assert error.status == 400 and error.kind == "context_overflow"
    assert "200" in error.message and "50" in error.message
    # truncated: what is left (system prompt, first question, last turn); else the whole prompt
    assert ("about 520 tokens" if policy == "truncate" else "about 230 tokens") in error.message


def test_one_size_per_message():
    with pytest.raises(ValueError):
        fit_messages(chat(1), [1], 100, 10)


def test_reply_room_is_max_tokens_or_a_share_of_the_context():
    assert reply_room(8192, 500) == 500
    assert reply_room(8192, -1) == 1024 and reply_room(2048, None) == 512 and reply_room(2048, True) == 512


def test_estimates_err_on_the_safe_side():
    english = {"role": "user", "content": "The quick brown fox jumps over the lazy dog. " * 20}  # ~200 real tokens
    assert estimate_tokens(english) >= 200 + MESSAGE_OVERHEAD
    cjk = {"role": "user", "content": "機械学習とは何ですか" * 10}  # about one token a character
    assert estimate_tokens(cjk) >= 100
    picture = {"role": "user", "content": [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "x"}}]}
    assert estimate_tokens(picture) > 1000
    assert estimate_tokens({"role": "assistant", "content": None}) == MESSAGE_OVERHEAD


def test_a_tokenizer_count_is_shared_out_in_proportion():
    messages = [{"role": "user", "content": "a" * 300}, {"role": "user", "content": "b" * 150}]
    assert apportion(messages, 30) == [MESSAGE_OVERHEAD + 20, MESSAGE_OVERHEAD + 10]


def test_error_bodies_keep_the_upstreams_type_and_figures():
    llama = b'{"error": {"code": 400, "message": "the request exceeds the available context size", "type": "exceed_context_size_error", "n_prompt_tokens": 5000, "n_ctx": 4096}}'
    assert error_message_from_body(llama) == (
        "the request exceeds the available context size (code: 400, type: exceed_context_size_error, n_prompt_tokens: 5000, n_ctx: 4096)"
    )
    assert error_message_from_body(b'{"error": "Unexpected endpoint or method. (GET /x)"}') == "Unexpected endpoint or method. (GET /x)"
    assert error_message_from_body(b'{"error": {"message": "m", "param": null}}') == "m"
    assert error_message_from_body(b"<html>bad gateway</html>") == "an HTML page: bad gateway"
    assert len(error_message_from_body(b"x" * 5000)) == 200
    assert error_message_from_body(b"") == "(empty body)"


def test_what_servers_say_they_offer():
    models, lengths = parse_model_list(b'{"data": [{"id": "a"}, {"id": "b", "max_model_len": 32768}, {"no": "id"}]}')
    assert list(models) == ["a", "b"] and lengths == {"b": 32768}
    lmstudio = b'{"data": [{"id": "a", "state": "loaded", "loaded_context_length": 8192}, {"id": "b", "state": "not-loaded"}]}'
    assert parse_lmstudio_models(lmstudio) == {"a": 8192}
    assert parse_llama_props(b'{"default_generation_settings": {"n_ctx": 4096}}') == 4096
    with pytest.raises(NotThisKind):
        parse_llama_props(b'{"error": "Unexpected endpoint or method. (GET /props)"}')  # LM Studio's 200
    with pytest.raises(NotThisKind):
        parse_lmstudio_models(b'{"data": [{"id": "a"}]}')  # a plain /v1/models list, not LM Studio's own
    with pytest.raises(NotThisKind):
        parse_model_list(b"not json")
