"""Prometheus metrics of docs/api.md, plus queue, retry, push and HTTP health series.

Counters live in the process where the event happens (the worker that finishes a run, the API
that serves a request): scrape every ``stella serve`` and ``stella worker --metrics-port`` and
aggregate with ``sum()``. Queue gauges are read from the database on each scrape, so any one API
process reports the whole cluster's backlog.

Several processes on one host can report through one endpoint: prometheus-client's
multiprocess mode. Every process of the group sets ``PROMETHEUS_MULTIPROC_DIR`` to the same
directory *before prometheus_client is first imported* (the library picks its value storage at
import time); each process then writes its samples to memory-mapped files there, and the one
that serves ``/metrics`` (``Metrics(multiprocess_dir=...)``) adds them all up. ``stella serve``
does this by itself with a private directory, so worker processes it starts are counted in its
``/metrics`` (see docs/runbook.md, "Metrics from several processes").

Series names are part of the product contract (deploy/prometheus/ and deploy/grafana/ are built
on them, and tests/telemetry checks that they only use names defined here): rename nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from export_center.runtime.metrics_dir import alive

_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf"))

#: Statuses a run ends in (export_runs_total{status}); created at 0 when a profile first runs,
#: so that the first failure of a profile is an increase Prometheus can see.
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
#: Why a run got another attempt (export_run_retries_total{reason}): the error code of a
#: transient failure, a worker giving the run back on shutdown, or a takeover after a lost one.
RETRY_REASONS = ("ERR_EXPORT_IO", "ERR_EXPORT_DATABASE", "released", "worker_lost")
PUSH_OUTCOMES = ("pushed", "failed")


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
            "export_runs_due",
            "Pending runs that are due now: the backlog a free worker would start.",
            value=values.get("due", 0),
        )
        yield GaugeMetricFamily(
            "export_run_leases_active",
            "Running runs whose worker holds a live lease (exports in progress, whole cluster).",
            value=values.get("leases_active", 0),
        )
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
        yield GaugeMetricFamily(
            "export_running_run_idle_seconds",
            "Longest time a running run has gone without an event (claim or progress): "
            "a hung export grows it while its lease stays alive (0 when nothing runs).",
            value=values.get("running_idle", 0),
        )


class _GroupCollector(Collector):
    """The sums of every process of the group, without the live gauges of dead processes.

    A worker killed with SIGKILL cannot clean up after itself; its "busy" gauge would count
    forever. The directory is per host (memory-mapped files), so its pids are this host's.
    Counters of dead processes stay: what they did still happened.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._inner = multiprocess.MultiProcessCollector(None, path=str(path))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        for f in self._path.glob("gauge_live*_*.db"):
            pid = f.stem.rpartition("_")[2]
            if pid.isdigit() and not alive(int(pid)):
                multiprocess.mark_process_dead(int(pid), str(self._path))  # type: ignore[no-untyped-call]
        return self._inner.collect()  # type: ignore[no-untyped-call,no-any-return]


class Metrics:
    """The process's metrics, in their own registry (tests create as many as they like).

    ``multiprocess_dir``: the ``PROMETHEUS_MULTIPROC_DIR`` of this process group; the
    exposition (:attr:`exposition`) then sums the samples of every process writing there.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        multiprocess_dir: Path | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir
        self._watching = False
        if multiprocess_dir is None:
            self.exposition = self.registry
        else:
            # The per-process registry must not be exposed as well: its samples are in the
            # directory already and would be counted twice.
            self.exposition = CollectorRegistry()
            self.exposition.register(_GroupCollector(multiprocess_dir))
        r = self.registry
        self.runs_total = Counter(
            "export_runs",
            "Runs that reached a final state, by profile, tenant and status.",
            ["profile", "tenant", "status"],
            registry=r,
        )
        self.run_duration = Histogram(
            "export_run_duration_seconds",
            "Wall time of a run's last attempt from claim to its final state, by profile, "
            "tenant and final status.",
            ["profile", "tenant", "status"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.bytes_total = Counter(
            "export_bytes",
            "Bytes of published bundle archives, by profile and tenant.",
            ["profile", "tenant"],
            registry=r,
        )
        self.failures_total = Counter(
            "export_failures",
            "Run attempts that failed, by error code (retried ones included).",
            ["error_code"],
            registry=r,
        )
        self.retries_total = Counter(
            "export_run_retries",
            "Runs sent back to the queue for another attempt, by reason (a transient error "
            "code, 'released' by a stopping worker, 'worker_lost' taken over after a lapsed "
            "lease).",
            ["reason"],
            registry=r,
        )
        self.pushes_total = Counter(
            "export_pushes",
            "OCI pushes of published bundles (service oci_repository), by outcome.",
            ["outcome"],
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
        # livesum: in multiprocess mode only processes still alive count (_GroupCollector).
        self.worker_slots = Gauge(
            "export_worker_slots",
            "Runs the worker threads of this process can execute at once (its concurrency).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.worker_active = Gauge(
            "export_worker_active_runs",
            "Run attempts this process is executing now (its live leases).",
            registry=r,
            multiprocess_mode="livesum",
        )
        # Label values known in advance exist from the start at 0: an alert on increase()
        # then sees the very first event, which a series born at 1 would hide.
        for reason in RETRY_REASONS:
            self.retries_total.labels(reason)
        for outcome in PUSH_OUTCOMES:
            self.pushes_total.labels(outcome)

    def profile_seen(self, profile: str, tenant: str) -> None:
        """Create the profile's run series at 0 (called when one of its runs starts)."""
        for status in FINAL_STATUSES:
            self.runs_total.labels(profile, tenant, status)

    def watch_queue(self, read: Callable[[], Mapping[str, float]]) -> None:
        """Report queue gauges, computed by ``read`` on every scrape (once per registry)."""
        if not self._watching:
            collector = _QueueCollector(read)
            self.registry.register(collector)
            if self.exposition is not self.registry:
                self.exposition.register(collector)
            self._watching = True
