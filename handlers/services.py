"""Services: what handlers need, handed to each through ``initialize`` from the route table."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from config import Config
from lmstudio import Upstreams
from store import Store
from turns import TurnRegistry

from .metrics import Metrics
from .peers import Peers
from .streams import StreamRegistry


@dataclass
class Services:
    config: Config
    store: Store
    upstreams: Upstreams
    streams: StreamRegistry
    metrics: Metrics
    turns: TurnRegistry
    # Where other chatproxy processes reach this one for the turns it runs (None: nowhere).
    owner: str | None = None
    peers: Peers = field(default_factory=Peers)
    started_at: float = field(default_factory=time.monotonic)
