"""Prometheus metrics: requests, latency, queue depth and analyses by status (never media or keys)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from .db import QUEUED, STATUSES, AnalysisJob, Database
from .jobs import JobRunner


class _DatabaseCollector:
    """Read at scrape time from the database, so every server process reports the same truth."""

    def __init__(self, metrics: "Metrics"):
        self.metrics = metrics

    def collect(self):
        counts = self.metrics.status_counts()
        by_status = GaugeMetricFamily("emofusion_analyses", "Analyses in the database by status", labels=["status"])
        for status in STATUSES:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        yield GaugeMetricFamily("emofusion_queue_depth", "Analyses waiting for a worker", value=counts.get(QUEUED, 0))
        yield GaugeMetricFamily("emofusion_jobs_running_here", "Analyses running in this process",
                                value=self.metrics.jobs.busy)


class Metrics:
    """Request counts and latency, and the analyses in the database (`db`) and running here (`jobs`)."""

    def __init__(self, db: Database, jobs: JobRunner):
        self.db, self.jobs = db, jobs
        self.registry = CollectorRegistry()
        self.requests = Counter("emofusion_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("emofusion_http_request_seconds", "HTTP request latency", ["route"],
                                 buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=self.registry)
        self.registry.register(_DatabaseCollector(self))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def status_counts(self) -> dict[str, int]:
        with self.db.session() as s:
            rows = s.execute(select(AnalysisJob.status, func.count()).group_by(AnalysisJob.status)).all()
        return {status: n for status, n in rows}

    def queue_depth(self) -> int:
        return self.status_counts().get(QUEUED, 0)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
