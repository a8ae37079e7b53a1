"""Holding a chat across processes, and the turn that runs while it is held (folder engine).

A chat is held through the ``flock`` on its ``.locks/<stem>.turn`` (turnfile.py), for a
whole turn or change; the file's content is the journal of the turn. A turn goes:
- begin: the chat is marked running with the turn (running.py) and its new message stored:
  one durable write; the journal is not touched;
- journal: while the reply grows, about once a second, the reply so far replaces the
  journal's, without fsync;
- end: the reply stored and the mark removed (one durable write), then the journal cleared
  if there is one; if that write fails, the reply goes to the journal for the next holder.
A holder killed on the way leaves its journal and its chat marked running; the next holder
(or recover() at start-up) settles the turn: the journaled reply stored as interrupted, the
mark removed. It happens once: a journal whose turn the chat is no longer marked with (the
kill came after end's write) is only cleared.

A marked chat's turn is live while its turn file is held: by this process (``_held``), or by
another (the flock cannot be had). A turn file is removed only by its holder, when its chat
is gone (deleted or renamed meanwhile), or after a delete or rename when nobody holds it.
Blocking code for the thread pool, except take, needs_settling and release: a few system
calls each, made on the event loop.
"""

from __future__ import annotations

import logging
import os
from contextlib import suppress
from typing import Callable

from . import chatfile, files, names, running
from .errors import ChatNotFound, StoreError, storage_errors
from .folder import ChatFolder
from .turnfile import SUFFIX, TurnFile

log = logging.getLogger("chatproxy.store")


class TurnFileMissing(Exception):
    """The chat has no turn file yet (Holds.take with ``make`` false)."""


class Holds:
    def __init__(self, folder: ChatFolder) -> None:
        self._folder = folder
        self._held: dict[str, TurnFile] = {}  # stem -> the turn file this process holds

    # -- holding ---------------------------------------------------------------------------

    def take(self, name: str, make: bool = True) -> bool:
        """Hold the chat if nobody does (this call never waits); whether it was had. With
        ``make`` false the turn file is not made: TurnFileMissing (make_turn_file, on the pool)."""
        stem = names.stem_for(name)
        with storage_errors(f"holding chat '{name}'"):
            try:
                turn_file = TurnFile.take(self._turn_path(stem), self._folder.recreate_folder, make)
            except FileNotFoundError:
                if make:
                    raise
                raise TurnFileMissing(name) from None
        if turn_file is None:
            return False
        self._held[stem] = turn_file
        return True

    def make_turn_file(self, name: str) -> None:
        """The chat's turn file, made if missing (and the folders with it, if cleared)."""
        with storage_errors(f"holding chat '{name}'"):
            files.make_file(self._turn_path(names.stem_for(name)), self._folder.recreate_folder)

    def needs_settling(self, name: str) -> bool:
        """Whether the held chat may hold a turn a stopped holder left (see settle)."""
        with storage_errors(f"holding chat '{name}'"):
            return self._held_file(name).has_journal() or self._folder.is_marked(names.file_name_for(name))

    def settle(self, name: str) -> bool:
        """Finish the turn a stopped holder left on the held chat; whether the chat changed."""
        turn_file = self._held_file(name)
        with storage_errors(f"reading the turn journal of chat '{name}'"):
            journal = turn_file.read()
        try:
            marked = running.MARKER in self._folder.read(name)
        except ChatNotFound:
            marked = False
        if marked:
            self._folder.update(name, chatfile.changed_by(running.settle, journal))
            log.warning("Chat '%s': stored the turn a stopped process left unfinished", name)
        with storage_errors(f"clearing the turn journal of chat '{name}'"):
            turn_file.clear()
        return marked

    def release(self, name: str) -> None:
        """Let go of the chat (its turn file goes too if the chat is gone)."""
        stem = names.stem_for(name)
        self._release(self._held.pop(stem), stem)

    def is_live(self, file_name: str) -> bool:
        """Whether a turn on the chat in ``file_name`` can be running: the chat is held."""
        stem = file_name.removesuffix(names.SUFFIX)
        if stem in self._held:
            return True
        try:
            return files.is_locked(self._turn_path(stem))
        except OSError:
            return False

    def discard(self, name: str) -> None:
        """After a delete or a rename: the chat's turn file goes, unless it is held (its holder
        then removes it on release)."""
        stem = names.stem_for(name)
        try:
            turn_file = TurnFile.take(self._turn_path(stem))
        except OSError:
            return  # no .locks folder (cleared by hand), or none we may open: nothing to remove
        if turn_file is not None:
            self._release(turn_file, stem)

    # -- the turn --------------------------------------------------------------------------

    def begin_turn(self, name: str, plan: dict, turn: dict, ready: Callable[[dict], None]) -> None:
        """``ready`` gets the changed chat before it is written (its caller asks LM Studio
        meanwhile); returning means it is durable."""
        turn_file = self._held_file(name)
        try:
            self._folder.update(name, running.beginning(plan, turn, ready))
        except StoreError:
            # Nothing began. (Had the folder's fsync failed after the rename, the chat is
            # marked by a turn that is not live: never shown, settled by the next holder.)
            with suppress(OSError):
                turn_file.clear()
            raise

    def journal_turn(self, name: str, turn_id: object, reply: dict) -> None:
        with storage_errors(f"journaling the reply to chat '{name}'"):
            self._held_file(name).write({"name": name, "turn": turn_id, "reply": reply})

    def end_turn(self, name: str, turn_id: object, reply: dict | None) -> None:
        turn_file = self._held_file(name)

        def finish(chat: dict) -> None:
            if not running.end(chat, turn_id, reply):
                raise ChatNotFound(name)  # deleted (and maybe made again) during the turn

        try:
            self._folder.update(name, finish)
        except ChatNotFound:
            with suppress(OSError):
                turn_file.clear()
            raise
        except StoreError:
            # The reply goes to the journal: the next holder stores it (settle), once the
            # disk is back. (A kill during the write finds the journal of a second before.)
            if reply is not None:
                with suppress(StoreError):
                    self.journal_turn(name, turn_id, reply)
            raise
        if turn_file.has_record():
            with storage_errors(f"clearing the turn journal of chat '{name}'"):
                turn_file.clear()

    def recover(self) -> int:
        """At start-up: settle every turn stopped processes left on the folder (a journal, or a
        chat still marked running whose turn is not live), and remove the turn files of chats
        that are gone. Returns how many chats got their turn finished."""
        with storage_errors("looking for turns stopped processes left"):
            turn_files = {entry.name.removesuffix(SUFFIX): entry for entry in os.scandir(self._folder.lock_dir) if entry.name.endswith(SUFFIX)}
            stems = {stem for stem, entry in turn_files.items() if entry.stat().st_size or not self._folder.exists(stem + names.SUFFIX)}
            stems.update(file_name.removesuffix(names.SUFFIX) for file_name in self._folder.marked())
        finished = 0
        for stem in sorted(stems):
            name = names.name_for(stem + names.SUFFIX)
            if name is None or stem in self._held or not self.take(name):
                continue  # not a chat's, or held: its turn is live
            try:
                if self.needs_settling(name) and self.settle(name):
                    finished += 1
            except StoreError as error:
                log.error("Could not finish the turn a stopped process left on chat '%s': %s", name, error)
            finally:
                self.release(name)
        if finished:
            log.info("Stored %d turn(s) that stopped processes left unfinished", finished)
        return finished

    # -- internals -------------------------------------------------------------------------

    def _held_file(self, name: str) -> TurnFile:
        turn_file = self._held.get(names.stem_for(name))
        if turn_file is None:
            raise RuntimeError(f"Chat '{name}' is not held here: turns run inside ChatStore.hold()")
        return turn_file

    def _release(self, turn_file: TurnFile, stem: str) -> None:
        try:
            turn_file.release(remove=not self._folder.exists(stem + names.SUFFIX))
        except OSError as error:
            log.warning("Could not remove the turn file %s: %s", turn_file.path, error)

    def _turn_path(self, stem: str) -> str:
        return f"{self._folder.lock_dir}/{stem}{SUFFIX}"
