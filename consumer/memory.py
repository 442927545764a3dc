"""In-process implementations of the ports: the embedded mode's state and sink.

Same semantics as the Redis store and the Kafka sink (the contract tests hold
both to them), kept in dictionaries. The state can be saved to and loaded from
a snapshot file so an embedded run continues where it stopped: gzip-compressed,
versioned JSON (never a pickle), checked field by field when it is loaded.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from consumer.ports import SUM_LIMIT, ApplyResult, Customer, EventPage, Refusal, SourceRecord
from segmenter.errors import CheckpointError, InputFileError, InvalidRecord
from segmenter.features import CustomerState
from segmenter.lines import InvoiceLine, LineKind, classify, fingerprint
from segmenter.policy import InsiderStatus
from segmenter.segmentation import Segmenter, StepResult
from segmenter.state import Fields, describe, join

SNAPSHOT_FORMAT = "insiders.snapshot"
SNAPSHOT_VERSION = 1
_SNAPSHOT_FIELDS = (
    "format",
    "version",
    "customers",
    "statuses",
    "offsets",
    "seen",
    "ignored",
    "outbox",
    "published",
    "pending",
    "last_ts",
    "model",
)
_CUSTOMER_FIELDS = (
    "revenue_micros",
    "invoices",
    "lines",
    "units",
    "returned_micros",
    "returned_units",
    "first_ts",
    "last_ts",
    "invoice_nos",
)
_STATUS_FIELDS = ("segment", "insider", "insider_since", "sequence", "model_version")
_EVENT_FIELDS = (
    "event_id",
    "type",
    "customer_id",
    "at",
    "reason",
    "features",
    "segment",
    "model_version",
)


@dataclass
class MemoryFeatureStore:
    """Feature store in dictionaries. Not thread-safe: the pipeline is its one writer."""

    backend = "memory"

    states: dict[str, CustomerState] = field(default_factory=dict)
    statuses: dict[str, InsiderStatus] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)  # event id -> content fingerprint
    ignored: dict[str, int] = field(default_factory=dict)
    outbox: list[dict[str, object]] = field(default_factory=list)
    published: int = 0
    pending_ids: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    insider_since: dict[str, int] = field(default_factory=dict)
    histories: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    model: bytes | None = None
    last_ts: int | None = None
    # The largest running total of any customer (None: not yet computed), for the 64-bit check.
    _largest: int | None = field(default=None, repr=False, compare=False)

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
        # Pass 1, as the Redis script does: sort the lines, check the sums, write nothing yet.
        fresh: list[tuple[int, InvoiceLine, int]] = []
        within: dict[str, int] = {}
        refused: list[Refusal] = []
        duplicates = stale = 0
        for offset, line in lines:
            if offset <= stored:
                stale += 1
                continue
            print_ = fingerprint(line)
            before = within.get(line.event_id)
            if before is None:
                before = self.seen.get(line.event_id)
            if before is None:
                within[line.event_id] = print_
                fresh.append((offset, line, print_))
            elif before == print_:
                duplicates += 1
            else:
                refused.append(Refusal.conflict(offset, line.event_id))
        if self._may_pass_64_bits(fresh):
            refused.extend(self._beyond_64_bits(fresh))
        if refused:
            return ApplyResult(refused=tuple(refused))
        # Pass 2: write.
        seen, states, pending = self.seen, self.states, self.pending_ids
        watermark = self.last_ts
        for _, line, print_ in fresh:
            seen[line.event_id] = print_
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
            self._largest = max(self._largest or 0, _largest_total(state))
        self.last_ts = watermark
        if last_offset > stored:
            self.offsets[key] = last_offset
        return ApplyResult(len(fresh), duplicates, stale)

    def _may_pass_64_bits(self, fresh: list[tuple[int, InvoiceLine, int]]) -> bool:
        """A cheap bound first: only a block that could reach the limit is checked in detail."""
        if self._largest is None:
            self._largest = max((_largest_total(s) for s in self.states.values()), default=0)
        block = sum(abs(line.quantity) * (line.unit_price_micros + 1) for _, line, _ in fresh)
        return self._largest + block > SUM_LIMIT

    def _beyond_64_bits(self, fresh: list[tuple[int, InvoiceLine, int]]) -> list[Refusal]:
        """Lines of customers whose running sums would pass what Redis keeps exactly."""
        sums: dict[str, list[int]] = {}
        offsets: dict[str, list[tuple[int, str]]] = {}
        for offset, line, _ in fresh:
            kind, _ = classify(line)
            if kind is LineKind.IGNORED or line.customer_id is None:
                continue
            cid = line.customer_id
            add = sums.setdefault(cid, [0, 0, 0, 0])
            amount = abs(line.quantity) * line.unit_price_micros
            if kind is LineKind.PURCHASE:
                add[0] += amount
                add[1] += line.quantity
            else:
                add[2] += amount
                add[3] -= line.quantity
            offsets.setdefault(cid, []).append((offset, line.event_id))
        out: list[Refusal] = []
        for cid, add in sums.items():
            cur = self.states.get(cid) or CustomerState()
            totals = (
                cur.revenue_micros + add[0],
                cur.units + add[1],
                cur.returned_micros + add[2],
                cur.returned_units + add[3],
            )
            if max(totals) > SUM_LIMIT:
                out.extend(Refusal.beyond_64_bits(o, event_id, cid) for o, event_id in offsets[cid])
        return out

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
    def to_state(self) -> dict[str, Any]:
        """The whole state as JSON-ready data.

        Histories, event counts and the Insider index are not written: they follow from
        the outbox and the statuses, and are rebuilt from them on load.
        """
        return {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "customers": {cid: _customer_doc(state) for cid, state in self.states.items()},
            "statuses": {cid: _status_doc(status) for cid, status in self.statuses.items()},
            "offsets": dict(self.offsets),
            "seen": dict(sorted(self.seen.items())),
            "ignored": dict(self.ignored),
            "outbox": self.outbox,
            "published": self.published,
            "pending": list(self.pending_ids),
            "last_ts": self.last_ts,
            # The checkpoint is JSON itself: kept as an object, written back byte for byte.
            "model": None if self.model is None else orjson.loads(self.model),
        }

    @classmethod
    def from_state(cls, state: object) -> MemoryFeatureStore:
        """The store ``to_state`` described, after checking every field's type and shape."""
        if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
            found = describe(state.get("format")) if isinstance(state, dict) else describe(state)
            raise CheckpointError(f"not an Insiders snapshot (format {found})")
        if state.get("version") != SNAPSHOT_VERSION:
            raise CheckpointError(
                f"Insiders snapshot version {describe(state.get('version'))}: "
                f"this release reads version {SNAPSHOT_VERSION}"
            )
        doc = Fields(state, "", _SNAPSHOT_FIELDS)
        store = cls(
            states={
                cid: _read_customer(value, join("customers", cid))
                for cid, value in doc.mapping("customers").items()
            },
            statuses={
                cid: _read_status(value, join("statuses", cid))
                for cid, value in doc.mapping("statuses").items()
            },
            offsets=doc.counts("offsets"),
            seen=doc.counts("seen"),
            ignored=doc.counts("ignored"),
            outbox=[_read_event(e, join("outbox", i)) for i, e in enumerate(doc.array("outbox"))],
            published=doc.integer("published"),
            pending_ids=dict.fromkeys(doc.names("pending")),
            last_ts=doc.optional_integer("last_ts", minimum=None),
        )
        if store.published > len(store.outbox):
            raise CheckpointError(
                f"published: {store.published}, but the outbox holds {len(store.outbox)} events"
            )
        model = doc.raw("model")
        if model is not None:
            store.model = orjson.dumps(model)
            try:
                Segmenter.from_checkpoint(store.model)
            except CheckpointError as exc:
                raise CheckpointError(f"model: {exc}") from None
        for cid, status in store.statuses.items():
            if status.insider and status.insider_since is not None:
                store.insider_since[cid] = status.insider_since
        for event in store.outbox:
            reason: Any = event["reason"]
            store.histories.setdefault(str(event["customer_id"]), []).append(event)
            key = f"{event['type']}:{reason['code']}"
            store.counts[key] = store.counts.get(key, 0) + 1
        return store

    def save(self, path: Path) -> None:
        """Write the state atomically (temp file + rename), so a crash never leaves half a file."""
        data = gzip.compress(orjson.dumps(self.to_state()), compresslevel=6, mtime=0)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    @staticmethod
    def load_snapshot(path: Path) -> MemoryFeatureStore:
        """The state :meth:`save` wrote to ``path``, checked; one-line errors name the file."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputFileError(
                f"{path}: cannot read the snapshot ({exc.strerror or exc})"
            ) from None
        try:
            state = orjson.loads(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
        except (OSError, EOFError, zlib.error, orjson.JSONDecodeError):
            raise InputFileError(
                f"{path}: not an Insiders snapshot (not gzip-compressed JSON; snapshots of "
                "older releases were pickles, which are not read: replay again)"
            ) from None
        try:
            return MemoryFeatureStore.from_state(state)
        except CheckpointError as exc:
            raise InputFileError(f"{path}: {exc}") from None


def _customer_doc(state: CustomerState) -> dict[str, Any]:
    return {
        "revenue_micros": state.revenue_micros,
        "invoices": state.invoices,
        "lines": state.lines,
        "units": state.units,
        "returned_micros": state.returned_micros,
        "returned_units": state.returned_units,
        "first_ts": state.first_ts,
        "last_ts": state.last_ts,
        "invoice_nos": sorted(state.invoice_nos),
    }


def _read_customer(value: object, path: str) -> CustomerState:
    doc = Fields(value, path, _CUSTOMER_FIELDS)
    return CustomerState(
        revenue_micros=doc.integer("revenue_micros", minimum=None),
        invoices=doc.integer("invoices"),
        lines=doc.integer("lines"),
        units=doc.integer("units", minimum=None),
        returned_micros=doc.integer("returned_micros", minimum=None),
        returned_units=doc.integer("returned_units", minimum=None),
        first_ts=doc.optional_integer("first_ts", minimum=None),
        last_ts=doc.optional_integer("last_ts", minimum=None),
        invoice_nos=set(doc.names("invoice_nos")),
    )


def _status_doc(status: InsiderStatus) -> dict[str, Any]:
    return {
        "segment": status.segment,
        "insider": status.insider,
        "insider_since": status.insider_since,
        "sequence": status.sequence,
        "model_version": status.model_version,
    }


def _read_status(value: object, path: str) -> InsiderStatus:
    doc = Fields(value, path, _STATUS_FIELDS)
    return InsiderStatus(
        segment=doc.optional_integer("segment", minimum=1),
        insider=doc.boolean("insider"),
        insider_since=doc.optional_integer("insider_since", minimum=None),
        sequence=doc.integer("sequence"),
        model_version=doc.integer("model_version"),
    )


def _read_event(value: object, path: str) -> dict[str, object]:
    """An outbox event: the document :meth:`InsiderEvent.as_dict` wrote, kept as it is."""
    doc = Fields(value, path, _EVENT_FIELDS)
    for name in ("event_id", "type", "customer_id", "at"):
        doc.string(name)
    reason = doc.fields("reason", ("code", "text"))
    reason.string("code")
    reason.string("text")
    doc.mapping("features")
    doc.optional_integer("segment", minimum=1)
    doc.integer("model_version")
    return doc.value


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


def _largest_total(state: CustomerState) -> int:
    return max(state.revenue_micros, state.units, state.returned_micros, state.returned_units)
