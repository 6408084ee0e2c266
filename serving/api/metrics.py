"""The app's Prometheus counters and histograms (served by ``GET /metrics``).

Each app gets its own :class:`~prometheus_client.CollectorRegistry`, so several
apps in one process (tests, or two models side by side) never collide on metric
names, and ``/metrics`` shows only this app's numbers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

# Requests take from milliseconds (health) to tens of seconds (64 long documents).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
UNMATCHED_ROUTE = "unmatched"


class Metrics:
    """The app's Prometheus metrics, registered on a private registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Create every metric up front, so ``/metrics`` lists them before any traffic."""
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "khabar_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "khabar_http_request_duration_seconds",
            "Time from request to response by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.documents = Counter("khabar_documents", "Documents analysed.", registry=self.registry)
        self.tokens = Counter(
            "khabar_tokens",
            "Sub-word tokens analysed (per document, before windowing).",
            registry=self.registry,
        )
        self.errors = Counter(
            "khabar_errors",
            "Error responses by error_type.",
            ["error_type"],
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
