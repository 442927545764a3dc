"""The ports of the pipeline and the records that cross them.

Each port has two real implementations: Redis / Kafka for production and an
in-process one for the embedded mode. The contract tests in ``tests/contract``
run the same checks against both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from segmenter.errors import InvalidRecord
from segmenter.features import CustomerState
from segmenter.lines import InvoiceLine
from segmenter.policy import InsiderStatus
from segmenter.segmentation import StepResult


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One raw record as read from a source, with where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone


# A customer's running sums stay below this (micro-pounds or units): Redis keeps 64-bit integers.
SUM_LIMIT = 9 * 10**18

SECONDS_PER_DAY = 86_400

# Readers of the outbox other than the event sink (webhook subscriptions, see
# consumer/subscriptions.py) hold the events they have not yet been sent: a hash (a dict in
# memory) of name -> the cursor of the last event sent to that reader ("": none yet). The
# outbox's trim never removes an event after a hold.
EVENT_HOLDS = "events:holds"

# A cursor for FeatureStore.wait_events: after the newest event there is (as XREAD's "$").
NEWEST = "$"


@dataclass(frozen=True, slots=True)
class Retention:
    """How much history a feature store keeps, so that its state stays bounded.

    ``dedupe_days``: an applied event id is remembered while its line's invoice day is
    within this many days of the watermark's (the latest invoice time applied); a line
    dated before that can no longer be checked, and is refused (``beyond_retention``).
    The invoice numbers that count a customer's distinct invoices are kept as long.
    ``events_keep``: the outbox keeps about this many events once they are published.
    ``history_keep``: each customer's history keeps their last this many events.
    0 keeps everything, for each of the three.

    >>> cutoff_day(Retention(dedupe_days=30), watermark=100 * SECONDS_PER_DAY + 5, floor=None)
    70
    >>> cutoff_day(Retention(dedupe_days=0), watermark=100 * SECONDS_PER_DAY, floor=None) is None
    True
    >>> cutoff_day(Retention(dedupe_days=30), watermark=100 * SECONDS_PER_DAY, floor=75)
    75
    """

    dedupe_days: int = 400
    events_keep: int = 200_000
    history_keep: int = 100


DEFAULT_RETENTION = Retention()


def cutoff_day(retention: Retention, watermark: int | None, floor: int | None) -> int | None:
    """The first day (epoch days) whose lines are still accepted and checked; None: every day.

    ``floor`` is the highest cutoff the store has used: it never moves back, so that a
    longer retention set later cannot accept a line whose id was already forgotten.
    """
    cut = floor
    if retention.dedupe_days > 0 and watermark is not None:
        moving = watermark // SECONDS_PER_DAY - retention.dedupe_days
        cut = moving if cut is None else max(cut, moving)
    return cut


@dataclass(frozen=True, slots=True)
class Refusal:
    """A valid-looking line the store refused, and why (it goes to the dead-letter topic)."""

    offset: int
    reason: str  # "conflicting_duplicate", "out_of_range" or "beyond_retention"
    detail: str

    @classmethod
    def conflict(cls, offset: int, event_id: str) -> Refusal:
        return cls(
            offset,
            "conflicting_duplicate",
            f"event {event_id} was applied before with other content; the first content stands",
        )

    @classmethod
    def beyond_64_bits(cls, offset: int, event_id: str, customer_id: str) -> Refusal:
        return cls(
            offset,
            "out_of_range",
            f"event {event_id}: customer {customer_id}'s running totals would pass "
            f"{SUM_LIMIT:.0e} micro-pounds or units",
        )

    @classmethod
    def beyond_retention(cls, offset: int, event_id: str, invoice_ts: int, cutoff: int) -> Refusal:
        """A line dated before the dedupe retention's cutoff (``cutoff`` in epoch days).

        >>> refusal = Refusal.beyond_retention(7, "536365:0", 1291191960, 14975)
        >>> refusal.detail[:70]
        "event 536365:0: field 'invoice_date' is '2010-12-01 08:26:00', before "
        >>> refusal.detail[70:89]
        '2011-01-01 00:00:00'
        """
        return cls(
            offset,
            "beyond_retention",
            f"event {event_id}: field 'invoice_date' is '{_moment(invoice_ts)}', before "
            f"{_moment(cutoff * SECONDS_PER_DAY)}, where the ids kept for dedupe begin "
            "(INSIDERS_DEDUPE_DAYS before the latest invoice date applied): it cannot be "
            "checked for a repeat, so it is not applied",
        )


def _moment(ts: int) -> str:
    """Event time (naive epoch seconds) as the records spell it: ``2011-12-09 12:50:00``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: int = 0
    duplicates: int = 0  # a repeated event_id with the same content
    stale: int = 0  # at or below the stored offset of its partition
    # When not empty, nothing was applied: apply again without these lines.
    refused: tuple[Refusal, ...] = ()


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    state: CustomerState
    status: InsiderStatus


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[dict[str, object]]
    next_cursor: str | None  # the last event's cursor; None on an empty page
    cursors: tuple[str, ...] = ()  # each event's own cursor: reading after it resumes there


class FeatureStore(Protocol):
    """Customer state, statuses, source offsets and the model checkpoint, kept together.

    ``apply`` and ``commit_step`` are each atomic: a state change and the source
    offset (or the pending work) it accounts for are written in one unit.
    """

    backend: str  # "redis" or "memory", for health reports

    def stored_offset(self, topic: str, partition: int) -> int:
        """The last offset applied from this partition, or -1."""
        ...

    def apply(
        self,
        topic: str,
        partition: int,
        lines: Sequence[tuple[int, InvoiceLine]],
        last_offset: int,
    ) -> ApplyResult:
        """Fold ``lines`` (offset, line) into customer state and record ``last_offset``.

        Lines at or below the stored offset and repeated event ids change nothing.
        Customers whose state changed are queued for the next segmentation step.
        All or nothing: if any line is refused (an applied event id with other content,
        sums that would leave the 64-bit range, or a line dated before the dedupe
        retention's cutoff, see :class:`Retention`), nothing is written and the result
        lists the refusals. Ids and invoice numbers past the retention are forgotten a
        bounded amount at a time, here.
        """
        ...

    def pending(self) -> list[str]:
        """Customers changed since the last segmentation step, in first-change order."""
        ...

    def load(self, customer_ids: Sequence[str]) -> list[Customer]: ...

    def commit_step(self, result: StepResult, model: bytes) -> None:
        """Store statuses, append events to the outbox and histories, checkpoint, atomically.

        Each history keeps its customer's last ``Retention.history_keep`` events.
        """
        ...

    def revision(self) -> int:
        """A count that grows with every write a reader could see (an ``apply`` that applied
        a line, a ``commit_step``, a trim of the outbox), in the same atomic unit as that
        write: a reader that saw the same revision before has nothing new to read."""
        ...

    def watermark(self) -> int | None:
        """The latest invoice time applied (event time), or None before any line."""
        ...

    def model_checkpoint(self) -> bytes | None: ...

    def save_report(self, report: bytes) -> int:
        """Keep the report the segmentation's writer built from its roster (see
        :mod:`api.snapshots`), in place of the one before, for the API to serve. Saving it
        is a write readers see: it adds one to :meth:`revision`, and returns the revision
        the store is at with it saved."""
        ...

    def saved_report(self) -> tuple[bytes, int] | None:
        """The report last saved, as saved (its readers check it), and the revision the
        store was at once it was saved: if :meth:`revision` is still that, nothing has
        changed since. None: no report was saved."""
        ...

    def ignored_counts(self) -> dict[str, int]: ...

    # Reads, for the API and exports.
    def customer(self, customer_id: str) -> Customer | None: ...

    def customers(self) -> Iterator[Customer]:
        """Every customer with at least one purchase."""
        ...

    def customer_count(self) -> int: ...

    def history(self, customer_id: str) -> list[dict[str, object]]:
        """The customer's entry and exit events, oldest first."""
        ...

    def event_counts(self) -> dict[str, int]:
        """Events so far by ``<type>:<reason code>``, e.g. ``insider.exited:lapsed``."""
        ...

    def insiders(self, offset: int, limit: int) -> tuple[list[Customer], int]:
        """A page of Insiders ordered by entry time, and the total count.

        Loads at most ``limit`` customers (none for ``limit`` 0).
        """
        ...

    def insider_count(self) -> int:
        """How many Insiders there are, without reading any of them."""
        ...

    def events(self, after: str | None, limit: int) -> EventPage:
        """Events from the outbox after ``after`` (exclusive), oldest first.

        The outbox keeps about ``Retention.events_keep`` published events: a cursor older
        than the oldest one kept reads from the oldest kept.
        """
        ...

    def wait_events(self, after: str | None, limit: int, timeout: float) -> EventPage:
        """:meth:`events`, but when none is after ``after``, wait up to ``timeout`` seconds
        for one to be appended (an empty page: none came). For readers that follow the outbox
        live (the API's event streams), without polling it.

        ``after`` may also be :data:`NEWEST`: only events appended from now on. An empty page
        then gives in ``next_cursor`` where it waited from, the cursor to wait after next
        (None: before the first event), so that a follower misses nothing between waits."""
        ...

    def unpublished_events(self) -> tuple[list[dict[str, object]], str | None]:
        """Outbox events not yet handed to the event sink, and the cursor of the last one."""
        ...

    def mark_published(self, cursor: str) -> None:
        """Record that every event up to ``cursor`` reached the event sink.

        When every event has, the outbox is trimmed to about ``Retention.events_keep``;
        an event not yet published is never trimmed, nor one after a hold (see
        :data:`EVENT_HOLDS`): the outbox then keeps more until the holder has been sent it.
        """
        ...

    def ping(self) -> bool: ...


class EventSink(Protocol):
    """Where Insider events and rejected records go (Kafka topics, or in-process lists)."""

    def dead_letter(self, record: SourceRecord, error: InvalidRecord) -> None: ...

    def publish(self, events: Sequence[dict[str, object]]) -> None:
        """Deliver events to subscribers; returns once they are durable there."""
        ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class BlockSource(Protocol):
    """Where a pipeline's blocks come from: a file, or Kafka."""

    stopping: bool  # set to stop after the block in hand

    def blocks(self) -> Iterator[list[SourceRecord]]: ...

    def commit(self, block: Sequence[SourceRecord]) -> None: ...

    def close(self) -> None: ...


class RewindableSource(BlockSource, Protocol):
    """A source that can go back to where the store says it left off (Kafka)."""

    def rewind(self) -> None: ...
