"""Two fake upstreams as [[upstreams]], for the tests of several upstreams: a module that
imports ``config`` and ``fakes`` from here runs its app against them instead of the one fake."""

from __future__ import annotations

import pytest

from config import Config, UpstreamSettings
from tests.fake_lmstudio import FakeLMStudio
from tests.helpers import closed_port_url, serve_app


@pytest.fixture
def fakes(io_loop, request) -> dict[str, FakeLMStudio]:
    """laptop: LM Studio offering "a" and "shared"; gpu: llama.cpp offering "b" and "shared"."""
    made = {}
    for name, flavor, models in (("laptop", "lmstudio", ["a", "shared"]), ("gpu", "llama.cpp", ["b", "shared"])):
        fake = FakeLMStudio()
        fake.flavor, fake.models = flavor, models
        fake.url = serve_app(io_loop, request, fake.app())
        made[name] = fake
    return made


@pytest.fixture
def config(fakes, chats_dir, request) -> Config:
    """Both fakes as [[upstreams]]; ``@pytest.mark.config(down=True)`` adds one nothing listens for,
    ``api_keys={NAME: KEY}`` gives upstreams their keys."""
    marker = request.node.get_closest_marker("config")
    options = dict(marker.kwargs) if marker else {}
    options.setdefault("model_titles", False)  # as in tests/conftest.py: no background title requests
    keys = options.pop("api_keys", {})
    upstreams = [UpstreamSettings(name, fake.url, api_key=keys.get(name)) for name, fake in fakes.items()]
    if options.pop("down", False):
        upstreams.append(UpstreamSettings("down", closed_port_url()))
    return Config(chats_dir=str(chats_dir), upstreams=tuple(upstreams), **options)


def upstream(services, name):
    return next(member for member in services.upstreams if member.name == name)


def take_down(services, name) -> str:
    """The upstream stops listening after its model list was read (its port closes)."""
    url = closed_port_url()
    upstream(services, name).base_url = url
    return url
