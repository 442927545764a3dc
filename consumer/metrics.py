"""The consumer's own metrics for Prometheus, served by ``insiders consume --metrics-port``.

The run loop hands over its figures after each block (:meth:`ConsumerMetrics.block_done`):
the pipeline's counts, the lag of each partition and the block's duration. A scrape, on
the server's thread, reads the latest of them and never touches Kafka or Redis, whose
clients belong to the run loop.

:func:`serve` and :class:`MetricsServer` serve any registry: the webhook worker's metrics
(:mod:`consumer.webhook_metrics`) use them too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from consumer.pipeline import PipelineStats
from segmenter.errors import InsidersError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
# Seconds a block takes: tens of milliseconds for a few lines, seconds for 5,000 and a sweep.
BLOCK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Lag = Mapping[tuple[str, int], int]  # (topic, partition) -> records not yet applied


def listen_address(text: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port); loopback by default.

    >>> listen_address("9108"), listen_address("0.0.0.0:9108"), listen_address("[::]:9108")
    (('127.0.0.1', 9108), ('0.0.0.0', 9108), ('::', 9108))
    >>> listen_address("localhost:http")
    Traceback (most recent call last):
    ValueError: 'localhost:http' is not a port or HOST:PORT (port 0 to 65535)
    """
    host, _, port = text.strip().rpartition(":")
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not a port or HOST:PORT (port 0 to 65535)")
    return host, int(port)


@dataclass(frozen=True)
class Progress:
    """What the run loop knew after its latest block; replaced whole, never changed."""

    stats: PipelineStats = field(default_factory=PipelineStats)
    recoveries: int = 0
    lag: Lag = field(default_factory=dict)
    committed_at: float | None = None


class ConsumerMetrics(Collector):
    """The consumer's metrics and the registry that serves them.

    >>> metrics = ConsumerMetrics()
    >>> stats = PipelineStats(records=3, applied=2)
    >>> stats.rejected["not_json"] += 1
    >>> metrics.block_done(3, 0.2, stats, 0, {("invoices", 0): 5})
    >>> found = {s.name: s for family in metrics.collect() for s in family.samples}
    >>> found["insiders_consumer_lines_total"].value, found["insiders_consumer_lag"].labels
    (3, {'topic': 'invoices', 'partition': '0'})
    >>> found["insiders_consumer_dead_letters_total"].labels
    {'reason': 'not_json'}
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.block_seconds = Histogram(
            "insiders_consumer_block_seconds",
            "Seconds to process one block of lines: validate, dead-letter, apply, segment, "
            "publish the events and commit.",
            buckets=BLOCK_BUCKETS,
            registry=self.registry,
        )
        self._progress = Progress()
        self.registry.register(self)

    def block_done(
        self, lines: int, seconds: float, stats: PipelineStats, recoveries: int, lag: Lag
    ) -> None:
        """After each block (``lines`` 0: an idle tick), with the run's totals so far
        (``stats``: a copy the caller no longer changes)."""
        committed_at = self._progress.committed_at
        if lines:
            self.block_seconds.observe(seconds)
            committed_at = time.time()
        self._progress = Progress(stats, recoveries, dict(lag), committed_at)

    def serve(self, address: str) -> MetricsServer:
        """Serve these metrics at ``address``, ``PORT`` or ``HOST:PORT``, until closed."""
        return serve(self.registry, address, "the consumer's metrics", "INSIDERS_METRICS_PORT")

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        now = self._progress  # one consistent set, whatever the run loop does meanwhile
        stats = now.stats
        yield CounterMetricFamily(
            "insiders_consumer_lines",
            "Invoice lines read from Kafka (lines read again after a recovery count again).",
            value=stats.records,
        )
        yield CounterMetricFamily(
            "insiders_consumer_lines_applied",
            "Lines applied to the features (not duplicates, not already applied).",
            value=stats.applied,
        )
        dead = CounterMetricFamily(
            "insiders_consumer_dead_letters",
            "Records sent to the dead-letter topic, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(stats.rejected.items()):
            dead.add_metric([reason], count)
        yield dead
        yield CounterMetricFamily(
            "insiders_consumer_events_published",
            "Insider entries and exits published to the events topic.",
            value=stats.events,
        )
        yield CounterMetricFamily(
            "insiders_consumer_recoveries",
            "Times the consumer resumed from what Redis holds after it diverged or went away.",
            value=now.recoveries,
        )
        lag = GaugeMetricFamily(
            "insiders_consumer_lag",
            "Records of a partition not applied yet: its end offset at the latest fetch, "
            "minus the offset after the last block committed.",
            labels=["topic", "partition"],
        )
        for (topic, partition), records in sorted(now.lag.items()):
            lag.add_metric([topic, str(partition)], records)
        yield lag
        if now.committed_at is not None:
            yield GaugeMetricFamily(
                "insiders_consumer_last_commit_timestamp_seconds",
                "When the last block was committed (durable in Redis, offset sent to the "
                "group), as a Unix timestamp.",
                value=now.committed_at,
            )


def serve(registry: CollectorRegistry, address: str, what: str, variable: str) -> MetricsServer:
    """Serve ``registry`` at ``address`` (``PORT`` or ``HOST:PORT``) until closed. A bad
    address is a one-line error naming the ``--metrics-port`` flag and ``variable``."""
    try:
        host, port = listen_address(address)
    except ValueError as exc:
        raise InsidersError(f"--metrics-port / {variable}: {exc}") from None
    return MetricsServer(registry, host, port, what, variable)


class MetricsServer:
    """``registry`` over HTTP at ``http://host:port/metrics`` from a thread, until :meth:`close`.

    A port in use, or a host that is not this machine's, is a one-line error naming
    ``what`` is served and the ``variable`` that sets the address. Port 0 takes a free
    one; :attr:`url` says which.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        what: str = "the consumer's metrics",
        variable: str = "INSIDERS_METRICS_PORT",
    ) -> None:
        try:
            server, thread = start_http_server(port, host, registry)
        except OSError as exc:
            raise InsidersError(
                f"cannot serve {what} on {host}:{port} ({exc.strerror or exc}); "
                f"free the port or choose another with --metrics-port or {variable}"
            ) from None
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        bound = f"[{host}]" if ":" in host else host
        self.url = f"http://{bound}:{server.server_port}/metrics"
        log.info("serving %s on %s", what, self.url)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)
