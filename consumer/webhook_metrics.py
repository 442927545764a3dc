"""The webhook worker's metrics for Prometheus, served by ``insiders webhooks --metrics-port``.

Deliveries and failed attempts are counted as they happen, on the worker's threads (see
:meth:`WebhookMetrics.attempted`). The subscriptions' states and lags are read from the
subscription store at scrape time, so they are as fresh as the scrape; when the store does
not answer, the scrape still serves the counters, and ``insiders_webhook_store_up`` is 0.
The HTTP server is the consumer's (:func:`consumer.metrics.serve`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from consumer.metrics import MetricsServer, serve
from consumer.subscriptions import SubscriptionStore

log = logging.getLogger("insiders.webhooks")

# Seconds a receiver takes to answer: tens of milliseconds, up to the worker's timeout (10 s).
DELIVERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STATES = ("active", "parked")


def failure_reason(status: int | None, error: BaseException | None) -> str:
    """Why an attempt failed: the HTTP status class, ``timeout`` or ``connection``.

    >>> failure_reason(503, None), failure_reason(None, TimeoutError("timed out"))
    ('5xx', 'timeout')
    >>> failure_reason(None, ConnectionRefusedError(111, "Connection refused"))
    'connection'
    """
    if status is not None:
        return f"{status // 100}xx"
    return "timeout" if isinstance(error, TimeoutError) else "connection"


class WebhookMetrics(Collector):
    """The webhook worker's metrics and the registry that serves them.

    >>> from consumer.memory import MemoryFeatureStore
    >>> from consumer.subscriptions import MemorySubscriptionStore, Subscription
    >>> subscriptions = MemorySubscriptionStore(MemoryFeatureStore())
    >>> _ = subscriptions.add(Subscription("sub_1", "http://x", "k"))
    >>> metrics = WebhookMetrics(subscriptions)
    >>> metrics.attempted("sub_1", 204, None, 0.02)
    >>> metrics.attempted("sub_1", 500, None, 0.01)
    >>> found = {(s.name, *s.labels.values()): s.value
    ...          for family in metrics.registry.collect() for s in family.samples}
    >>> found["insiders_webhook_deliveries_total", "sub_1"]
    1.0
    >>> found["insiders_webhook_failures_total", "sub_1", "5xx"]
    1.0
    >>> found["insiders_webhook_lag", "sub_1"], found["insiders_webhook_subscriptions", "active"]
    (0, 1)
    """

    def __init__(self, subscriptions: SubscriptionStore) -> None:
        self.subscriptions = subscriptions
        self.registry = CollectorRegistry(auto_describe=False)
        self.deliveries = Counter(
            "insiders_webhook_deliveries",
            "Events delivered: the receiver answered 2xx.",
            ["subscription"],
            registry=self.registry,
        )
        self.failures = Counter(
            "insiders_webhook_failures",
            "Failed delivery attempts, by reason: the HTTP status class (3xx, 4xx, 5xx), "
            "timeout, or connection (refused, reset, TLS, DNS).",
            ["subscription", "reason"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "insiders_webhook_attempt_seconds",
            "Seconds a delivery attempt took, until the answer or the failure.",
            buckets=DELIVERY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(self)

    def attempted(
        self, subscription_id: str, status: int | None, error: BaseException | None, seconds: float
    ) -> None:
        """After each attempt: the HTTP status (None: no answer, then ``error`` says why)."""
        self.seconds.observe(seconds)
        if status is not None and 200 <= status < 300:
            self.deliveries.labels(subscription_id).inc()
        else:
            self.failures.labels(subscription_id, failure_reason(status, error)).inc()

    def serve(self, address: str) -> MetricsServer:
        """Serve these metrics at ``address``, ``PORT`` or ``HOST:PORT``, until closed."""
        return serve(
            self.registry,
            address,
            "the webhook worker's metrics",
            "INSIDERS_WEBHOOK_METRICS_PORT",
        )

    def describe(self) -> list[Metric]:
        return []  # registering must not read the store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "insiders_webhook_store_up",
            "1 if the subscriptions could be read from Redis at this scrape, else 0.",
        )
        try:
            subscriptions = self.subscriptions.all()
            lags = {sub.id: self.subscriptions.lag(sub.cursor) for sub in subscriptions}
        except Exception as exc:  # the store went away: the counters are still served
            log.warning("metrics: cannot read the subscriptions (%s)", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        states = GaugeMetricFamily(
            "insiders_webhook_subscriptions",
            "Webhook subscriptions by state: active, or parked (given up on until resumed).",
            labels=["state"],
        )
        for state in STATES:
            states.add_metric([state], sum(1 for sub in subscriptions if sub.state == state))
        yield states
        lag = GaugeMetricFamily(
            "insiders_webhook_lag",
            "Events in the outbox after a subscription's cursor, not yet delivered (counted "
            "up to 10,000).",
            labels=["subscription"],
        )
        for sub in subscriptions:
            lag.add_metric([sub.id], lags[sub.id])
        yield lag
