"""The ports of the pipeline and the records that cross them.

Each port has two real implementations: Redis / Kafka for production and an
in-process one for the embedded mode. The contract tests in ``tests/contract``
run the same checks against both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Refusal:
    """A valid-looking line the store refused, and why (it goes to the dead-letter topic)."""

    offset: int
    reason: str  # "conflicting_duplicate" or "out_of_range"
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
        or sums that would leave the 64-bit range), nothing is written and the result
        lists the refusals.
        """
        ...

    def pending(self) -> list[str]:
        """Customers changed since the last segmentation step, in first-change order."""
        ...

    def load(self, customer_ids: Sequence[str]) -> list[Customer]: ...

    def commit_step(self, result: StepResult, model: bytes) -> None:
        """Store statuses, append events to the outbox and histories, checkpoint, atomically."""
        ...

    def watermark(self) -> int | None:
        """The latest invoice time applied (event time), or None before any line."""
        ...

    def model_checkpoint(self) -> bytes | None: ...

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
        """A page of Insiders ordered by entry time, and the total count."""
        ...

    def events(self, after: str | None, limit: int) -> EventPage:
        """Events from the outbox after ``after`` (exclusive), oldest first."""
        ...

    def unpublished_events(self) -> tuple[list[dict[str, object]], str | None]:
        """Outbox events not yet handed to the event sink, and the cursor of the last one."""
        ...

    def mark_published(self, cursor: str) -> None: ...

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
