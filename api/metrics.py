"""GET /metrics: the store's counters for Prometheus, read at scrape time.

A custom ``prometheus_client`` collector reads every figure from the store on each
scrape, into a registry made for that scrape: the API process keeps no metric state
of its own (not even the client library's process metrics), so any number of API
replicas report the same values.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from api.report import current_segmenter
from consumer.ports import FeatureStore


class StoreCollector(Collector):
    """The counts of a feature store, as metric families.

    >>> from consumer.memory import MemoryFeatureStore
    >>> [m.name for m in StoreCollector(MemoryFeatureStore()).collect()]
    ['insiders_customers', 'insiders_members', 'insiders_model_version', 'insiders_events', \
'insiders_lines_ignored']
    """

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        return []  # registering must not read the store

    def collect(self) -> Iterator[Metric]:
        store = self.store
        yield GaugeMetricFamily(
            "insiders_customers",
            "Customers with at least one purchase.",
            value=store.customer_count(),
        )
        yield GaugeMetricFamily(
            "insiders_members", "Current Insiders.", value=store.insider_count()
        )
        segmenter = current_segmenter(store)
        yield GaugeMetricFamily(
            "insiders_model_version",
            "Version of the model in the latest checkpoint.",
            value=segmenter.model.version if segmenter is not None else 0,
        )
        watermark = store.watermark()
        if watermark is not None:  # no line applied yet: no sample, rather than 1970
            yield GaugeMetricFamily(
                "insiders_watermark_seconds",
                "Latest invoice time applied (event time), as a Unix timestamp.",
                value=watermark,
            )
        events = CounterMetricFamily(
            "insiders_events",
            "Insider entries and exits, by type and reason.",
            labels=["type", "reason"],
        )
        for key, count in sorted(store.event_counts().items()):
            events.add_metric(key.split(":", 1), count)
        yield events
        ignored = CounterMetricFamily(
            "insiders_lines_ignored",
            "Valid lines that feature spec v1 does not count.",
            labels=["reason"],
        )
        for reason, count in sorted(store.ignored_counts().items()):
            ignored.add_metric([reason], count)
        yield ignored


def exposition(store: FeatureStore, accept: str | None = None) -> tuple[bytes, str]:
    """The body and content type of a scrape: the Prometheus text format (0.0.4), or
    OpenMetrics when the ``Accept`` header asks for it, as Prometheus does."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type
