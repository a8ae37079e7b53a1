"""``--workers N``: N server processes sharing one listening socket, and their supervisor.

The supervisor binds the socket, forks the workers (each runs the whole server on its own
event loop, with the socket it inherited: the kernel hands each new connection to one of
them), and then only watches them. Workers run in a process group of their own, so a Ctrl-C
in the terminal reaches the supervisor alone, which passes each SIGINT/SIGTERM on: the first
lets the workers' streams finish within ``shutdown.grace``, a second ends them now, as for a
single process. A worker that dies of anything else is started again (at most once every
``RESTART_DELAY_S``). Metrics are counted across all workers (prometheus_client's
multiprocess mode, in a temporary folder that lives as long as the supervisor).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import tempfile
import time
from typing import Callable

log = logging.getLogger("chatproxy")

RESTART_DELAY_S = 1.0
PR_SET_PDEATHSIG = 1  # prctl(2)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Supervisor:
    def __init__(self, count: int, run_worker: Callable[[int], int]) -> None:
        self._count = count
        self._run_worker = run_worker  # runs in the child: the worker's number -> exit code
        self._children: dict[int, int] = {}  # pid -> worker number
        self._signals: list[int] = []
        self._started_at: dict[int, float] = {}

    def run(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        for number in range(self._count):
            self._spawn(number)
        log.info("Started %d workers (pids %s)", self._count, ", ".join(map(str, self._children)))
        failed = False
        while self._children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            number = self._children.pop(pid, None)
            if number is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self._signals:
                failed |= code != 0
                continue
            log.error("Worker %d (pid %d) stopped with exit code %d; starting it again", number, pid, code)
            time.sleep(max(0.0, RESTART_DELAY_S - (time.monotonic() - self._started_at.get(number, 0))))
            if not self._signals:  # a stop that came during the pause: no new worker
                self._spawn(number)
        return 1 if failed else 0

    def _spawn(self, number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.setpgid(0, 0)  # the terminal's Ctrl-C goes to the supervisor alone
                stop_with_parent()
                for signum in STOP_SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                # Held until the worker's loop can handle them (chatproxy.signalled), so a
                # stop that comes while it starts is not a kill.
                signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
                code = self._run_worker(number)
            except BaseException:
                log.exception("Worker %d failed", number)
            finally:
                logging.shutdown()
                os._exit(code)
        self._children[pid] = number
        self._started_at[number] = time.monotonic()

    def _on_signal(self, signum: int, frame) -> None:
        self._signals.append(signum)
        if len(self._signals) == 1:
            log.info("Stopping %d workers (a second Ctrl-C ends their streams now)", len(self._children))
        for pid in list(self._children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass


def stop_with_parent() -> None:
    """Ask the kernel to send this worker SIGTERM if the supervisor dies (Linux): workers
    left behind would hold the port and the chats without anyone to stop them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # elsewhere the workers outlive a killed supervisor
    if os.getppid() == 1:  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


class SharedMetrics:
    """prometheus_client's multiprocess mode for the life of the supervisor: every metric a
    worker counts lands in a file of this folder, and GET /metrics on any worker adds them all."""

    def __enter__(self) -> str:
        self.path = tempfile.mkdtemp(prefix="chatproxy-metrics-")
        return self.path

    def __exit__(self, *exc_info) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
