"""The pipeline: validate a block, apply it, segment the customers it changed, emit events.

Order of effects for one block, which is what makes the effect exactly-once:
1. rejected records go to the dead-letter sink (flushed before anything moves on);
2. the block's lines and its last offset are applied to the store in one atomic unit;
3. the segmentation step runs on the changed customers, and the daily sweep (when
   due) on every customer; each commits statuses, outbox events and the model
   checkpoint in one atomic unit;
4. outbox events are published to the event sink, then marked published;
5. only then does the caller commit the source offset.
With a report writer, the report is then built from this process's roster and saved in
the store when it is due (derived data: a crash loses nothing it cannot rebuild).
A crash anywhere replays the block: step 2 skips what it already holds, step 3 is
re-run from the pending set, and step 4 re-sends what was not marked (subscribers
dedupe by ``event_id``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from consumer.ports import Customer, EventSink, FeatureStore, Refusal, SourceRecord
from consumer.records import DateParser, parse_record
from segmenter.errors import CheckpointError, InvalidRecord
from segmenter.lines import InvoiceLine
from segmenter.model import SegmentModel
from segmenter.policy import InsiderPolicy
from segmenter.roster import Roster
from segmenter.segmentation import Segmenter, StepResult

log = logging.getLogger(__name__)

Clock = Callable[[FeatureStore], int | None]

# Rejections of one reason logged in full per process; the rest are only counted.
LOGGED_PER_REASON = 5
# From this many customers on, the first read of them all for a ranking is logged (about a
# second's work over Redis; a small store's read stays quiet, as do `insiders evaluate`'s).
ROSTER_LOG_CUSTOMERS = 50_000


class ReportWriter(Protocol):
    """Builds the business report from the writer's roster and saves it in the store, for
    the API to serve (:class:`api.snapshots.ReportWriter`)."""

    def due(self, now: int | None, final: bool) -> bool:
        """Whether to build one now: the store (or ``now``) moved on since the last, and
        its time has come (``final``: the input is done, so at once)."""
        ...

    def write(self, roster: Roster, segmenter: Segmenter | None, now: int | None) -> None: ...


def event_clock(store: FeatureStore) -> int | None:
    """Replay time: "now" is the latest invoice time applied (the watermark)."""
    return store.watermark()


def wall_clock(store: FeatureStore) -> int | None:
    """Live time: "now" is the wall clock, in the same naive epoch seconds as event time."""
    return int(time.time())


@dataclass
class PipelineStats:
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    stale: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    events: int = 0
    blocks: int = 0

    def absorb(self, other: PipelineStats) -> None:
        """Add ``other``'s counts to these (a consumer that rebuilt its pipeline)."""
        self.records += other.records
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.stale += other.stale
        self.rejected.update(other.rejected)
        self.events += other.events
        self.blocks += other.blocks

    def summary(self) -> str:
        rejected = ", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "none"
        return (
            f"{self.records:,} records: {self.applied:,} applied, {self.duplicates:,} duplicate, "
            f"{self.stale:,} already applied, {sum(self.rejected.values()):,} rejected "
            f"({rejected}); {self.events:,} insider events"
        )


def _mismatch(store: FeatureStore, saved: SegmentModel, wanted: SegmentModel) -> str:
    """Why a stored model of other settings is refused, and what to do, in one line."""
    prefix = getattr(store, "prefix", None)
    where, who, remedy = (
        (f"under Redis prefix {prefix!r}", "consumer", "another INSIDERS_REDIS_PREFIX")
        if prefix is not None
        else ("in the snapshot", "run", "another --snapshot file")
    )
    return (
        f"the model {where} has {saved.n_segments} segments and seed {saved.seed}; this {who} "
        f"is set to {wanted.n_segments} and {wanted.seed}: use the same settings or {remedy}"
    )


class Pipeline:
    """Runs blocks of source records through validation, the store and the segmenter."""

    def __init__(
        self,
        store: FeatureStore,
        sink: EventSink,
        model: SegmentModel | None = None,
        clock: Clock = event_clock,
        policy: InsiderPolicy | None = None,
        report: ReportWriter | None = None,
    ) -> None:
        self.store = store
        self.sink = sink
        self.clock = clock
        self.report = report
        self.segmenter = Segmenter(model or SegmentModel(), policy or InsiderPolicy())
        checkpoint = store.model_checkpoint()
        if checkpoint is not None:
            # The stored model and sweep clock, with this process's policy. A model of
            # other settings is refused: continuing it would silently override them.
            wanted = self.segmenter.model
            self.segmenter.restore(checkpoint)
            saved = self.segmenter.model
            if (saved.n_segments, saved.seed) != (wanted.n_segments, wanted.seed):
                raise CheckpointError(_mismatch(store, saved, wanted))
            log.info("restored model v%d from the store", saved.version)
        self.stats = PipelineStats()
        # Every customer as this pipeline, the one writer, last read or wrote them, as
        # columns: the daily ranking reads them here, not from the store. Filled by the
        # first ranking (one full read per pipeline), then kept up to date by each step.
        self._roster: Roster | None = None
        self._dates = DateParser()
        self._offsets: dict[tuple[str, int], int] = {}
        # Work left over by a crash between apply and the segmentation step, or before
        # the outbox was published: finish it before taking new input, exactly as the end
        # of process() would have (the sweep too: the source resumes after the block, so
        # the block that crashed is not processed again).
        self.segment()
        self.sweep()
        self.publish_events()

    def process(self, block: Sequence[SourceRecord]) -> None:
        """Process consecutive records of one partition; durable when this returns.

        An empty block is a tick of an idle live stream: only the sweep may run.
        """
        if not block:
            self.sweep()
            self.publish_events()
            self.write_report()
            return
        first = block[0]
        key = (first.topic, first.partition)
        stored = self._offsets.get(key)
        if stored is None:
            stored = self._offsets[key] = self.store.stored_offset(*key)
        stats = self.stats
        stats.records += len(block)
        lines: list[tuple[int, InvoiceLine]] = []
        rejected = 0
        for record in block:
            # A cheap pre-check that spares a replay the parsing; the apply script checks
            # the offset again, atomically, which is what the guarantee rests on.
            if record.offset <= stored:
                stats.stale += 1
                continue
            try:
                lines.append((record.offset, parse_record(record.value, self._dates)))
            except InvalidRecord as error:
                self._log_rejection(record, error)
                self.sink.dead_letter(record, error)
                stats.rejected[error.reason] += 1
                rejected += 1
        if rejected:
            self.sink.flush()
        last = block[-1].offset
        if last > stored:
            result = self.store.apply(first.topic, first.partition, lines, last)
            if result.refused:
                # Nothing was written: dead-letter the refused lines, then apply the rest.
                lines = self._dead_letter_refused(block, lines, result.refused)
                result = self.store.apply(first.topic, first.partition, lines, last)
                assert not result.refused, "a second refusal of the same block"
            stats.applied += result.applied
            stats.duplicates += result.duplicates
            stats.stale += result.stale
            self._offsets[key] = last
        stats.blocks += 1
        self.segment()
        self.sweep()
        self.publish_events()
        self.write_report()

    def _dead_letter_refused(
        self,
        block: Sequence[SourceRecord],
        lines: list[tuple[int, InvoiceLine]],
        refused: Sequence[Refusal],
    ) -> list[tuple[int, InvoiceLine]]:
        by_offset = {record.offset: record for record in block}
        for refusal in refused:
            record = by_offset[refusal.offset]
            error = InvalidRecord(refusal.reason, refusal.detail)
            self._log_rejection(record, error)
            self.sink.dead_letter(record, error)
            self.stats.rejected[refusal.reason] += 1
        self.sink.flush()
        out = {refusal.offset for refusal in refused}
        return [(offset, line) for offset, line in lines if offset not in out]

    def _log_rejection(self, record: SourceRecord, error: InvalidRecord) -> None:
        """The first few rejections of each reason in full; the rest are counted (the summary
        and the dead-letter topic have them all), so that a bad file does not flood the log."""
        seen = self.stats.rejected[error.reason]
        if seen < LOGGED_PER_REASON:
            log.warning(
                "rejected %s[%d]@%d: %s", record.topic, record.partition, record.offset, error
            )
        elif seen == LOGGED_PER_REASON:
            log.warning(
                "more %s rejections: counted, not logged (each is on the dead-letter topic)",
                error.reason,
            )

    def segment(self) -> None:
        pending = self.store.pending()
        if not pending:
            return
        now = self.clock(self.store)
        if now is None:
            return
        customers = self.store.load(pending)
        result = self.segmenter.step([(c.customer_id, c.state, c.status) for c in customers], now)
        self._commit(result)
        self._remember(customers, result)

    def sweep(self) -> None:
        """Once per sweep interval of the clock: rank everyone and hold the target share
        (or, without one, re-assess the overdue Insiders); time-driven exits come from here.

        Ranking every customer is array code over this process's roster once a day of
        event time, plus one decision per customer who enters, leaves or changes segment;
        the store is read whole only for the first ranking (see the README on scale).
        """
        now = self.clock(self.store)
        if now is None or not self.segmenter.sweep_due(now):
            return
        result = self.segmenter.sweep(self._roster_now(), now)
        self._commit(result)
        self._remember((), result)

    def _roster_now(self) -> Roster:
        if self._roster is None:
            # Once per process. Over Redis it takes about 21 s at a million customers, so past
            # ROSTER_LOG_CUSTOMERS the log says what the consumer is doing meanwhile.
            count = self.store.customer_count()
            loud = count >= ROSTER_LOG_CUSTOMERS
            if loud:
                log.info("reading the store's %d customers for the daily ranking", count)
            started = time.perf_counter()
            self._roster = Roster.of(
                (c.customer_id, c.state, c.status) for c in self.store.customers()
            )
            if loud:
                seconds = time.perf_counter() - started
                log.info("read %d customers in %.1fs", len(self._roster), seconds)
        return self._roster

    def write_report(self, final: bool = False) -> None:
        """Have the report writer, if any, build the report from the roster and save it,
        when it is due; ``final``: the input is done (see :class:`ReportWriter`)."""
        if self.report is None:
            return
        now = self.clock(self.store)
        if self.report.due(now, final):
            # The model and rules the store holds, as the API reads them: this process's
            # rules are not the store's until a step of this process commits them.
            checkpoint = self.store.model_checkpoint()
            segmenter = None if checkpoint is None else Segmenter.from_checkpoint(checkpoint)
            self.report.write(self._roster_now(), segmenter, now)

    def _remember(self, customers: Iterable[Customer], result: StepResult) -> None:
        """Bring the ranking's copy up to date with what a committed step read and wrote."""
        roster = self._roster
        if roster is None:
            return
        for customer in customers:
            roster.put(customer.customer_id, customer.state, customer.status)
        for cid, status in result.statuses.items():
            roster.put_status(cid, status)

    def _commit(self, result: StepResult) -> None:
        self.store.commit_step(result, self.segmenter.checkpoint())

    def publish_events(self) -> None:
        events, cursor = self.store.unpublished_events()
        if events and cursor is not None:
            self.sink.publish(events)
            self.store.mark_published(cursor)
            self.stats.events += len(events)
