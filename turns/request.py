"""What a turn asks LM Studio: the chat's settings and its current branch, as a streamed
chat completion."""

from __future__ import annotations

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
    return {
        "model": chat.get("model"),
        "messages": messages,
        "temperature": chat.get("temperature", 0.7),
        "max_tokens": chat.get("max_tokens", -1),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
