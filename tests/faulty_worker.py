"""The store's worker with file operations that fail on request, for the fault tests.

    python -m tests.faulty_worker PLAN_FILE DIRECTORY LOG_FORMAT

Before each file operation of store/files.py it reads PLAN_FILE (when it exists):
``{"step": STEP, "errno": N}`` makes that step fail with that errno; ``{"step": STEP,
"delay": S}`` makes it take S seconds longer. Steps: temp_create, write, fsync, rename,
folder_fsync, lock_open. Everything else is the real worker.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time

from store import files, worker


class FaultyOs:
    """``os`` as store/files.py sees it, with the planned fault."""

    def __init__(self, plan_path: str) -> None:
        self.plan_path = plan_path

    def __getattr__(self, name: str):
        return getattr(os, name)

    def _maybe_fail(self, step: str) -> None:
        try:
            with open(self.plan_path) as plan_file:
                plan = json.load(plan_file)
        except FileNotFoundError:
            return
        if plan["step"] != step:
            return
        if "delay" in plan:
            time.sleep(plan["delay"])
        else:
            raise OSError(plan["errno"], os.strerror(plan["errno"]))

    def open(self, path, flags, mode=0o777):
        name = os.fspath(path)
        if name.endswith(files.TEMP_SUFFIX):
            self._maybe_fail("temp_create")
        elif name.endswith(".lock"):
            self._maybe_fail("lock_open")
        return os.open(path, flags, mode)

    def write(self, fd, data):
        self._maybe_fail("write")
        return os.write(fd, data)

    def fsync(self, fd):
        self._maybe_fail("folder_fsync" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync")
        return os.fsync(fd)

    def replace(self, source, target):
        self._maybe_fail("rename")
        return os.replace(source, target)


if __name__ == "__main__":
    files.os = FaultyOs(sys.argv[1])
    worker.main(sys.argv[2:])
