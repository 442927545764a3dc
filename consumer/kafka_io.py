"""Kafka adapters (kafka-python): the invoice source, the event/dead-letter sink, the publisher."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata, TopicPartition

from consumer.ports import SourceRecord
from segmenter.errors import InvalidRecord, ServiceUnavailable

log = logging.getLogger(__name__)

# Large enough for the biggest record we accept and for a rejected 1 MB one to reach the DLQ.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024


def _unavailable(bootstrap: str, exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"Kafka at {bootstrap} did not answer ({exc}); start it with `scripts/services start` "
        "or set INSIDERS_KAFKA_BOOTSTRAP"
    )


def probe(bootstrap: str, timeout: float = 3.0) -> None:
    """Fail fast with a one-line error when no broker listens (kafka-python waits 30 s)."""
    errors = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
            return
        except (OSError, ValueError) as exc:
            errors.append(f"{server}: {exc}")
    raise _unavailable(bootstrap, OSError("; ".join(errors)))


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 1) -> None:
    """Create the topics that do not exist yet (single-node replication)."""
    probe(bootstrap)
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    except KafkaError as exc:
        raise _unavailable(bootstrap, exc) from None
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
                log.info("created topics %s", ", ".join(missing))
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def producer(bootstrap: str, **config: Any) -> KafkaProducer:
    """A producer that waits for the broker's acknowledgement and takes up to 2 MiB records."""
    try:
        return KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", max_request_size=MAX_MESSAGE_BYTES, **config
        )
    except KafkaError as exc:
        raise _unavailable(bootstrap, exc) from None


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


class KafkaEventSink:
    """Insider events to ``events_topic``; rejected records to ``<source topic>.dlq``.

    A dead letter carries the original key and bytes untouched; the reason and the
    source coordinates travel as headers, so a tool can re-drive it after a fix.
    """

    def __init__(self, bootstrap: str, events_topic: str = "insiders.events") -> None:
        self.events_topic = events_topic
        self.producer = producer(bootstrap, linger_ms=5)

    def dead_letter(self, record: SourceRecord, error: InvalidRecord) -> None:
        headers = [
            ("reason", error.reason.encode()),
            ("detail", error.detail.encode()),
            ("source.topic", record.topic.encode()),
            ("source.partition", str(record.partition).encode()),
            ("source.offset", str(record.offset).encode()),
        ]
        self.producer.send(
            dlq_topic(record.topic), key=record.key, value=record.value, headers=headers
        )

    def publish(self, events: Sequence[dict[str, Any]]) -> None:
        for event in events:
            self.producer.send(
                self.events_topic,
                key=str(event["customer_id"]).encode(),
                value=orjson.dumps(event),
            )
        self.flush()

    def flush(self) -> None:
        self.producer.flush()

    def close(self) -> None:
        self.producer.close()


class _DropRevoked(ConsumerRebalanceListener):
    def __init__(self, source: KafkaInvoiceSource) -> None:
        self.source = source

    def on_partitions_revoked(self, revoked: Any) -> None:
        # Buffered records of a revoked partition were never committed: the new owner re-reads them.
        for tp in revoked:
            self.source.buffers.pop(tp, None)

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class KafkaInvoiceSource:
    """Invoice records from a Kafka consumer group, cut into blocks.

    A block holds consecutive records of one partition and ends at an offset that
    is a multiple of ``block_size`` (or at the end of the data): the same lines
    in the same order therefore make the same blocks as a file replay, whatever
    the poll sizes were. Offsets are committed only after the caller has made the
    block's effect durable (see :meth:`commit`). In live mode an idle poll yields an
    empty block, so that time-driven work (the Insider sweep) runs on a quiet stream.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str = "invoices",
        group: str = "insiders",
        block_size: int = 5000,
        exit_at_end: bool = False,
        poll_timeout_ms: int = 500,
    ) -> None:
        self.topic = topic
        self.block_size = block_size
        self.exit_at_end = exit_at_end
        self.poll_timeout_ms = poll_timeout_ms
        self.buffers: dict[TopicPartition, list[SourceRecord]] = {}
        self.stopping = False
        try:
            self.consumer = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=block_size,
                max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
                fetch_max_bytes=64 * 1024 * 1024,
            )
            self.consumer.subscribe([topic], listener=_DropRevoked(self))
        except KafkaError as exc:
            raise _unavailable(bootstrap, exc) from None
        self.end_offsets: dict[TopicPartition, int] = {}
        if exit_at_end:
            partitions = self.consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            self.end_offsets = self.consumer.end_offsets(tps) if tps else {}
            log.info(
                "backfill: consuming %s up to end offsets %s",
                topic,
                {tp.partition: off for tp, off in self.end_offsets.items()},
            )

    def _at_end(self) -> bool:
        assigned = self.consumer.assignment()
        if not assigned:
            return not self.end_offsets or all(v == 0 for v in self.end_offsets.values())
        return all(
            self.consumer.position(tp) >= self.end_offsets.get(tp, 0) for tp in assigned
        ) and not any(self.buffers.values())

    def _reached_end(self, tp: TopicPartition) -> bool:
        return tp in self.end_offsets and self.consumer.position(tp) >= self.end_offsets[tp]

    def blocks(self) -> Iterator[list[SourceRecord]]:
        size = self.block_size
        while not self.stopping:
            polled = self.consumer.poll(timeout_ms=self.poll_timeout_ms)
            ready: list[list[SourceRecord]] = []
            for tp, messages in polled.items():
                buffer = self.buffers.setdefault(tp, [])
                for m in messages:
                    if buffer and m.offset // size != buffer[-1].offset // size:
                        ready.append(buffer)
                        buffer = self.buffers[tp] = []
                    buffer.append(SourceRecord(m.topic, m.partition, m.offset, m.key, m.value))
                if buffer and (buffer[-1].offset + 1) % size == 0:
                    ready.append(buffer)
                    self.buffers[tp] = []
            for tp, buffer in list(self.buffers.items()):
                # Live mode: an idle poll flushes partial blocks. Backfill: only the end does,
                # so that blocks never depend on fetch timing.
                if buffer and ((not polled and not self.exit_at_end) or self._reached_end(tp)):
                    ready.append(buffer)
                    self.buffers[tp] = []
            for block in ready:
                if self.stopping:  # what is left was never committed: it is read again
                    return
                yield block
            if not polled and not ready and not self.exit_at_end:
                yield []  # an idle tick: the pipeline sweeps Insiders as the clock moves
            if self.exit_at_end and self._at_end():
                return

    def commit(self, block: Sequence[SourceRecord]) -> None:
        if not block:
            return
        last = block[-1]
        tp = TopicPartition(last.topic, last.partition)
        self.consumer.commit({tp: OffsetAndMetadata(last.offset + 1, "", -1)})

    def close(self) -> None:
        self.consumer.close()


class KafkaPublisher:
    """Produces invoice records, keyed by customer id, at an optional steady rate."""

    def __init__(self, bootstrap: str, topic: str = "invoices") -> None:
        self.topic = topic
        # Large batches: publishing is bound by kafka-python's per-record cost.
        self.producer = producer(bootstrap, linger_ms=20, batch_size=512 * 1024)

    def send(self, record: dict[str, Any]) -> None:
        customer = record.get("customer_id")
        self.producer.send(
            self.topic,
            key=str(customer).encode() if customer is not None else None,
            value=orjson.dumps(record),
        )

    def flush(self) -> None:
        self.producer.flush()

    def close(self) -> None:
        self.producer.close()


class RateLimiter:
    """Sleeps so that calls average ``rate`` per second (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.count = 0

    def tick(self) -> None:
        if not self.rate:
            return
        self.count += 1
        ahead = self.count / self.rate - (time.monotonic() - self.start)
        if ahead > 0.01:
            time.sleep(ahead)
