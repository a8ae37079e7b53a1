"""chatproxy: keeps your LM Studio conversations and streams the replies.

Entry point: flags -> config -> app -> listen -> graceful stop.
    python chatproxy.py --port 8080
    python chatproxy.py migrate --from ./chats --to postgresql://user@host/db   (and back)
"""

from __future__ import annotations

import asyncio
import errno
import gc
import ipaddress
import logging
import os
import resource
import signal
import socket
import sys
from typing import Any, Coroutine, Mapping, Sequence
from urllib.parse import urlsplit

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

import migrate
from config import Config, ConfigError, load_config
from handlers import Metrics, NotFoundHandler, Services, __version__, routes
from handlers.metrics import count_across_processes
from handlers.streams import SHUTTING_DOWN, StreamRegistry
from lmstudio import Upstreams
from logs import configure_logging, log_request
from store import Store, StoreError, store_at
from turns import TurnRegistry
from turns.titles import TitleWriter
from workers import STOP_SIGNALS, SharedMetrics, Supervisor

log = logging.getLogger("chatproxy")

# Headroom over stream.max_concurrent for non-streaming upstream calls.
UPSTREAM_EXTRA_CONNECTIONS = 64
# Tornado's default of 128 drops SYNs when hundreds of browsers (re)connect at once.
LISTEN_BACKLOG = 1024
# Allocations between young collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 10_000
# How long the start-up report waits for the upstreams' model lists.
UPSTREAM_REPORT_WAIT_S = 3.0
# How long aborted streams get to store their partial replies before the process exits.
ABORT_SETTLE_S = 10


def make_app(services: Services) -> Application:
    config = services.config
    return Application(
        routes(services),
        default_handler_class=NotFoundHandler,
        default_handler_args={"services": services},
        cors_origins=config.cors_origins,
        log_function=log_request,
        debug=False,  # --debug means verbose logs, not Tornado's autoreload
    )


def make_store(config: Config) -> Store:
    return store_at(config.store_url or config.chats_dir, pool_size=config.store_pool_size)


def make_services(config: Config) -> Services:
    """Everything a process serves with. Its store is a new object, not opened: ``main``
    opened the same chats once (``Store.open``), before any worker started."""
    store = make_store(config)
    upstreams = Upstreams.build(
        config.upstreams,
        config.lm_studio_url,
        connect_timeout=config.connect_timeout,
        idle_timeout=config.idle_timeout,
        max_requests=config.max_streams + UPSTREAM_EXTRA_CONNECTIONS,
    )
    streams, metrics = StreamRegistry(config.max_streams), Metrics()
    titles = TitleWriter(store, upstreams, enabled=config.model_titles)
    return Services(config, store, upstreams, streams, metrics, TurnRegistry(store, upstreams, streams, metrics, titles))


def raise_open_file_limit() -> None:
    """Each stream holds two sockets; the common soft limit of 1024 would cap us near 500."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def tune_garbage_collector() -> None:
    """Fewer, cheaper collections: a full collection walks every live object, and with a
    thousand open streams that is a pause of tens of milliseconds in every stream at once.
    Objects alive at start-up (modules, the app) are frozen out of collection altogether."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def security_warnings(config: Config) -> list[str]:
    if config.token is None and not is_loopback(config.host):
        return [
            f"Listening on {config.host} without a token: anyone who can reach this address can "
            "read and change every chat. Set auth.token (or CHATPROXY_TOKEN)."
        ]
    return []


async def serve(config: Config, sockets: list[socket.socket], peer_sockets: list[socket.socket] | None = None, worker: int = 0) -> int:
    services = make_services(config)
    await services.store.start()
    # Bodies over the limit are answered 413 by the handlers (they see Content-Length
    # first); this connection-level limit only stops a chunked body that never ends.
    server = HTTPServer(make_app(services), max_body_size=config.max_body_size, xheaders=False)
    server.add_sockets(sockets)
    # Where other chatproxy processes (--workers, other instances on the same chats) reach
    # this one for the turns it runs: server.advertise_url, else a loopback port of its own.
    if config.advertise_url:
        server.add_sockets(peer_sockets or [])
        services.owner = advertised(config.advertise_url, worker)
    else:
        internal = bind_sockets(0, "127.0.0.1")
        server.add_sockets(internal)
        services.owner = "http://127.0.0.1:%d" % internal[0].getsockname()[1]
    services.turns.owner = services.owner
    log.info("Starting Chat Proxy Server %s on %s:%d", __version__, config.host, config.port)
    services.upstreams.start()
    log.info("Event loop: %s", type(asyncio.get_running_loop()).__module__.split(".")[0])
    if config.store_url:
        log.info("Chats: PostgreSQL at %s; other instances reach this one at %s", services.store.where, services.owner)
    else:
        log.info("Chats directory: %s", os.path.abspath(config.chats_dir))
    for warning in security_warnings(config):
        log.warning("%s", warning)
    upstreams_reported = asyncio.ensure_future(report_upstreams(services.upstreams))

    tune_garbage_collector()
    signals = StopSignals()
    await signals.first.wait()
    streams = services.streams
    if streams:
        log.info(
            "Shutting down: no new connections; waiting up to %g s for %d stream(s) to finish "
            "(press Ctrl-C again to end them now; their replies so far are stored)",
            config.shutdown_grace, len(streams),
        )
    else:
        log.info("Shutting down: no stream running")
    server.stop()
    streams.closing = True
    if not await first_of(streams.wait_idle(config.shutdown_grace), signals.again()):
        log.warning("Ending %d stream(s) still running", len(streams))
        streams.abort_all(SHUTTING_DOWN)
        await streams.wait_idle(ABORT_SETTLE_S)
    try:
        await asyncio.wait_for(server.close_all_connections(), ABORT_SETTLE_S)
    except asyncio.TimeoutError:
        log.warning("Some connections did not close in time")
    upstreams_reported.cancel()
    await services.turns.titles.close()
    services.upstreams.close()
    services.peers.close()
    await services.store.close()  # waits for writes in flight
    log.info("Stopped")
    return 0


async def report_upstreams(upstreams) -> None:
    """Say at start-up whether each upstream answered and with how many models, and what to
    do when one did not: the first thing to know when no chat works."""
    await upstreams.checked(UPSTREAM_REPORT_WAIT_S)
    for upstream in upstreams:
        state = upstreams.describe(upstream)
        if state["state"] == "up" and state["models"]:
            shown = ", ".join(state["models"][:5]) + (", …" if len(state["models"]) > 5 else "")
            log.info("Upstream %s at %s answered: %d model(s): %s", upstream.name, upstream.base_url, len(state["models"]), shown)
        elif state["state"] == "up":
            log.warning("Upstream %s at %s answered but offers no model: load one (in LM Studio, or `lms load`)", upstream.name, upstream.base_url)
        else:
            log.warning(
                "Upstream %s at %s did not answer (%s): start its server (LM Studio: Developer tab, or "
                "`lms server start`) or point --lm-studio-url at it; chatproxy keeps trying",
                upstream.name, upstream.base_url, state.get("error", state["state"]),
            )


class PortInUse(OSError):
    pass


def bind(config: Config) -> list[socket.socket]:
    """The listening sockets (before any worker is forked, so that all share them)."""
    return _bind(config.host, config.port, "--port PORT (server.port, CHATPROXY_PORT)")


def bind_peer_sockets(config: Config) -> list[list[socket.socket]]:
    """Each worker's listener for other instances, at the port of ``server.advertise_url``
    plus the worker's number; none when that port is ``server.port`` (one worker: its
    listener is the one the clients use)."""
    port = urlsplit(config.advertise_url).port
    if port == config.port:
        if config.workers > 1:
            raise ConfigError(
                f"server.advertise_url: port {port} is server.port, which {config.workers} workers share;"
                " give another port (each worker listens for other instances on that port + its number)"
            )
        return [[] for _ in range(config.workers)]
    where = "--advertise-url URL (server.advertise_url, CHATPROXY_ADVERTISE_URL)"
    return [_bind(config.host, port + number, where) for number in range(config.workers)]


def advertised(url: str, worker: int) -> str:
    """``url`` with the port of ``worker``: the advertised port plus its number."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.netloc.rsplit(':', 1)[0]}:{parts.port + worker}").geturl() if worker else url


def _bind(host: str, port: int, setting: str) -> list[socket.socket]:
    try:
        return bind_sockets(port, host, backlog=LISTEN_BACKLOG)
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        raise PortInUse(
            f"port {port} on {host} is already in use (another chatproxy, or another "
            f"program, listens there); choose another with {setting}"
        ) from None


class StopSignals:
    """SIGTERM and SIGINT (Ctrl-C), counted from start-up: the first asks for a graceful
    stop, the second for an immediate one (however quickly it follows the first)."""

    def __init__(self) -> None:
        self.first, self.second = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._received)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a worker holds them until now

    def _received(self) -> None:
        (self.second if self.first.is_set() else self.first).set()

    async def again(self) -> bool:
        await self.second.wait()
        return False


async def first_of(*waits: Coroutine[Any, Any, bool]) -> bool:
    """The result of whichever of ``waits`` ends first; the others are cancelled."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return next(iter(done)).result()


def run_event_loop(main_coroutine: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed (not on Windows): the same asyncio API, with the
    polling and socket calls in C, which halves the delay a busy loop adds to each event."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_coroutine)
    return uvloop.run(main_coroutine)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["migrate"]:
        return migrate.main(argv[1:])
    try:
        config = load_config(argv, os.environ if environ is None else environ)
    except ConfigError as error:
        print(f"chatproxy: {error}", file=sys.stderr)
        return 2
    configure_logging(config.debug, config.log_format)
    raise_open_file_limit()
    checked = make_store(config)
    try:  # once, before any worker starts: chats that cannot be kept stop the start here
        checked.open()
    except StoreError as error:
        print(f"chatproxy: {error}", file=sys.stderr)
        return 2 if config.store_url else 1  # a database setting; a folder that cannot be made
    finally:
        # Each process serves with a store of its own (a PostgreSQL owner id is per process):
        # this one lets go of what opening took (the folder's descriptor).
        asyncio.run(checked.close())
    try:
        sockets = bind(config)
        peers = bind_peer_sockets(config) if config.advertise_url else [None] * config.workers
        if config.workers == 1:
            return run_event_loop(serve(config, sockets, peers[0]))
        with SharedMetrics() as metrics_dir:

            def run_worker(number: int) -> int:
                count_across_processes(metrics_dir)
                return run_event_loop(serve(config, sockets, peers[number], number))

            return Supervisor(config.workers, run_worker).run()
    except ConfigError as error:
        print(f"chatproxy: {error}", file=sys.stderr)
        return 2
    except (OSError, StoreError) as error:
        # e.g. the port is taken, the chats folder cannot be created or read at start-up
        print(f"chatproxy: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
