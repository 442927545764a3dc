"""In-process implementations of the ports: the embedded mode's state and sink.

Same semantics as the Redis store and the Kafka sink (the contract tests hold
both to them), kept in dictionaries. The state can be saved to and loaded from
a snapshot file so an embedded run continues where it stopped: gzip-compressed,
versioned JSON (never a pickle), checked field by field when it is loaded.

Retention (see :class:`~consumer.ports.Retention`) forgets what Redis forgets, but at
once: ids and invoices are indexed by day, so each apply drops exactly the days that
passed the cutoff, at a cost proportional to what it drops.
"""

from __future__ import annotations

import gzip
import heapq
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from consumer.applied_ids import AppliedIds, digests
from consumer.ports import (
    DEFAULT_RETENTION,
    NEWEST,
    SECONDS_PER_DAY,
    SUM_LIMIT,
    ApplyResult,
    Customer,
    EventPage,
    Refusal,
    Retention,
    SourceRecord,
    cutoff_day,
)
from segmenter.errors import CheckpointError, InputFileError, InvalidRecord
from segmenter.features import CustomerState
from segmenter.lines import InvoiceLine, LineKind, classify, fingerprint
from segmenter.policy import InsiderStatus
from segmenter.roster import STATE_COLUMNS
from segmenter.segmentation import Segmenter, StepResult
from segmenter.state import Fields, array, describe, join

SNAPSHOT_FORMAT = "insiders.snapshot"
# Version 2 adds what retention needs: each id's day (in its "seen" value), each invoice's
# day, the cutoff, and the histories and event counts (the outbox no longer holds every
# event, so they cannot be rebuilt from it). Version 1 is still read: its ids and invoices
# are stamped with the watermark's day, which no line of theirs is later than.
# Version 3 keeps applied ids as 128-bit hashes (32 hex digits, see consumer/applied_ids.py).
SNAPSHOT_VERSION = 3
_SNAPSHOT_FIELDS_V1 = (
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
_SNAPSHOT_FIELDS = (*_SNAPSHOT_FIELDS_V1, "outbox_start", "histories", "event_counts", "cutoff")
_SUMS = STATE_COLUMNS  # a customer's running totals, as the roster keeps them
_CUSTOMER_FIELDS_V1 = (*_SUMS, "invoice_nos")
_CUSTOMER_FIELDS = (*_SUMS, "invoice_days")
# An applied id's value: its invoice day * 2^32 + its content fingerprint (as in Redis).
_FINGERPRINT = (1 << 32) - 1
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
    seen: AppliedIds = field(default_factory=AppliedIds)  # id -> day * 2^32 + fingerprint
    ignored: dict[str, int] = field(default_factory=dict)
    outbox: list[dict[str, object]] = field(default_factory=list)
    published: int = 0  # events published, counted from the first ever (as cursors are)
    pending_ids: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    insider_since: dict[str, int] = field(default_factory=dict)
    histories: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    model: bytes | None = None
    last_ts: int | None = None
    retention: Retention = field(default_factory=Retention)
    # customer -> purchase invoice number -> the latest invoice day of its lines
    invoice_days: dict[str, dict[str, int]] = field(default_factory=dict)
    cutoff: int | None = None  # the highest cutoff day used: it never moves back
    outbox_start: int = 0  # events trimmed from the outbox's front
    # Readers' holds on the outbox (EVENT_HOLDS): webhook subscriptions, in this process
    # only (a snapshot does not keep them).
    holds: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    # The largest running total of any customer (None: not yet computed), for the 64-bit check.
    _largest: int | None = field(default=None, repr=False, compare=False)
    _revision: int = field(default=0, repr=False, compare=False)
    # The writer's last report, and the revision it was saved at (a snapshot does not keep
    # it: the next run builds one).
    _report: tuple[bytes, int] | None = field(default=None, repr=False, compare=False)
    # Customers with a purchase (None: not yet counted); a customer never loses their lines.
    _buyers: int | None = field(default=None, repr=False, compare=False)
    # The (customer, invoice) pairs each day holds; and a heap of those days.
    _by_day: dict[int, list[tuple[str, str]]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _days: list[int] = field(default_factory=list, repr=False, compare=False)
    # Notified when the outbox grows, for wait_events' readers (the API's event streams).
    _appended: threading.Condition = field(
        default_factory=threading.Condition, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        """Index the invoices the store was given by day. Invoices without a day (state of
        an older snapshot) get the watermark's day: no line of theirs is later than that."""
        stamp = None if self.last_ts is None else self.last_ts // SECONDS_PER_DAY
        if self.cutoff is not None:
            self.seen.forget_before(self.cutoff)
        for cid, state in self.states.items():
            if not state.invoice_nos:
                continue
            days = self.invoice_days.setdefault(cid, {})
            if stamp is not None:
                for invoice in state.invoice_nos - days.keys():
                    days[invoice] = stamp
            for invoice, day in days.items():
                self._remember(day, (cid, invoice))

    def _remember(self, day: int, entry: tuple[str, str]) -> None:
        held = self._by_day.get(day)
        if held is None:
            held = self._by_day[day] = []
            heapq.heappush(self._days, day)
        held.append(entry)

    def _forget_before(self, cut: int) -> None:
        """Drop the ids and invoices dated before day ``cut``."""
        self.seen.forget_before(cut)
        while self._days and self._days[0] < cut:
            day = heapq.heappop(self._days)
            for cid, invoice in self._by_day.pop(day):
                days = self.invoice_days.get(cid)
                if days is None or days.get(invoice) != day:
                    continue  # a later line of the invoice moved it to a later day
                del days[invoice]
                if not days:
                    del self.invoice_days[cid]
                self.states[cid].invoice_nos.discard(invoice)

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
        cut = cutoff_day(self.retention, self.last_ts, self.cutoff)
        # Pass 1, as the Redis script does: sort the lines, check the sums, write nothing yet.
        fresh: list[tuple[int, InvoiceLine, int]] = []
        within: dict[str, int] = {}
        refused: list[Refusal] = []
        duplicates = stale = 0
        asked = [line.event_id for offset, line in lines if offset > stored]
        keys = dict(zip(asked, digests(asked), strict=True))  # each id hashed once
        held_before = dict(zip(keys, self.seen.get_digests(list(keys.values())), strict=True))
        for offset, line in lines:
            if offset <= stored:
                stale += 1
                continue
            if cut is not None and line.invoice_ts // SECONDS_PER_DAY < cut:
                ts = line.invoice_ts
                refused.append(Refusal.beyond_retention(offset, line.event_id, ts, cut))
                continue
            print_ = fingerprint(line)
            before = within.get(line.event_id)
            if before is None:
                held = held_before[line.event_id]
                before = None if held is None else held & _FINGERPRINT
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
        states, pending = self.states, self.pending_ids
        watermark = self.last_ts
        self.seen.add_digests(
            (keys[line.event_id] for _, line, _ in fresh),
            ((line.invoice_ts // SECONDS_PER_DAY) << 32 | print_ for _, line, print_ in fresh),
        )
        for _, line, _ in fresh:
            day = line.invoice_ts // SECONDS_PER_DAY
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
            first_purchase = not state.has_purchases
            state.apply(line, kind)
            if first_purchase and state.has_purchases and self._buyers is not None:
                self._buyers += 1
            if kind is LineKind.PURCHASE:
                days = self.invoice_days.setdefault(cid, {})
                if days.get(line.invoice_no, -1) < day:
                    days[line.invoice_no] = day
                    self._remember(day, (cid, line.invoice_no))
            pending[cid] = None
            self._largest = max(self._largest or 0, _largest_total(state))
        self.last_ts = watermark
        if fresh:
            self._revision += 1
        if last_offset > stored:
            self.offsets[key] = last_offset
        if self.retention.dedupe_days > 0:
            self.cutoff = cutoff_day(self.retention, self.last_ts, self.cutoff)
            if self.cutoff is not None:
                self._forget_before(self.cutoff)
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
        keep = self.retention.history_keep
        for event in result.events:
            doc = event.as_dict()
            self.outbox.append(doc)
            history = self.histories.setdefault(event.customer_id, [])
            history.append(doc)
            if 0 < keep < len(history):
                del history[:-keep]
            key = f"{event.type}:{event.reason.code}"
            self.counts[key] = self.counts.get(key, 0) + 1
        self.model = model
        self.pending_ids.clear()
        self._revision += 1
        if result.events:
            with self._appended:
                self._appended.notify_all()

    def revision(self) -> int:
        return self._revision

    def watermark(self) -> int | None:
        return self.last_ts

    def save_report(self, report: bytes) -> int:
        self._revision += 1
        self._report = (report, self._revision)
        return self._revision

    def saved_report(self) -> tuple[bytes, int] | None:
        return self._report

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
        if self._buyers is None:
            self._buyers = sum(1 for state in self.states.values() if state.has_purchases)
        return self._buyers

    def insiders(self, offset: int, limit: int) -> tuple[list[Customer], int]:
        total = len(self.insider_since)
        if limit <= 0:
            return [], total
        first = heapq.nsmallest(
            offset + limit, self.insider_since.items(), key=lambda item: (item[1], item[0])
        )
        page = first[offset:]
        return [c for cid, _ in page if (c := self.customer(cid)) is not None], total

    def insider_count(self) -> int:
        return len(self.insider_since)

    def events(self, after: str | None, limit: int) -> EventPage:
        # Cursors count events from the first ever: a trimmed front does not move them.
        start = max(int(after) if after else 0, self.outbox_start)
        at = start - self.outbox_start
        page = self.outbox[at : at + limit]
        cursors = tuple(str(start + i) for i in range(1, len(page) + 1))
        return EventPage(page, cursors[-1] if cursors else None, cursors)

    def wait_events(self, after: str | None, limit: int, timeout: float) -> EventPage:
        newest = after == NEWEST
        if newest:
            after = str(self.outbox_start + len(self.outbox))
        with self._appended:
            self._appended.wait_for(lambda: bool(self.events(after, 1).events), timeout)
        page = self.events(after, limit)
        return EventPage([], after) if newest and not page.events else page

    def unpublished_events(self) -> tuple[list[dict[str, object]], str | None]:
        events = self.outbox[self.published - self.outbox_start :]
        return events, (str(self.outbox_start + len(self.outbox)) if events else None)

    def mark_published(self, cursor: str) -> None:
        self.published = int(cursor)
        keep = self.retention.events_keep
        everything = self.published == self.outbox_start + len(self.outbox)
        dropped = len(self.outbox) - keep if everything and keep > 0 else 0
        if self.holds:  # never past the event after a hold's cursor ("": everything is held)
            floor = min(int(held or 0) for held in self.holds.values())
            dropped = min(dropped, floor - self.outbox_start)
        if dropped > 0:
            del self.outbox[:dropped]
            self.outbox_start += dropped
            self._revision += 1

    def ping(self) -> bool:
        return True

    # Snapshots: the whole embedded state in one file.
    def to_state(self) -> dict[str, Any]:
        """The whole state as JSON-ready data.

        The Insider index is not written: it follows from the statuses, and is rebuilt on
        load. Settings (the retention) are not state: the loading process brings its own.
        """
        return {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "customers": {
                cid: _customer_doc(state, self.invoice_days.get(cid, {}))
                for cid, state in self.states.items()
            },
            "statuses": {cid: _status_doc(status) for cid, status in self.statuses.items()},
            "offsets": dict(self.offsets),
            "seen": dict(sorted(self.seen.hashes())),
            "ignored": dict(self.ignored),
            "outbox": self.outbox,
            "published": self.published,
            "pending": list(self.pending_ids),
            "last_ts": self.last_ts,
            # The checkpoint is JSON itself: kept as an object, written back byte for byte.
            "model": None if self.model is None else orjson.loads(self.model),
            "outbox_start": self.outbox_start,
            "histories": self.histories,
            "event_counts": dict(self.counts),
            "cutoff": self.cutoff,
        }

    @classmethod
    def from_state(
        cls, state: object, retention: Retention = DEFAULT_RETENTION
    ) -> MemoryFeatureStore:
        """The store ``to_state`` described, after checking every field's type and shape."""
        if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
            found = describe(state.get("format")) if isinstance(state, dict) else describe(state)
            raise CheckpointError(f"not an Insiders snapshot (format {found})")
        version = state.get("version")
        if version not in (1, 2, SNAPSHOT_VERSION) or isinstance(version, bool):
            raise CheckpointError(
                f"Insiders snapshot version {describe(version)}: "
                f"this release reads versions 1 to {SNAPSHOT_VERSION}"
            )
        old = version == 1
        doc = Fields(state, "", _SNAPSHOT_FIELDS_V1 if old else _SNAPSHOT_FIELDS)
        customers = {
            cid: _read_customer(value, join("customers", cid), old)
            for cid, value in doc.mapping("customers").items()
        }
        store = cls(
            states={cid: customer for cid, (customer, _) in customers.items()},
            invoice_days={cid: days for cid, (_, days) in customers.items() if days},
            statuses={
                cid: _read_status(value, join("statuses", cid))
                for cid, value in doc.mapping("statuses").items()
            },
            offsets=doc.counts("offsets"),
            seen=_read_seen(doc, old=version != SNAPSHOT_VERSION),
            ignored=doc.counts("ignored"),
            outbox=[_read_event(e, join("outbox", i)) for i, e in enumerate(doc.array("outbox"))],
            published=doc.integer("published"),
            pending_ids=dict.fromkeys(doc.names("pending")),
            last_ts=doc.optional_integer("last_ts", minimum=None),
            retention=retention,
            outbox_start=0 if old else doc.integer("outbox_start"),
            cutoff=None if old else doc.optional_integer("cutoff", minimum=None),
        )
        total = store.outbox_start + len(store.outbox)
        if not store.outbox_start <= store.published <= total:
            raise CheckpointError(
                f"published: {store.published}, but the outbox holds events "
                f"{store.outbox_start + 1} to {total}"
                if store.outbox_start
                else f"published: {store.published}, but the outbox holds {total} events"
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
        if old:  # version 1 kept every event in the outbox: the rest follows from it
            for event in store.outbox:
                reason: Any = event["reason"]
                store.histories.setdefault(str(event["customer_id"]), []).append(event)
                key = f"{event['type']}:{reason['code']}"
                store.counts[key] = store.counts.get(key, 0) + 1
        else:
            store.histories = {
                cid: [
                    _read_event(e, join(join("histories", cid), i))
                    for i, e in enumerate(array(events, join("histories", cid)))
                ]
                for cid, events in doc.mapping("histories").items()
            }
            store.counts = doc.counts("event_counts")
        return store

    def save(self, path: Path) -> None:
        """Write the state atomically (temp file + rename), so a crash never leaves half a file."""
        data = gzip.compress(orjson.dumps(self.to_state()), compresslevel=6, mtime=0)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    @staticmethod
    def load_snapshot(path: Path, retention: Retention = DEFAULT_RETENTION) -> MemoryFeatureStore:
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
            return MemoryFeatureStore.from_state(state, retention)
        except CheckpointError as exc:
            raise InputFileError(f"{path}: {exc}") from None


def _customer_doc(state: CustomerState, invoice_days: dict[str, int]) -> dict[str, Any]:
    return {
        "revenue_micros": state.revenue_micros,
        "invoices": state.invoices,
        "lines": state.lines,
        "units": state.units,
        "returned_micros": state.returned_micros,
        "returned_units": state.returned_units,
        "first_ts": state.first_ts,
        "last_ts": state.last_ts,
        # The invoice numbers still kept (to count distinct ones), each with its latest day.
        "invoice_days": {invoice: invoice_days[invoice] for invoice in sorted(invoice_days)},
    }


def _read_seen(doc: Fields, old: bool) -> AppliedIds:
    """The applied ids: by id before version 3 (hashed here), by hash since. Ids without a
    day (version 1) get the watermark's: no line of theirs is later than that."""
    last_ts = doc.optional_integer("last_ts", minimum=None)
    stamp = None if last_ts is None else last_ts // SECONDS_PER_DAY
    seen = AppliedIds()
    for key, value in doc.counts("seen").items():
        if value <= _FINGERPRINT and stamp is not None:
            value |= stamp << 32
        if old:
            seen.add_many([key], [value])
            continue
        try:
            seen.add_hash(key, value)
        except ValueError:
            raise CheckpointError(
                f"{join('seen', key)}: want 32 hex digits (an id's hash), got {describe(key)}"
            ) from None
    return seen


def _read_customer(value: object, path: str, old: bool) -> tuple[CustomerState, dict[str, int]]:
    """A customer's sums and kept invoice numbers, with their days (none in version 1)."""
    doc = Fields(value, path, _CUSTOMER_FIELDS_V1 if old else _CUSTOMER_FIELDS)
    days = {} if old else doc.counts("invoice_days")
    state = CustomerState(
        revenue_micros=doc.integer("revenue_micros", minimum=None),
        invoices=doc.integer("invoices"),
        lines=doc.integer("lines"),
        units=doc.integer("units", minimum=None),
        returned_micros=doc.integer("returned_micros", minimum=None),
        returned_units=doc.integer("returned_units", minimum=None),
        first_ts=doc.optional_integer("first_ts", minimum=None),
        last_ts=doc.optional_integer("last_ts", minimum=None),
        invoice_nos=set(doc.names("invoice_nos")) if old else set(days),
    )
    return state, days


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
