"""``python chatproxy.py migrate --from STORE --to STORE``: every chat copied from one store to
another (a chats folder, or a ``postgresql://`` URL), safe to run again, verified at the end
(store/move.py). Exit code 0 when every chat is in the target, equal; 1 when some are not
(each named, with why); 2 when a store cannot be used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Sequence

from store import StoreError, is_postgres_url, store_at
from store.move import copy_chats


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="chatproxy.py migrate",
        description="Copy every chat from one store to another (a chats folder, or a postgresql:// URL); "
        "safe to run again; verified at the end. Stop the chatproxy servers on the source first.",
    )
    parser.add_argument("--from", dest="source", required=True, metavar="STORE", help="where the chats are")
    parser.add_argument("--to", dest="target", required=True, metavar="STORE", help="where to copy them")
    places = parser.parse_args(argv)
    if places.source == places.target:
        parser.error("--from and --to name the same store")
    if not is_postgres_url(places.source) and not os.path.isdir(places.source):
        parser.error(f"--from: there is no chats folder at {places.source}")
    source, target = store_at(places.source), store_at(places.target)

    async def run() -> int:
        try:
            report = await copy_chats(source, target, lambda line: print(line, flush=True))
        finally:
            await source.close()
            await target.close()
        print("\n".join(report.lines()))
        return 0 if report.complete else 1

    try:
        source.open()
        target.open()
        return asyncio.run(run())
    except StoreError as error:
        print(f"chatproxy: {error}", file=sys.stderr)
        return 2
