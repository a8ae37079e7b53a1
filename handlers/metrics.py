"""Prometheus metrics: what is counted (GET /metrics, in monitoring.py, shows it).

One registry per app (not the process-wide default), so each app, and each test, counts
for itself. With ``--workers``, every worker counts into files of one shared folder
(prometheus_client's multiprocess mode) and ``exposition()`` on any of them adds up all.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable


def count_across_processes(path: str) -> None:
    """From now on (in this process), metrics count into files under ``path``."""
    os.environ[MULTIPROCESS_DIR] = path
    values.ValueClass = values.MultiProcessValue()

STREAM_SECONDS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
FIRST_TOKEN_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "chatproxy_requests", "HTTP requests answered, by route, method and status",
            ["route", "method", "status"], registry=r,
        )
        self.active_streams = Gauge(
            "chatproxy_active_streams", "Streaming requests in progress", registry=r, multiprocess_mode="livesum"
        )
        self.stream_duration = Histogram(
            "chatproxy_stream_duration_seconds", "Duration of streamed answers, by route",
            ["route"], buckets=STREAM_SECONDS, registry=r,
        )
        self.first_token = Histogram(
            "chatproxy_time_to_first_token_seconds", "From request to the first relayed event, by route",
            ["route"], buckets=FIRST_TOKEN_SECONDS, registry=r,
        )
        self.upstream_errors = Counter(
            "chatproxy_upstream_errors", "Failed calls to LM Studio, by kind", ["kind"], registry=r,
        )
        self.relayed_bytes = Counter(
            "chatproxy_relayed_bytes", "Bytes of LM Studio answers written to clients, by route",
            ["route"], registry=r,
        )
        self.chats_stored = Gauge(
            "chatproxy_chats_stored", "Chats in the chats folder", registry=r, multiprocess_mode="livemax"
        )

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format: this process's, or all workers'."""
        path = os.environ.get(MULTIPROCESS_DIR)
        if path is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path)
        return generate_latest(registry)

