"""Copying every chat from one store to another: ``python chatproxy.py migrate --from A --to B``
(a chats folder to PostgreSQL, or back).

Chats are read from the source in batches of BATCH (its export: the chats without running
marks) and added to the target under the same names, as they are, ADDING_AT_ONCE at a time. Safe to run again: a
chat the target already holds, equal, is left; one it holds under that name with other
content is reported and left (never overwritten). A chat whose turn is running is left for
the next run. At the end every chat of the source is read again from both stores and
compared as parsed JSON: what differs is reported by chat, never changed quietly.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Callable

import jsonbytes

from .engine import Store
from .errors import ChatExists, StorageFailure, StoreError

BATCH = 500
# Chats added at once: on PostgreSQL each is a transaction waiting for the disk, and the
# server writes those of several connections with one flush.
ADDING_AT_ONCE = 8


@dataclass
class Report:
    source_chats: int = 0
    copied: int = 0
    already_there: int = 0
    left: dict[str, str] = field(default_factory=dict)  # chat -> why it was not copied
    differing: list[str] = field(default_factory=list)  # copied, but read back otherwise
    target_chats: int = 0

    @property
    def complete(self) -> bool:
        return not self.left and not self.differing

    def lines(self) -> list[str]:
        out = [
            f"{self.source_chats} chat(s) in the source: {self.copied} copied, {self.already_there} already there,"
            f" {len(self.left)} left out; {self.target_chats} in the target",
        ]
        out += [f"  left out: {name!r}: {why}" for name, why in sorted(self.left.items())]
        out += [f"  differs in the target once copied: {name!r}" for name in self.differing]
        out.append("Verified: every chat of the source is in the target, equal." if self.complete else "Not complete: see above.")
        return out


def same(first: dict, second: dict) -> bool:
    """Equal as parsed JSON, key order aside (NaN equal to NaN, unlike ``==``)."""
    return json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


async def copy_chats(source: Store, target: Store, progress: Callable[[str], None] = lambda line: None) -> Report:
    report = Report()
    await source.recover()  # turns that stopped processes left: their replies stored first
    listing = await source.list_chats()
    report.source_chats = len(listing)
    for start in range(0, len(listing), BATCH):
        batch = listing[start : start + BATCH]
        for summary in batch:
            if summary.get("running"):
                report.left[summary["name"]] = "a turn is running on it: run the migration again once it has ended"
        chats = await _read(source, [summary["name"] for summary in batch if not summary.get("running")])
        for summary in batch:
            name = summary["name"]
            if name not in chats and name not in report.left:
                report.left[name] = "it could not be read (damaged, or deleted meanwhile): see the log"
        items = list(chats.items())
        for first in range(0, len(items), ADDING_AT_ONCE):
            await asyncio.gather(*(_add(target, name, chat, report) for name, chat in items[first : first + ADDING_AT_ONCE]))
        progress(f"{min(start + BATCH, len(listing))}/{len(listing)} chats")
    await _verify(source, target, [summary["name"] for summary in listing if summary["name"] not in report.left], report)
    report.target_chats = await target.count_chats()
    return report


async def _read(store: Store, chat_names: list[str]) -> dict[str, dict]:
    lines = await store.export_lines(chat_names)
    return {item["name"]: item["chat"] for item in map(jsonbytes.loads, lines.splitlines())}


async def _add(target: Store, name: str, chat: dict, report: Report) -> None:
    try:
        await target.add(name, chat)
        report.copied += 1
    except ChatExists:
        there = (await _read(target, [name])).get(name)
        if there is not None and same(there, chat):
            report.already_there += 1
        else:
            report.left[name] = "the target holds another chat of this name: left as it is"
    except StorageFailure:
        raise  # the target itself failed (a full disk, the database away): stop here
    except StoreError as error:  # the chat: a value the target cannot hold
        report.left[name] = str(error)


async def _verify(source: Store, target: Store, chat_names: list[str], report: Report) -> None:
    for start in range(0, len(chat_names), BATCH):
        batch = chat_names[start : start + BATCH]
        originals, copies = await _read(source, batch), await _read(target, batch)
        for name, chat in originals.items():
            if name not in copies or not same(chat, copies[name]):
                report.differing.append(name)
