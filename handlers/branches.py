"""Regenerating a reply and moving between the branches a chat keeps (store/history.py)."""

from __future__ import annotations

from . import params
from .base import BaseHandler
from .turns import run_turn


class RegenerateHandler(BaseHandler):
    """POST /chat/regenerate ``{name}``: a new reply to the last user message; the reply it
    replaces is kept as an alternative."""

    route = "/chat/regenerate"

    async def post(self) -> None:
        body = self.json_body()
        await run_turn(self, self.chat_name(body), {"regenerate": True}, body)


class BranchesHandler(BaseHandler):
    """GET /chat/branches?name=: where the current branch has alternatives, and which."""

    route = "/chat/branches"

    async def get(self) -> None:
        self.success(branches=await self.store.branches(self.chat_name_argument()))


class BranchHandler(BaseHandler):
    """POST /chat/branch ``{name, index, alternative}``: make that alternative current."""

    route = "/chat/branch"

    async def post(self) -> None:
        body = self.json_body()
        name = self.chat_name(body)
        index, alternative = params.index(body), params.index(body, "alternative")
        async with self.store.hold(name):
            chat = await self.store.switch_branch(name, index, alternative)
        self.success(message=f"Alternative {alternative} at message {index} is current", chat=chat)
