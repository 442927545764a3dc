"""Bounded state around the stores: refused lines reach the dead-letter path, the settings
reach the stores, and snapshots keep (and older ones gain) what retention needs."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from consumer.cli import replay_embedded
from consumer.memory import MemoryEventSink, MemoryFeatureStore
from consumer.pipeline import Pipeline
from consumer.ports import Retention, SourceRecord
from consumer.settings import ConsumerSettings
from segmenter.lines import fingerprint
from segmenter.model import SegmentModel
from segmenter.segmentation import Segmenter, StepResult
from tests.conftest import SAMPLE
from tests.contract.test_feature_store import D0, DAY, _event, daily_lines, state_tuple

MODEL = Segmenter(SegmentModel()).checkpoint()


def record(offset: int, event_id: str, date: str) -> SourceRecord:
    doc = {
        "event_id": event_id,
        "invoice_no": event_id.split(":")[0],
        "stock_code": "85123A",
        "quantity": 6,
        "invoice_date": date,
        "unit_price": 2.55,
        "customer_id": "17850",
    }
    return SourceRecord("invoices", 0, offset, b"17850", orjson.dumps(doc))


def test_a_line_beyond_the_retention_is_dead_lettered_and_the_rest_of_its_block_applied(store):
    store.retention = Retention(dedupe_days=10)
    sink = MemoryEventSink()
    pipeline = Pipeline(store, sink)
    pipeline.process([record(0, "1:0", "2011-06-01T10:00:00")])
    pipeline.process(
        [record(1, "2:0", "2011-05-01T10:00:00"), record(2, "3:0", "2011-05-22T00:00:00")]
    )
    assert [(d["reason"], d["offset"]) for d in sink.dead_letters] == [("beyond_retention", 1)]
    assert str(sink.dead_letters[0]["detail"]).startswith(
        "event 2:0: field 'invoice_date' is '2011-05-01 10:00:00', before 2011-05-22 00:00:00"
    )
    assert pipeline.stats.rejected == {"beyond_retention": 1}
    assert pipeline.stats.applied == 2
    customer = store.customer("17850")
    assert customer is not None and customer.state.invoices == 2
    assert store.stored_offset("invoices", 0) == 2


def test_the_settings_name_the_retention(monkeypatch):
    assert ConsumerSettings().retention() == Retention(400, 200_000, 100)
    monkeypatch.setenv("INSIDERS_DEDUPE_DAYS", "30")
    monkeypatch.setenv("INSIDERS_EVENTS_KEEP", "0")
    monkeypatch.setenv("INSIDERS_HISTORY_KEEP", "5")
    assert ConsumerSettings().retention() == Retention(30, 0, 5)
    monkeypatch.setenv("INSIDERS_DEDUPE_DAYS", "-1")
    with pytest.raises(ValidationError, match="dedupe_days"):
        ConsumerSettings()


def test_a_replay_keeps_the_ids_of_the_retention_only():
    kept, _, _, _ = replay_embedded(SAMPLE, ConsumerSettings(dedupe_days=30), None)
    everything, stats, _, _ = replay_embedded(SAMPLE, ConsumerSettings(dedupe_days=0), None)
    assert kept.retention == Retention(30, 200_000, 100)
    assert len(everything.seen) == stats.applied
    assert len(kept.seen) < stats.applied / 5
    # In time order nothing is refused, and the features are the same.
    assert not stats.rejected
    assert [state_tuple(c.state) for c in kept.customers()] == [
        state_tuple(c.state) for c in everything.customers()
    ]


def retained_store() -> MemoryFeatureStore:
    store = MemoryFeatureStore(retention=Retention(dedupe_days=5, events_keep=3, history_keep=2))
    lines = daily_lines(range(20))
    store.apply("t", 0, list(enumerate(lines)), len(lines) - 1)
    store.commit_step(StepResult(events=[_event(str(i % 2), i) for i in range(1, 9)]), MODEL)
    _, cursor = store.unpublished_events()
    assert cursor is not None
    store.mark_published(cursor)
    return store


def test_a_snapshot_keeps_the_retention_state(tmp_path):
    store = retained_store()
    assert (store.cutoff, store.outbox_start, len(store.outbox)) == (15_014, 5, 3)
    path = tmp_path / "state.snapshot"
    store.save(path)
    loaded = MemoryFeatureStore.load_snapshot(path, store.retention)
    assert loaded.to_state() == store.to_state()
    assert (loaded.histories, loaded.counts) == (store.histories, store.counts)
    assert [e["event_id"] for e in loaded.history("1")] == ["1:5", "1:7"]
    assert loaded.events("2", 10).events == store.events(None, 10).events
    # It goes on as the saved store would: old lines refused, recent repeats recognised.
    old, recent = daily_lines(range(13, 14))[0], daily_lines(range(19, 20))[0]
    assert [r.reason for r in loaded.apply("t", 0, [(500, old)], 500).refused] == [
        "beyond_retention"
    ]
    assert loaded.apply("t", 0, [(500, recent)], 500).duplicates == 1


def test_a_version_1_snapshot_is_read_and_its_ids_get_the_watermark_day(tmp_path):
    store = MemoryFeatureStore(retention=Retention(dedupe_days=0))
    lines = daily_lines(range(20))
    store.apply("t", 0, list(enumerate(lines)), len(lines) - 1)
    store.commit_step(StepResult(events=[_event("1", 1), _event("2", 1)]), MODEL)
    state = store.to_state()
    # What the release before retention wrote.
    state["version"] = 1
    for name in ("outbox_start", "histories", "event_counts", "cutoff"):
        del state[name]
    for doc in state["customers"].values():
        doc["invoice_nos"] = sorted(doc.pop("invoice_days"))
    # Version 1 kept each applied id with its content fingerprint only.
    state["seen"] = {line.event_id: fingerprint(line) for line in lines}
    path = tmp_path / "v1.snapshot"
    path.write_bytes(orjson.dumps(state))

    loaded = MemoryFeatureStore.load_snapshot(path, Retention(dedupe_days=5))
    day = (D0 + 19 * DAY) // DAY  # the watermark's
    assert {value >> 32 for value in loaded.seen.values()} == {day}
    assert {d for days in loaded.invoice_days.values() for d in days.values()} == {day}
    assert loaded.history("1") == store.history("1") and loaded.counts == store.counts
    assert loaded.apply("t", 0, [(900, lines[-1])], 900).duplicates == 1
    # Stamped with the watermark's day, they are forgotten 5 days after it, not before.
    later = daily_lines(range(24, 25))
    loaded.apply("t", 0, [(901 + i, ln) for i, ln in enumerate(later)], 1000)
    assert len(loaded.seen) == len(lines) + len(later)
    later = daily_lines(range(25, 26))
    loaded.apply("t", 0, [(1001 + i, ln) for i, ln in enumerate(later)], 1100)
    assert len(loaded.seen) == 2 * len(later)
    assert {c.state.invoices for c in loaded.customers()} == {22}
