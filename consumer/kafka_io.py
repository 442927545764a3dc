"""Kafka adapters (kafka-python): the invoice source, the event/dead-letter sink, the publisher."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition
from pydantic import SecretStr

from consumer.cloud_events import kafka_record, source_of
from consumer.ports import SourceRecord
from segmenter.errors import InsidersError, InvalidRecord, ServiceUnavailable

log = logging.getLogger(__name__)

# Large enough for the biggest record we accept and for a rejected 1 MB one to reach the DLQ.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class KafkaConnection:
    """Where Kafka is and how to log in to it: what every client here is built from.

    ``ConnectionSettings.kafka()`` makes one from the ``INSIDERS_KAFKA_*`` settings, which
    have checked the combination. A plain bootstrap string means PLAINTEXT. Messages name
    ``bootstrap`` only; the password stays a :class:`SecretStr` until a client is built.

    >>> KafkaConnection("k1:9092,k2:9092").client_config()
    {'bootstrap_servers': 'k1:9092,k2:9092'}
    >>> login = KafkaConnection("k:9093", "SASL_SSL", "PLAIN", "me", SecretStr("pw"))
    >>> sorted(login.client_config().items())  # doctest: +NORMALIZE_WHITESPACE
    [('bootstrap_servers', 'k:9093'), ('sasl_mechanism', 'PLAIN'),
     ('sasl_plain_password', 'pw'), ('sasl_plain_username', 'me'),
     ('security_protocol', 'SASL_SSL')]
    >>> "pw" in repr(login)
    False
    """

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @classmethod
    def of(cls, target: KafkaTarget) -> KafkaConnection:
        return target if isinstance(target, KafkaConnection) else cls(target)

    @property
    def secured(self) -> bool:
        """TLS, a SASL login, or both: something the broker can refuse."""
        return self.security_protocol != "PLAINTEXT"

    def client_config(self) -> dict[str, Any]:
        """kafka-python's keyword arguments for a client: only what is set (PLAINTEXT: none)."""
        config: dict[str, Any] = {"bootstrap_servers": self.bootstrap}
        if self.secured:
            config["security_protocol"] = self.security_protocol
        password = self.sasl_password.get_secret_value() if self.sasl_password else None
        optional = {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": password,
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        config.update({key: value for key, value in optional.items() if value is not None})
        return config


KafkaTarget = str | KafkaConnection  # a bare bootstrap string is a PLAINTEXT connection

# Seconds a TLS or SASL connection has to be set up at the first contact (see probe()).
HANDSHAKE_TIMEOUT = 10.0


def _unavailable(bootstrap: str, exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"Kafka at {bootstrap} did not answer ({exc}); start it with `scripts/services start` "
        "or set INSIDERS_KAFKA_BOOTSTRAP"
    )


def probe(
    bootstrap: KafkaTarget, timeout: float = 3.0, handshake: float = HANDSHAKE_TIMEOUT
) -> None:
    """Fail fast with a one-line error when no broker listens (kafka-python waits 30 s).

    Over TLS or SASL, also when the broker refuses the handshake or the login: kafka-python
    would log and retry that until its bootstrap timeout, then say only that it timed out.
    """
    conn = KafkaConnection.of(bootstrap)
    errors = []
    for server in conn.bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
            break
        except (OSError, ValueError) as exc:
            errors.append(f"{server}: {exc}")
    else:
        raise _unavailable(conn.bootstrap, OSError("; ".join(errors)))
    if conn.secured:
        _check_handshake(conn, handshake)


class _ConnectionFailures(logging.Handler):
    """What kafka-python logs about a failed connection, which it retries and never raises."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.refused: Exception | None = None  # the broker refused the login
        self.last: Exception | None = None  # another reason, e.g. a failed TLS handshake

    def emit(self, record: logging.LogRecord) -> None:
        for arg in record.args if isinstance(record.args, tuple) else ():
            if isinstance(arg, SaslAuthenticationFailedError):
                self.refused = arg
            elif isinstance(arg, KafkaError | OSError) and self._telling(arg):
                self.last = arg

    def _telling(self, error: Exception) -> bool:
        """Worth keeping: any reason says more than a timeout, and the broker's own answer
        (an unknown mechanism, say) more than the disconnection that follows it."""
        if isinstance(error, KafkaTimeoutError):
            return False
        return self.last is None or isinstance(self.last, KafkaConnectionError)


def _reason(exc: Exception) -> str:
    """kafka-python's error text without its repeated class names.

    >>> _reason(SaslAuthenticationFailedError("SaslAuthenticationFailedError: Bad login"))
    'Bad login'
    """
    return re.sub(r"^(\[Error -?\d+\] )?(\w+Error: )*", "", str(exc)) or type(exc).__name__


def _check_handshake(conn: KafkaConnection, timeout: float) -> None:
    """Bootstrap once with a throwaway client; a refusal becomes one line, the password in none.

    kafka-python's own account of the failed attempts (a warning or an error per retry) is
    held back meanwhile: the error raised here says it once.
    """
    failures = _ConnectionFailures()
    kafka_log = logging.getLogger("kafka")
    propagate = kafka_log.propagate
    kafka_log.addHandler(failures)
    kafka_log.propagate = False
    try:
        admin = KafkaAdminClient(
            **conn.client_config(),
            bootstrap_timeout_ms=int(timeout * 1000),
            request_timeout_ms=int(timeout * 1000),
        )
    except KafkaError:
        pass
    else:
        admin.close()
        return
    finally:
        kafka_log.removeHandler(failures)
        kafka_log.propagate = propagate
    if failures.refused is not None:
        raise InsidersError(
            f"Kafka at {conn.bootstrap} refused the {conn.sasl_mechanism} login of "
            f"{conn.sasl_username!r} ({_reason(failures.refused)}); check "
            "INSIDERS_KAFKA_SASL_USERNAME and INSIDERS_KAFKA_SASL_PASSWORD"
        )
    if failures.last is not None:
        check = "INSIDERS_KAFKA_SECURITY_PROTOCOL"
        if conn.sasl_mechanism:
            check += " and INSIDERS_KAFKA_SASL_MECHANISM"
        check += " against the listener"
        if conn.security_protocol.endswith("SSL"):
            check += ", and the INSIDERS_KAFKA_SSL_* files"
        raise ServiceUnavailable(
            f"Kafka at {conn.bootstrap} did not complete the {conn.security_protocol} handshake "
            f"({_reason(failures.last)}); check {check}"
        )
    # Only slow: the clients' own, longer, timeouts will tell.


# What the service writes, it keeps: the events topic is the full log of entries and exits
# (Redis keeps only the latest, see Retention), and dead letters are the records to fix.
KEEP_FOREVER = {"retention.ms": "-1"}


def ensure_topics(
    bootstrap: KafkaTarget,
    topics: Iterable[str],
    partitions: int = 1,
    configs: dict[str, str] | None = None,
) -> None:
    """Create the topics that do not exist yet (single-node replication), with ``configs``.

    A topic that exists is left as it is: its configuration is its owner's.
    """
    conn = KafkaConnection.of(bootstrap)
    probe(conn)
    try:
        admin = KafkaAdminClient(**conn.client_config(), request_timeout_ms=15_000)
    except KafkaError as exc:
        raise _unavailable(conn.bootstrap, exc) from None
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            t,
                            num_partitions=partitions,
                            replication_factor=1,
                            topic_configs=configs or {},
                        )
                        for t in missing
                    ]
                )
                log.info("created topics %s", ", ".join(missing))
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def producer(bootstrap: KafkaTarget, **config: Any) -> KafkaProducer:
    """A producer that waits for the broker's acknowledgement and takes up to 2 MiB records.

    kafka-python retries retriable errors itself (idempotently) until ``delivery_timeout_ms``;
    :class:`ConfirmedProducer` then checks every send.
    """
    conn = KafkaConnection.of(bootstrap)
    try:
        return KafkaProducer(
            **conn.client_config(), acks="all", max_request_size=MAX_MESSAGE_BYTES, **config
        )
    except KafkaError as exc:
        raise _unavailable(conn.bootstrap, exc) from None


Message = tuple[str, bytes | None, bytes | None, list[Any] | None]  # topic, key, value, headers


class ConfirmedProducer:
    """Sends that are known to be acknowledged by the broker when :meth:`confirm` returns.

    kafka-python's ``flush()`` only logs a failed batch. Here every send keeps its future;
    ``confirm`` waits for all of them and sends again what failed, with exponential backoff,
    for up to ``give_up_after`` seconds, then raises :class:`ServiceUnavailable`. A caller
    marks nothing done before ``confirm`` returns, so nothing is marked that the broker
    did not take.
    """

    def __init__(self, bootstrap: KafkaTarget, give_up_after: float = 60.0, **config: Any) -> None:
        self.bootstrap = KafkaConnection.of(bootstrap).bootstrap
        self.give_up_after = give_up_after
        # The producer's own retries take a third of the budget, so that its verdict on a
        # record comes in time for us to send it again (it needs delivery > linger + request).
        delivery_ms = max(1000, int(give_up_after * 1000 / 3))
        request_ms = min(30_000, delivery_ms // 2)
        # Not idempotent: kafka-python's idempotent producer never completes the futures of a
        # batch the broker refused, so a refusal could not be seen. One request in flight
        # keeps the order; a re-send may duplicate a record, and readers dedupe by its id.
        self.producer = producer(
            bootstrap,
            delivery_timeout_ms=delivery_ms,
            request_timeout_ms=request_ms,
            enable_idempotence=False,
            max_in_flight_requests_per_connection=1,
            **config,
        )
        self._inflight: list[tuple[Any, Message]] = []

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[Any] | None = None
    ) -> None:
        message = (topic, key, value, headers)
        self._inflight.append((self._send(message), message))

    def _send(self, message: Message) -> Any:
        topic, key, value, headers = message
        return self.producer.send(topic, key=key, value=value, headers=headers)

    def confirm(self) -> None:
        """Return once the broker has acknowledged every send so far; else raise, one line."""
        deadline = time.monotonic() + self.give_up_after
        delay = 0.5
        while self._inflight:
            with contextlib.suppress(KafkaError):  # each record's own verdict is read below
                self.producer.flush(timeout=max(deadline - time.monotonic(), 0.1))
            failed: list[tuple[Message, Exception]] = []
            for future, message in self._inflight:
                try:
                    future.get(timeout=max(deadline - time.monotonic(), 0.1))
                except KafkaError as exc:
                    failed.append((message, exc))
            self._inflight = []
            if not failed:
                return
            # The broker's own answer says more than our having stopped waiting for one.
            answers = [e for _, e in failed if not isinstance(e, KafkaTimeoutError)]
            error = (answers or [failed[-1][1]])[-1]
            topic = failed[0][0][0]
            if time.monotonic() + delay > deadline:
                raise ServiceUnavailable(
                    f"Kafka at {self.bootstrap} did not acknowledge {len(failed):,} record(s) "
                    f"to {topic} within {self.give_up_after:g}s (last error: {error})"
                )
            log.warning(
                "Kafka did not take %d record(s) to %s (%s); sending again in %.1fs",
                len(failed),
                topic,
                error,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
            self._inflight = [(self._send(m), m) for m, _ in failed]

    def close(self) -> None:
        """Close; what was never confirmed is the caller's to send again (it marked nothing)."""
        try:
            self.producer.close(timeout=5)
        except KafkaError:
            # kafka-python's close() stops at a flush that times out and leaves the producer
            # open (its finaliser would try again at exit, noisily): end it here.
            sender = getattr(self.producer, "_sender", None)
            if sender is not None:
                sender.force_close()
            self.producer._closed = True


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


class KafkaEventSink:
    """Insider events to ``events_topic``; rejected records to ``<source topic>.dlq``.

    A dead letter carries the original key and bytes untouched; the reason and the
    source coordinates travel as headers, so a tool can re-drive it after a fix.
    An event is a CloudEvent in binary mode: its JSON as the value, the customer id as the
    key, the attributes as ``ce_`` headers (see :mod:`consumer.cloud_events`).
    ``publish`` and ``flush`` return only once the broker has acknowledged every record.
    """

    def __init__(
        self,
        bootstrap: KafkaTarget,
        events_topic: str = "insiders.events",
        give_up_after: float = 60.0,
    ) -> None:
        self.events_topic = events_topic
        self.source = source_of(events_topic)
        self.producer = ConfirmedProducer(bootstrap, give_up_after, linger_ms=5)

    def dead_letter(self, record: SourceRecord, error: InvalidRecord) -> None:
        headers = [
            ("reason", error.reason.encode()),
            ("detail", error.detail.encode()),
            ("source.topic", record.topic.encode()),
            ("source.partition", str(record.partition).encode()),
            ("source.offset", str(record.offset).encode()),
        ]
        self.producer.send(dlq_topic(record.topic), record.key, record.value, headers)

    def publish(self, events: Sequence[dict[str, Any]]) -> None:
        for event in events:
            key, value, headers = kafka_record(event, self.source)
            self.producer.send(self.events_topic, key, value, headers)
        self.flush()

    def flush(self) -> None:
        self.producer.confirm()

    def close(self) -> None:
        self.producer.close()


StartOffset = Callable[[str, int], int]


class KafkaInvoiceSource:
    """Invoice records from every partition of a topic, cut into blocks.

    A block holds consecutive records of one partition and ends at an offset that
    is a multiple of ``block_size`` (or at the end of the data): the same lines
    in the same order therefore make the same blocks as a file replay, whatever
    the poll sizes were. In live mode a partial block is also cut as soon as the
    consumer has caught up with the partition (nothing more to read), so that a line
    is applied within a poll of its arrival at any rate; an idle poll yields an empty
    block, so that time-driven work (the Insider sweep) runs on a quiet stream.

    Where to read from is the store's business, not Kafka's: the partitions are
    assigned to this process (the writer lock makes it the only one) and each starts
    at ``start_offset(topic, partition)``, the offset after the last one the store holds.
    Offsets are still committed to ``group`` after each block, for lag monitoring.
    A start below what the broker still holds is a gap: refused unless ``accept_gap``.
    """

    def __init__(
        self,
        bootstrap: KafkaTarget,
        topic: str = "invoices",
        group: str = "insiders",
        block_size: int = 5000,
        exit_at_end: bool = False,
        poll_timeout_ms: int = 500,
        start_offset: StartOffset | None = None,
        accept_gap: bool = False,
        outage_seconds: float = 60.0,
    ) -> None:
        conn = KafkaConnection.of(bootstrap)
        self.bootstrap = conn.bootstrap
        self.outage_seconds = outage_seconds
        self._heard_from_broker = time.monotonic()
        self._last_check = 0.0
        self.topic = topic
        self.block_size = block_size
        self.exit_at_end = exit_at_end
        self.poll_timeout_ms = poll_timeout_ms
        self.start_offset = start_offset
        self.accept_gap = accept_gap
        self.buffers: dict[TopicPartition, list[SourceRecord]] = {}
        # Each partition's next offset to apply: its start, then after each block committed.
        self._applied_to: dict[TopicPartition, int] = {}
        self.stopping = False
        self._commit_failed = False
        self._looked_for_partitions = 0.0
        try:
            self.consumer = KafkaConsumer(
                **conn.client_config(),
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=block_size,
                max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
                fetch_max_bytes=64 * 1024 * 1024,
            )
            self._assign(self._partitions())
        except KafkaError as exc:
            raise _unavailable(conn.bootstrap, exc) from None
        self.end_offsets: dict[TopicPartition, int] = {}
        if exit_at_end:
            tps = sorted(self.consumer.assignment())
            self.end_offsets = self.consumer.end_offsets(tps) if tps else {}
            log.info(
                "backfill: consuming %s up to end offsets %s",
                topic,
                {tp.partition: off for tp, off in self.end_offsets.items()},
            )

    def _partitions(self) -> list[TopicPartition]:
        partitions = self.consumer.partitions_for_topic(self.topic) or set()
        return [TopicPartition(self.topic, p) for p in sorted(partitions)]

    def _assign(self, tps: list[TopicPartition]) -> None:
        new = [tp for tp in tps if tp not in self.consumer.assignment()]
        if not new:
            return
        self.consumer.assign(sorted(set(self.consumer.assignment()) | set(new)))
        self._seek(new)
        log.info("reading %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in new))

    def _seek(self, tps: Sequence[TopicPartition]) -> None:
        """Position each partition where the store says it left off."""
        if self.start_offset is None:
            return
        try:
            earliest = self.consumer.beginning_offsets(list(tps), timeout_ms=10_000)
        except KafkaError as exc:
            raise _unavailable(self.bootstrap, exc) from None
        for tp in tps:
            start = self.start_offset(tp.topic, tp.partition)
            first = earliest.get(tp, 0)
            if start < first:
                gap = f"{tp.topic}[{tp.partition}] starts at offset {first:,}, "
                gap += f"but the state needs offset {start:,} next"
                if not self.accept_gap:
                    raise InsidersError(
                        gap + " (removed by retention?); pass --accept-gap to go on without "
                        f"the {first - start:,} missing record(s)"
                    )
                log.warning("%s: going on without %d record(s) (--accept-gap)", gap, first - start)
                start = first
            self.consumer.seek(tp, start)
            self.buffers.pop(tp, None)
            self._applied_to[tp] = start

    def rewind(self) -> None:
        """Drop what was read but not applied, and seek again to where the store is now."""
        self.buffers.clear()
        self._seek(sorted(self.consumer.assignment()))

    def _position(self, tp: TopicPartition) -> int:
        """The next offset to read of ``tp``, or -1 while the broker cannot say.

        kafka-python 3 may check a position against a new partition leader first (KIP-320).
        A broker restart bumps the leader epoch, and while that broker is still away the
        check's refused connection came out of ``position()``: a broker restart killed the
        consumer. -1 reads as "not there yet"; the next poll retries, and ``_check_broker``
        counts the outage.
        """
        try:
            return self.consumer.position(tp)
        except KafkaError as exc:
            if not exc.retriable:
                raise
            log.debug("Kafka could not give the position of %s (%s); retrying", tp, exc)
            return -1

    def _at_end(self) -> bool:
        assigned = self.consumer.assignment()
        if not assigned:
            return not self.end_offsets or all(v == 0 for v in self.end_offsets.values())
        return all(
            self._position(tp) >= self.end_offsets.get(tp, 0) for tp in assigned
        ) and not any(self.buffers.values())

    def _reached_end(self, tp: TopicPartition) -> bool:
        return tp in self.end_offsets and self._position(tp) >= self.end_offsets[tp]

    def _caught_up(self, tp: TopicPartition) -> bool:
        """Live mode: nothing more to read of this partition now (position at the high mark)."""
        high = self.consumer.highwater(tp)
        return high is not None and self._position(tp) >= high

    def blocks(self) -> Iterator[list[SourceRecord]]:
        size = self.block_size
        live = not self.exit_at_end
        while not self.stopping:
            polled = self._poll()
            if polled:
                self._heard_from_broker = time.monotonic()
            else:
                self._check_broker()
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
                # Live mode: a partition caught up (or an idle poll) flushes its partial block.
                # Backfill: only the end does, so that blocks never depend on fetch timing.
                if buffer and (
                    (live and (not polled or self._caught_up(tp))) or self._reached_end(tp)
                ):
                    ready.append(buffer)
                    self.buffers[tp] = []
            for block in ready:
                if self.stopping:  # what is left was never applied: it is read again
                    return
                yield block
            if live and not polled and not ready:
                self._look_for_new_partitions()
                yield []  # an idle tick: the pipeline sweeps Insiders as the clock moves
            if self.exit_at_end and self._at_end():
                return

    def _poll(self) -> dict[TopicPartition, list[Any]]:
        """One poll; a broker that is away is an empty one (``_check_broker`` then counts the
        outage). kafka-python retries most of it itself, but while it looks for the group's
        coordinator a refused connection comes out of ``poll``: a broker restart then
        killed the consumer."""
        try:
            return self.consumer.poll(timeout_ms=self.poll_timeout_ms)
        except KafkaError as exc:
            if not exc.retriable:
                raise
            # _check_broker, called on the empty poll, says it to the operator (every 5 s).
            log.debug("Kafka poll failed (%s); retrying", exc)
            time.sleep(self.poll_timeout_ms / 1000)  # not a busy loop while it is away
            return {}

    def _check_broker(self, every: float = 5.0) -> None:
        """An idle poll cannot tell a quiet topic from a broker that is away: ask the broker.

        kafka-python reconnects forever; past ``outage_seconds`` without an answer, stop.
        """
        now = time.monotonic()
        if now - self._last_check < every:
            return
        self._last_check = now
        try:
            self.consumer.end_offsets(sorted(self.consumer.assignment()), timeout_ms=3000)
        except KafkaError as exc:
            away = now - self._heard_from_broker
            if away > self.outage_seconds:
                raise ServiceUnavailable(
                    f"Kafka at {self.bootstrap} did not answer for {away:.0f}s ({exc}); stopped. "
                    "The next start resumes from what Redis holds"
                ) from None
            log.warning(
                "Kafka did not answer (%s); retrying for up to %gs", exc, self.outage_seconds
            )
        else:
            self._heard_from_broker = now

    def _look_for_new_partitions(self, every: float = 30.0) -> None:
        now = time.monotonic()
        if now - self._looked_for_partitions >= every:
            self._looked_for_partitions = now
            self._assign(self._partitions())

    def commit(self, block: Sequence[SourceRecord]) -> None:
        """Record progress in the group too, for lag monitoring (the store is the truth)."""
        if not block:
            return
        last = block[-1]
        tp = TopicPartition(last.topic, last.partition)
        self._applied_to[tp] = last.offset + 1
        try:
            self.consumer.commit({tp: OffsetAndMetadata(last.offset + 1, "", -1)})
        except KafkaError as exc:
            if not self._commit_failed:
                log.warning("could not commit the group offset (lag will look stale): %s", exc)
            self._commit_failed = True
        else:
            self._commit_failed = False

    def lag(self) -> dict[tuple[str, int], int]:
        """Records of each partition not applied yet: its end offset as of the latest fetch,
        minus the offset after the last block committed. Asks the broker nothing; a partition
        not fetched yet is left out. Call it from the thread that reads."""
        lag = {}
        for tp, applied_to in self._applied_to.items():
            high = self.consumer.highwater(tp)
            if high is not None:
                lag[(tp.topic, tp.partition)] = max(high - applied_to, 0)
        return lag

    def close(self) -> None:
        self.consumer.close(autocommit=False)


class KafkaPublisher:
    """Produces invoice records, keyed by customer id, at an optional steady rate.

    ``flush`` returns once the broker has acknowledged every record sent.
    """

    def __init__(
        self, bootstrap: KafkaTarget, topic: str = "invoices", give_up_after: float = 60.0
    ):
        self.topic = topic
        # Large batches: publishing is bound by kafka-python's per-record cost.
        self.producer = ConfirmedProducer(
            bootstrap, give_up_after, linger_ms=20, batch_size=512 * 1024
        )
        self._sent = 0

    # Records held for confirmation at most: memory stays flat however long the file.
    CONFIRM_EVERY = 20_000

    def send(self, record: dict[str, Any]) -> None:
        customer = record.get("customer_id")
        key = str(customer).encode() if customer is not None else None
        self.producer.send(self.topic, key, orjson.dumps(record))
        self._sent += 1
        if self._sent % self.CONFIRM_EVERY == 0:
            self.producer.confirm()

    def flush(self) -> None:
        self.producer.confirm()

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
