"""Fixtures: a fake LM Studio and the real chatproxy app, each on its own 127.0.0.1 socket,
the app's chats on the folder or, in modules marked ``both_engines``, on PostgreSQL too
(tests/engines.py)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatproxy import make_app, make_services  # noqa: E402
from config import Config  # noqa: E402
from handlers.streams import SHUTTING_DOWN  # noqa: E402
from tests.engines import engine, instance_settings, parametrize_engines, store_url, stored  # noqa: E402,F401
from tests.fake_lmstudio import FakeLMStudio  # noqa: E402
from tests.helpers import serve_app  # noqa: E402
from tests.postgres import empty_postgres_url, own_postgres_server, pg_conn, postgres_server, postgres_url  # noqa: E402,F401


def pytest_generate_tests(metafunc) -> None:
    parametrize_engines(metafunc)


@pytest.fixture
def fake(io_loop, request) -> FakeLMStudio:
    lmstudio = FakeLMStudio()
    lmstudio.url = serve_app(io_loop, request, lmstudio.app())
    return lmstudio


@pytest.fixture
def chats_dir(tmp_path) -> Path:
    return tmp_path / "chats"


@pytest.fixture
def config(fake, chats_dir, store_url, request) -> Config:
    marker = request.node.get_closest_marker("config")
    overrides = marker.kwargs if marker else {}
    # No background title requests (turns/titles.py) unless a test asks: they would take
    # the replies other tests script for the fake.
    return dataclasses.replace(
        Config(lm_studio_url=fake.url, chats_dir=str(chats_dir), store_url=store_url, model_titles=False), **overrides
    )


@pytest.fixture
def services(config, io_loop):
    services = make_services(config)
    services.store.open()  # as chatproxy.main does, once
    io_loop.run_sync(services.store.start)
    yield services

    async def stop() -> None:  # as the server stops: turns a test left running end first
        services.streams.abort_all(SHUTTING_DOWN)
        await services.streams.wait_idle(5)
        services.upstreams.close()
        await services.store.close()

    io_loop.run_sync(stop)


@pytest.fixture
def proxy(io_loop, request, services) -> str:
    """The base URL of a running chatproxy app."""
    return serve_app(io_loop, request, make_app(services))


@pytest.fixture
def project_root() -> Path:
    return ROOT


@pytest.fixture
def clean_env() -> dict[str, str]:
    """The environment for a chatproxy subprocess, free of this machine's chatproxy settings."""
    names = ("LM_STUDIO_URL", "CHATS_DIR", "CHATPROXY_")
    return {key: value for key, value in os.environ.items() if not key.startswith(names)}
