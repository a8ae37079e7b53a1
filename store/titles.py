"""A chat's title, and who set it: pure rules on a chat dict, shared by the engines.

``title`` is what a list shows for the chat (its ``name`` is its id); ``title_source`` says
who wrote it: ``"message"`` (the first line of the first user message, when the first turn
begins), ``"model"`` (the model's own title, asked once the first reply is stored) or
``"user"`` (PATCH /chat). The model never overwrites a user's title, and improves only a
title taken from the message.
"""

from __future__ import annotations

import re

TITLE, SOURCE = "title", "title_source"
FROM_MESSAGE, FROM_MODEL, FROM_USER = "message", "model", "user"
# About what a list row shows; a user's own title may be longer.
SHORT_TITLE_CHARS = 60
MAX_TITLE_CHARS = 200

_SPACES = re.compile(r"\s+")
# What models wrap a title in: quotes, Markdown emphasis or heading marks, "Title:".
_DECORATION = re.compile(r'^(?:[#*_`"\'“”‘’«»\s]|title\s*:)+|[*_`"\'“”‘’«»\s.]+$', re.IGNORECASE)


def one_line(text: str) -> str:
    """``text`` with every run of white space (newlines included) made one space."""
    return _SPACES.sub(" ", text).strip()


def shortened(text: str, limit: int = SHORT_TITLE_CHARS) -> str | None:
    """The first line of ``text`` that says something, at most ``limit`` characters (cut at a
    word when one ends late enough, with "…"); None when there is none."""
    line = next((one_line(line) for line in text.splitlines() if line.strip()), "")
    if not line:
        return None
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"


def from_model(answer: str) -> str | None:
    """The title in a model's answer (its reasoning already taken out): the first line, its
    quotes and "Title:" taken off, shortened."""
    line = next((line for line in answer.splitlines() if _DECORATION.sub("", line)), "")
    return shortened(_DECORATION.sub("", line))


def name_from_first_message(chat: dict) -> None:
    """A chat without a title gets the first line of its first user message that has one."""
    if isinstance(chat.get(TITLE), str):
        return
    for message in chat["messages"]:
        if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
            title = shortened(message["content"])
            if title is not None:
                chat[TITLE], chat[SOURCE] = title, FROM_MESSAGE
                return


def set_by_user(chat: dict, title: str | None) -> None:
    """The user's title; None takes it away (the first message's is used again)."""
    chat.pop(TITLE, None)
    chat.pop(SOURCE, None)
    if title is None:
        name_from_first_message(chat)
    else:
        chat[TITLE], chat[SOURCE] = title, FROM_USER


def model_may_improve(chat: dict) -> bool:
    """Whether the model's title would replace the chat's: only one taken from the message."""
    return chat.get(SOURCE) == FROM_MESSAGE


def set_by_model(chat: dict, title: str) -> None:
    if model_may_improve(chat):
        chat[TITLE], chat[SOURCE] = title, FROM_MODEL


def wants_model_title(chat: dict) -> bool:
    """Whether the reply about to be stored on ``chat`` (as its turn began) is its first,
    and its title is the message's: then the model is asked for a better one."""
    if not model_may_improve(chat):
        return False
    return not any(isinstance(message, dict) and message.get("role") == "assistant" for message in chat["messages"])
