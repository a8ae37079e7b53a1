"""What a turn asks LM Studio: the chat's settings and its current branch, as a streamed
chat completion, fitted into the model's context (issue 16: a chat never fails for length).

When the model's context length is known (lmstudio.Upstreams.context_length) and the prompt
may not fit with room for the reply, the chat's ``context_overflow`` setting decides:
"truncate" (the default) leaves out the oldest turns after the system prompt and the first
user message (lmstudio.fit_messages); "error" refuses the turn with a 400 naming the sizes.
A prompt whose safe-side estimate fits is sent as it is, without asking a tokenizer.
"""

from __future__ import annotations

from lmstudio import prompt

OVERFLOW_POLICIES = ("truncate", "error")

# What of a stored message LM Studio is sent: never our own keys (reasoning, timings...).
UPSTREAM_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


def completion_request(chat: dict) -> dict:
    """The request body: the system prompt first, then the whole current branch."""
    messages = [
        {key: message[key] for key in UPSTREAM_MESSAGE_KEYS if key in message}
        for message in chat["messages"]
        if isinstance(message, dict)
    ]
    system_prompt = chat.get("system_prompt")
    if isinstance(system_prompt, str) and system_prompt.strip():
        messages.insert(0, {"role": "system", "content": system_prompt})
    model = chat.get("model")
    return {
        "model": model if isinstance(model, str) else None,  # a hand-edited file may hold anything
        "messages": messages,
        "temperature": chat.get("temperature", 0.7),
        "max_tokens": chat.get("max_tokens", -1),
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def fitted_request(chat: dict, upstreams) -> tuple[dict, dict | None]:
    """The request body, and what was left out to make it fit (None: nothing), in the chat's
    own message positions: ``{"left_out": [first, last], "prompt_tokens", "context_length"}``."""
    body = completion_request(chat)
    context_length = await upstreams.context_length(body["model"])
    if context_length is None:
        return body, None
    messages = body["messages"]
    reply_tokens = prompt.reply_room(context_length, chat.get("max_tokens"))
    if sum(map(prompt.estimate_tokens, messages)) + reply_tokens <= context_length:
        return body, None
    sizes = await upstreams.count_tokens(body["model"], messages)
    fit = prompt.fit_messages(messages, sizes, context_length, reply_tokens, chat.get("context_overflow", "truncate"))
    if not fit.dropped:
        return body, None
    body["messages"] = fit.messages
    # Upstream positions to the chat's: a system prompt comes first; the chat's non-objects are skipped.
    positions = [index for index, message in enumerate(chat["messages"]) if isinstance(message, dict)]
    shift = len(messages) - len(positions)
    left_out = [positions[fit.dropped.start - shift], positions[fit.dropped.stop - 1 - shift]]
    return body, {"left_out": left_out, "prompt_tokens": fit.prompt_tokens, "context_length": context_length}
