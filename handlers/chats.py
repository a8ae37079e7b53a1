"""The chat REST routes: thin handlers that validate, call the store, and shape the answer."""

from __future__ import annotations

from . import params
from .base import BaseHandler
from .errors import ApiError
from .turns import run_turn

SEARCH_LIMIT = 50
SEARCH_LIMIT_MAX = 500


class ChatListHandler(BaseHandler):
    """GET /chats: every chat, by name; ``?sort=recent``: newest activity first, pinned first,
    archived left out (``&archived=true``: in; ``only``); with ``?q=words``, the chats that
    hold them, best first."""

    route = "/chats"

    async def get(self) -> None:
        query = self.text_argument("q")
        sort, archived = self.text_argument("sort"), self.text_argument("archived")
        if query is not None and query.strip():
            if sort is not None or archived is not None:
                raise ApiError(400, "'sort' and 'archived' do not apply to a search (?q=): it lists every chat that matches, best first")
            limit = self.integer_argument("limit", SEARCH_LIMIT, 1, SEARCH_LIMIT_MAX)
            self.success(chats=await self.store.search(query, limit))
            return
        chats = await self.store.list_chats_json(*params.listing_view(sort, archived))
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(b'{"status": "success", "chats": ' + chats + b"}")


class ChatHandler(BaseHandler):
    """GET, POST, PATCH and DELETE /chat; PUT /chat, the streamed turn."""

    route = "/chat"

    async def get(self) -> None:
        self.success(chat=await self.store.get(self.chat_name_argument()))

    async def post(self) -> None:
        """Create a chat; without a ``name``, under one of its own (answered as ``name``)."""
        body = self.json_body()
        name = self.chat_name(body) if body.get("name") is not None else None
        settings = {
            "model": params.text(body, "model"),
            "temperature": params.number(body, "temperature", 0.7, 0, 2),
            "max_tokens": params.max_tokens(body),
        }
        if name is None:
            name, chat = await self.store.create_named(**settings)
            self.log_chat = name
        else:
            chat = await self.store.create(name, **settings)
        self.success(message=f"Chat '{name}' created", name=name, chat=chat)

    async def put(self) -> None:
        body = self.json_body()
        name = self.chat_name(body)
        message = params.message(body, self.config.max_message_size)
        await run_turn(self, name, {"append": message}, body)

    async def patch(self) -> None:
        """Rename, change settings, title, pin, archive: ``{name, new_name?, model?,
        temperature?, max_tokens?, system_prompt?, title?, pinned?, archived?}``. A rename or
        a setting waits for a running turn on the chat, like turns do; a title, a pin or an
        archive alone is one change that can be made beside a turn, and does not wait."""
        body = self.json_body()
        name = self.chat_name(body)
        new_name = params.optional_text(body, "new_name")
        settings = params.settings(body, self.config.max_message_size)
        changes = {**settings, **params.marks(body)}
        if new_name is None and not changes:
            raise ApiError(
                400,
                "Nothing to change: give 'new_name', 'model', 'temperature', 'max_tokens', 'system_prompt', 'title', 'pinned' or 'archived'",
            )
        if new_name is None and not settings:
            chat = await self.store.update_settings(name, changes)  # a running turn does not mind
        else:
            async with self.store.hold(name):
                chat = await self.store.update_settings(name, changes) if changes else await self.store.get(name)
                if new_name is not None and new_name != name:
                    await self.store.rename(name, new_name)
                    name = new_name
        self.success(message=f"Chat '{name}' updated", name=name, chat=chat)

    async def delete(self) -> None:
        name = self.chat_name_argument()
        await self.store.delete(name)
        self.success(message=f"Chat '{name}' deleted")


class MessageHandler(BaseHandler):
    """DELETE /chat/message removes one; PUT edits one (``rerun``: and asks for a new reply)."""

    route = "/chat/message"

    async def delete(self) -> None:
        body = self.json_body()
        name = self.chat_name(body)
        index = params.integer(body, "index")
        removed = await self.store.remove_message(name, index)
        self.success(message=f"Message at index {index} deleted", removed_message=removed)

    async def put(self) -> None:
        body = self.json_body()
        name = self.chat_name(body)
        index = params.index(body)
        content = params.content(body, "content", self.config.max_message_size)
        if params.flag(body, "rerun"):
            await run_turn(self, name, {"rerun": [index, content]}, body)
            return
        async with self.store.hold(name):
            chat = await self.store.edit_message(name, index, content)
        self.success(message=f"Message at index {index} edited", chat=chat)
