"""Export and import: one chat as JSON or Markdown, every chat as NDJSON, and imports of the
seed's JSON, our NDJSON and ChatGPT's conversations.json (store/formats.py)."""

from __future__ import annotations

from urllib.parse import quote

from tornado.iostream import StreamClosedError

import jsonbytes
from store import StoreError, formats

from .base import BaseHandler
from .errors import ApiError, status_for_store_error

# Chats per trip to the store's threads while exporting: memory stays flat.
EXPORT_BATCH = 100


def attachment(file_name: str) -> str:
    """A Content-Disposition that survives any chat name (RFC 6266 with RFC 8187's filename*)."""
    fallback = "".join(c if c.isascii() and c.isalnum() or c in "-_. " else "_" for c in file_name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


class ChatExportHandler(BaseHandler):
    """GET /chat/export?name=&format=json|markdown"""

    route = "/chat/export"

    async def get(self) -> None:
        name = self.chat_name_argument()
        kind = self.text_argument("format") or "json"
        if kind not in ("json", "markdown"):
            raise ApiError(400, "'format' must be 'json' or 'markdown'")
        chat = await self.store.get(name)
        if kind == "json":
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.set_header("Content-Disposition", attachment(f"{name}.json"))
            self.finish(jsonbytes.dumps(chat, indent=True))
        else:
            self.set_header("Content-Type", "text/markdown; charset=UTF-8")
            self.set_header("Content-Disposition", attachment(f"{name}.md"))
            self.finish(formats.to_markdown(name, chat).encode("utf-8", "replace"))  # a lone surrogate: U+FFFD


class ChatsExportHandler(BaseHandler):
    """GET /chats/export: every chat, one ``{"name", "chat"}`` JSON line each, streamed."""

    route = "/chats/export"

    async def get(self) -> None:
        chats = await self.store.list_chats()
        self.set_header("Content-Type", "application/x-ndjson; charset=UTF-8")
        self.set_header("Content-Disposition", attachment("chats.ndjson"))
        try:
            for start in range(0, len(chats), EXPORT_BATCH):
                batch = [chat["name"] for chat in chats[start : start + EXPORT_BATCH]]
                self.write(await self.store.export_lines(batch))
                await self.flush()  # waits for a slow client: no more than a batch is held
        except StreamClosedError:
            return  # the client left: nothing to finish
        self.finish()


class ImportHandler(BaseHandler):
    """POST /chats/import: every chat in the upload is created, under a free name (a taken
    one gets a suffix, never overwritten); a bad item is reported by position, the rest
    are imported. ``?name=`` names a single seed-format chat."""

    route = "/chats/import"

    @property
    def body_limit(self) -> int:
        return self.config.max_import_size

    async def post(self) -> None:
        body = self.take_body()  # a large upload is not copied
        if not body.strip():
            raise ApiError(400, "Request body is empty: expected chats to import")
        try:
            items = formats.parse_import(body, self.text_argument("name"))
        except ValueError as error:
            raise ApiError(400, f"Nothing to import: {error}") from None
        del body
        imported, errors = [], []
        for item in items:
            if item.error is not None:
                errors.append({"position": item.position, "name": item.name, "message": item.error})
                continue
            try:
                name = await self.store.create_unique(item.name, item.chat)
            except StoreError as error:
                if status_for_store_error(error) != 400:
                    raise  # the disk, not the item: stop here
                errors.append({"position": item.position, "name": item.name, "message": str(error)})
                continue
            imported.append({"position": item.position, "name": name})
        self.success(
            message=f"Imported {len(imported)} chat(s), {len(errors)} could not be",
            imported=imported,
            errors=errors,
        )
