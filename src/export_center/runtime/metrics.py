"""Prometheus metrics of export-center.md §6, plus queue and HTTP health series.

Counters live in the process where the event happens (the worker that finishes a run, the API
that serves a request): scrape every ``stella serve`` and ``stella worker --metrics-port`` and
aggregate with ``sum()``. Queue gauges are read from the database on each scrape, so any one API
process reports the whole cluster's backlog.

``stella serve`` and the worker processes it starts count together: serve sets
``PROMETHEUS_MULTIPROC_DIR`` for itself and its children (prometheus_client's multiprocess
mode: each process writes its values to files there), and its ``/metrics`` sums them, so one
scrape shows the runs its workers finished, as when they were threads of the server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf"))


class _QueueCollector(Collector):
    def __init__(self, read: Callable[[], Mapping[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        values = self._read()
        states = GaugeMetricFamily(
            "export_runs_in_state",
            "Runs currently in each state (whole cluster).",
            labels=["state"],
        )
        for state in ("pending", "running"):
            states.add_metric([state], values.get(state, 0))
        yield states
        yield GaugeMetricFamily(
            "export_runs_lease_expired",
            "Running runs whose worker stopped heartbeating (waiting for takeover).",
            value=values.get("lease_expired", 0),
        )
        yield GaugeMetricFamily(
            "export_oldest_pending_run_age_seconds",
            "Age of the oldest run that is due and still pending (0 when none).",
            value=values.get("oldest_pending_age", 0),
        )


class Metrics:
    """The process's metrics, in their own registry (tests create as many as they like)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._watching = False
        r = self.registry
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if registry is None and shared:
            # Multiprocess mode: the values go to files; what is scraped is their sum over
            # every process of the group (this one included), plus the queue gauges.
            r = CollectorRegistry()
            MultiProcessCollector(self.registry, path=shared)  # type: ignore[no-untyped-call]
        self.runs_total = Counter(
            "export_runs",
            "Runs that reached a final state, by profile, tenant and status.",
            ["profile", "tenant", "status"],
            registry=r,
        )
        self.run_duration = Histogram(
            "export_run_duration_seconds",
            "Wall time of a run attempt from claim to its final state.",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.bytes_total = Counter(
            "export_bytes", "Bytes of published bundle archives.", registry=r
        )
        self.failures_total = Counter(
            "export_failures",
            "Run attempts that failed, by error code (retried ones included).",
            ["error_code"],
            registry=r,
        )
        self.http_requests = Counter(
            "export_http_requests",
            "API requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "export_http_request_duration_seconds",
            "API request latency by route template (streams: time to the first byte).",
            ["route"],
            registry=r,
        )
        self.takeovers = Counter(
            "export_run_takeovers",
            "Runs claimed again after their previous worker lost its lease.",
            registry=r,
        )

    def watch_queue(self, read: Callable[[], Mapping[str, float]]) -> None:
        """Report queue gauges, computed by ``read`` on every scrape (once per registry)."""
        if not self._watching:
            self.registry.register(_QueueCollector(read))
            self._watching = True
