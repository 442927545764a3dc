"""In-process implementations of the ports: the embedded mode's state and sink.

Same semantics as the Redis store and the Kafka sink (the contract tests hold
both to them), kept in dictionaries. The state can be saved to and loaded from
a snapshot file so an embedded run continues where it stopped.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from consumer.ports import ApplyResult, Customer, EventPage, SourceRecord
from segmenter.errors import InputFileError, InvalidRecord
from segmenter.features import CustomerState
from segmenter.lines import InvoiceLine, LineKind, classify
from segmenter.policy import InsiderStatus
from segmenter.segmentation import StepResult

SNAPSHOT_VERSION = 1


@dataclass
class MemoryFeatureStore:
    """Feature store in dictionaries. Not thread-safe: the pipeline is its one writer."""

    backend = "memory"

    states: dict[str, CustomerState] = field(default_factory=dict)
    statuses: dict[str, InsiderStatus] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    ignored: dict[str, int] = field(default_factory=dict)
    outbox: list[dict[str, object]] = field(default_factory=list)
    published: int = 0
    pending_ids: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    insider_since: dict[str, int] = field(default_factory=dict)
    histories: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    model: bytes | None = None
    last_ts: int | None = None

    def stored_offset(self, topic: str, partition: int) -> int:
        return self.offsets.get(f"{topic}:{partition}", -1)

    def apply(
        self,
        topic: str,
        partition: int,
        lines: Sequence[tuple[int, InvoiceLine]],
        last_offset: int,
    ) -> ApplyResult:
        key = f"{topic}:{partition}"
        stored = self.offsets.get(key, -1)
        applied = duplicates = stale = 0
        seen, states, pending = self.seen, self.states, self.pending_ids
        watermark = self.last_ts
        for offset, line in lines:
            if offset <= stored:
                stale += 1
                continue
            if line.event_id in seen:
                duplicates += 1
                continue
            seen.add(line.event_id)
            applied += 1
            if watermark is None or line.invoice_ts > watermark:
                watermark = line.invoice_ts
            kind, reason = classify(line)
            if kind is LineKind.IGNORED:
                assert reason is not None
                self.ignored[reason.value] = self.ignored.get(reason.value, 0) + 1
                continue
            cid = line.customer_id
            assert cid is not None
            state = states.get(cid)
            if state is None:
                state = states[cid] = CustomerState()
            state.apply(line, kind)
            pending[cid] = None
        self.last_ts = watermark
        if last_offset > stored:
            self.offsets[key] = last_offset
        return ApplyResult(applied, duplicates, stale)

    def pending(self) -> list[str]:
        return list(self.pending_ids)

    def load(self, customer_ids: Sequence[str]) -> list[Customer]:
        return [
            Customer(cid, self.states[cid], self.statuses.get(cid, InsiderStatus()))
            for cid in customer_ids
            if cid in self.states
        ]

    def commit_step(self, result: StepResult, model: bytes) -> None:
        for cid, status in result.statuses.items():
            self.statuses[cid] = status
            if status.insider and status.insider_since is not None:
                self.insider_since[cid] = status.insider_since
            else:
                self.insider_since.pop(cid, None)
        for event in result.events:
            doc = event.as_dict()
            self.outbox.append(doc)
            self.histories.setdefault(event.customer_id, []).append(doc)
            key = f"{event.type}:{event.reason.code}"
            self.counts[key] = self.counts.get(key, 0) + 1
        self.model = model
        self.pending_ids.clear()

    def watermark(self) -> int | None:
        return self.last_ts

    def model_checkpoint(self) -> bytes | None:
        return self.model

    def ignored_counts(self) -> dict[str, int]:
        return dict(self.ignored)

    def customer(self, customer_id: str) -> Customer | None:
        state = self.states.get(customer_id)
        if state is None:
            return None
        return Customer(customer_id, state, self.statuses.get(customer_id, InsiderStatus()))

    def customers(self) -> Iterator[Customer]:
        for cid, state in list(self.states.items()):
            if state.has_purchases:
                yield Customer(cid, state, self.statuses.get(cid, InsiderStatus()))

    def history(self, customer_id: str) -> list[dict[str, object]]:
        return list(self.histories.get(customer_id, []))

    def event_counts(self) -> dict[str, int]:
        return dict(self.counts)

    def customer_count(self) -> int:
        return sum(1 for state in self.states.values() if state.has_purchases)

    def insiders(self, offset: int, limit: int) -> tuple[list[Customer], int]:
        ordered = sorted(self.insider_since.items(), key=lambda item: (item[1], item[0]))
        page = ordered[offset : offset + limit]
        return [c for cid, _ in page if (c := self.customer(cid)) is not None], len(ordered)

    def events(self, after: str | None, limit: int) -> EventPage:
        start = int(after) if after else 0
        page = self.outbox[start : start + limit]
        cursors = tuple(str(start + i) for i in range(1, len(page) + 1))
        return EventPage(page, cursors[-1] if cursors else None, cursors)

    def unpublished_events(self) -> tuple[list[dict[str, object]], str | None]:
        events = self.outbox[self.published :]
        return events, (str(len(self.outbox)) if events else None)

    def mark_published(self, cursor: str) -> None:
        self.published = int(cursor)

    def ping(self) -> bool:
        return True

    # Snapshots: the whole embedded state in one file.
    def save(self, path: Path) -> None:
        """Write the state atomically (temp file + rename), so a crash never leaves half a file."""
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as out:
            pickle.dump((SNAPSHOT_VERSION, self), out, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)

    @staticmethod
    def load_snapshot(path: Path) -> MemoryFeatureStore:
        try:
            with path.open("rb") as src:
                version, store = pickle.load(src)
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise InputFileError(f"{path}: not a readable Insiders snapshot ({exc})") from None
        if version != SNAPSHOT_VERSION or not isinstance(store, MemoryFeatureStore):
            raise InputFileError(f"{path}: snapshot version {version}, want {SNAPSHOT_VERSION}")
        return store


@dataclass
class MemoryEventSink:
    """Collects events and dead letters in lists (embedded mode, and a probe for tests)."""

    events: list[dict[str, object]] = field(default_factory=list)
    dead_letters: list[dict[str, object]] = field(default_factory=list)

    def dead_letter(self, record: SourceRecord, error: InvalidRecord) -> None:
        self.dead_letters.append(dead_letter_document(record, error))

    def publish(self, events: Sequence[dict[str, object]]) -> None:
        self.events.extend(events)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def dead_letter_document(record: SourceRecord, error: InvalidRecord) -> dict[str, object]:
    """What a dead letter says about a rejected record (headers on Kafka, a dict here)."""
    return {
        "reason": error.reason,
        "detail": error.detail,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "value": record.value,
    }
