"""The chat REST routes: thin handlers that validate, call the store, and shape the answer."""

from __future__ import annotations

from . import params
from .base import BaseHandler
from .errors import ApiError
from .turn import ChatTurnHandler


class ChatListHandler(BaseHandler):
    route = "/chats"

    async def get(self) -> None:
        chats = await self.store.list_chats_json()
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(b'{"status": "success", "chats": ' + chats + b"}")


class ChatHandler(ChatTurnHandler):
    """GET, POST and DELETE /chat here; PUT /chat (the streamed turn) in turn.py."""

    route = "/chat"

    async def get(self) -> None:
        self.success(chat=await self.store.get(self._name_argument()))

    async def post(self) -> None:
        body = self.json_body()
        name = self.log_chat = params.text(body, "name")
        chat = await self.store.create(
            name,
            model=params.text(body, "model"),
            temperature=params.number(body, "temperature", 0.7, 0, 2),
            max_tokens=params.max_tokens(body),
        )
        self.success(message=f"Chat '{name}' created", chat=chat)

    async def delete(self) -> None:
        name = self._name_argument()
        await self.store.delete(name)
        self.success(message=f"Chat '{name}' deleted")

    def _name_argument(self) -> str:
        """``?name=`` as in the original server; a JSON body's ``name`` also works for DELETE."""
        # Not get_query_argument: it turns control characters into spaces, and a name must
        # reach the store exactly as it was created.
        values = self.request.query_arguments.get("name")
        try:
            name = values[-1].decode("utf-8") if values else None
        except UnicodeDecodeError:
            raise ApiError(400, "'name' is not valid UTF-8") from None
        if name is None and self.body:
            return params.text(self.json_body(), "name")
        if not name:
            raise ApiError(400, "'name' is required (?name=...)")
        self.log_chat = name
        return name


class MessageHandler(BaseHandler):
    route = "/chat/message"

    async def delete(self) -> None:
        body = self.json_body()
        name = self.log_chat = params.text(body, "name")
        index = params.integer(body, "index")
        removed = await self.store.remove_message(name, index)
        self.success(message=f"Message at index {index} deleted", removed_message=removed)
