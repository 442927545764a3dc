"""Saved state the consumer reads: the model checkpoint in Redis and `--snapshot` files.

Both are versioned JSON, checked before use. A pickle planted in either is refused, and
the marker file its code would create shows it never ran.
"""

from __future__ import annotations

import gzip
import pickle

import orjson
import pandas as pd
import pytest

from consumer.export import export_frame
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink, MemoryFeatureStore
from consumer.pipeline import Pipeline
from segmenter.errors import CheckpointError, InputFileError
from segmenter.model import SegmentModel
from segmenter.policy import InsiderPolicy, PolicySettings
from segmenter.segmentation import Segmenter
from tests.conftest import SAMPLE
from tests.hostile import assert_the_payload_is_live, hostile_pickle

BLOCK = 2000


def blocks() -> list:
    return list(FileInvoiceSource(SAMPLE, block_size=BLOCK).blocks())


def test_a_pickle_at_the_model_key_stops_the_consumer_and_never_runs(
    redis_store, redis_client, redis_prefix, tmp_path
):
    assert_the_payload_is_live(tmp_path)
    marker = tmp_path / "pwned"
    redis_client.set(redis_prefix + "model", hostile_pickle(marker))
    with pytest.raises(CheckpointError) as raised:
        Pipeline(redis_store, MemoryEventSink(), SegmentModel())
    assert str(raised.value).startswith("not an Insiders checkpoint (not JSON: b'\\x80")
    assert not marker.exists()


@pytest.mark.parametrize(("segments", "seed"), [(5, 42), (4, 7)])
def test_a_model_of_other_settings_under_the_prefix_is_refused_at_start(
    redis_store, redis_prefix, segments, seed
):
    saved = Segmenter(SegmentModel(n_segments=4, seed=42))
    redis_store.client.set(redis_prefix + "model", saved.checkpoint())
    with pytest.raises(CheckpointError) as raised:
        Pipeline(redis_store, MemoryEventSink(), SegmentModel(n_segments=segments, seed=seed))
    assert str(raised.value) == (
        f"the model under Redis prefix {redis_prefix!r} has 4 segments and seed 42; this "
        f"consumer is set to {segments} and {seed}: use the same settings or another "
        "INSIDERS_REDIS_PREFIX"
    )
    # The same settings restore it.
    same = Pipeline(redis_store, MemoryEventSink(), SegmentModel(n_segments=4, seed=42))
    assert same.segmenter.checkpoint() == saved.checkpoint()


def test_the_consumer_keeps_its_own_policy_over_the_stored_one():
    store = MemoryFeatureStore()
    stored = PolicySettings(entry_margin=0.5)
    store.model = Segmenter(SegmentModel(), InsiderPolicy(stored)).checkpoint()
    running = PolicySettings(entry_margin=0.1)
    pipeline = Pipeline(store, MemoryEventSink(), SegmentModel(), policy=InsiderPolicy(running))
    assert pipeline.segmenter.policy.settings == running
    assert Segmenter.from_checkpoint(store.model).policy.settings == stored  # what readers see


def test_a_snapshot_of_other_settings_is_refused_at_start():
    store = MemoryFeatureStore(model=Segmenter(SegmentModel(n_segments=4)).checkpoint())
    with pytest.raises(CheckpointError) as raised:
        Pipeline(store, MemoryEventSink(), SegmentModel(n_segments=3))
    assert str(raised.value) == (
        "the model in the snapshot has 4 segments and seed 42; this run is set to 3 and 42: "
        "use the same settings or another --snapshot file"
    )


def outcome(store: MemoryFeatureStore) -> tuple[pd.DataFrame, list, bytes | None, dict]:
    return (
        export_frame(store, store.watermark()),
        store.events(None, 100_000).events,
        store.model_checkpoint(),
        store.event_counts(),
    )


def test_a_snapshot_continues_exactly_where_it_stopped(tmp_path):
    todo = blocks()
    whole, whole_sink = MemoryFeatureStore(), MemoryEventSink()
    pipeline = Pipeline(whole, whole_sink, SegmentModel())
    for block in todo:
        pipeline.process(block)

    first, sink = MemoryFeatureStore(), MemoryEventSink()
    pipeline = Pipeline(first, sink, SegmentModel())
    for block in todo[:4]:
        pipeline.process(block)
    path = tmp_path / "state.snapshot"
    first.save(path)
    assert gzip.decompress(path.read_bytes()).startswith(b'{"format":"insiders.snapshot"')
    loaded = MemoryFeatureStore.load_snapshot(path)
    assert loaded.to_state() == first.to_state()
    assert loaded.model == first.model
    assert (loaded.histories, loaded.insider_since, loaded.counts) == (
        first.histories,
        first.insider_since,
        first.counts,
    )
    pipeline = Pipeline(loaded, sink, SegmentModel())
    for block in todo[4:]:
        pipeline.process(block)

    got, want = outcome(loaded), outcome(whole)
    pd.testing.assert_frame_equal(got[0], want[0])
    assert got[1:] == want[1:]
    assert len(got[1]) > 0
    assert sink.events == whole_sink.events


@pytest.mark.parametrize("packing", ["plain", "gzip", "pickled store"])
def test_a_pickled_snapshot_is_refused_and_never_runs(tmp_path, packing):
    assert_the_payload_is_live(tmp_path)
    marker = tmp_path / "pwned"
    data = hostile_pickle(marker)
    if packing == "gzip":
        data = gzip.compress(data)
    elif packing == "pickled store":  # as older releases wrote a store, with a planted field
        data = pickle.dumps((1, {"outbox": [{"x": HostileField(marker)}]}))
    path = tmp_path / "state.snapshot"
    path.write_bytes(data)
    with pytest.raises(InputFileError) as raised:
        MemoryFeatureStore.load_snapshot(path)
    assert str(raised.value) == (
        f"{path}: not an Insiders snapshot (not gzip-compressed JSON; snapshots of older "
        "releases were pickles, which are not read: replay again)"
    )
    assert not marker.exists()


class HostileField:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def replayed() -> bytes:
    """A snapshot's state after some blocks: customers, statuses, events and a model."""
    store = MemoryFeatureStore()
    pipeline = Pipeline(store, MemoryEventSink(), SegmentModel())
    for block in blocks()[:6]:
        pipeline.process(block)
    assert store.model is not None and store.outbox and store.statuses
    return orjson.dumps(store.to_state())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "format",
            "insiders.checkpoint",
            "not an Insiders snapshot (format 'insiders.checkpoint')",
        ),
        ("version", 7, "Insiders snapshot version 7: this release reads versions 1 to 3"),
        ("published", 10**9, "published: 1000000000, but the outbox holds"),
        ("seen", {"536365:0": -1}, "seen.536365:0: want an integer >= 0, got -1"),
        ("offsets", {"invoices:0": "12"}, "offsets.invoices:0: want an integer >= 0, got '12'"),
        ("outbox", [{"event_id": "1:1"}], "outbox[0]: missing type, customer_id"),
        ("customers", {"1": {"lines": 1}}, "customers.1: missing revenue_micros"),
        ("statuses", [], "statuses: want an object, got a list of 0"),
    ],
)
def test_a_snapshot_that_is_not_well_formed_is_refused_in_one_line(
    replayed, tmp_path, field, value, message
):
    state = orjson.loads(replayed)
    state[field] = value
    path = tmp_path / "state.snapshot"
    path.write_bytes(gzip.compress(orjson.dumps(state)))
    with pytest.raises(InputFileError) as raised:
        MemoryFeatureStore.load_snapshot(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_snapshot_with_a_bad_field_names_it(replayed, tmp_path):
    state = orjson.loads(replayed)
    cid = next(iter(state["statuses"]))
    state["statuses"][cid]["insider"] = "yes"
    path = tmp_path / "bad-status.json"
    path.write_bytes(orjson.dumps(state))  # plain JSON is read too
    with pytest.raises(InputFileError, match=rf"statuses\.{cid}\.insider: want true or false"):
        MemoryFeatureStore.load_snapshot(path)
    state = orjson.loads(replayed)
    state["model"]["model"]["clusterer"]["counts"] = []
    path.write_bytes(orjson.dumps(state))
    with pytest.raises(InputFileError) as raised:
        MemoryFeatureStore.load_snapshot(path)
    assert str(raised.value) == (
        f"{path}: model: checkpoint.model.clusterer.counts: want 4 items, got 0"
    )


def test_a_missing_snapshot_is_a_one_line_error(tmp_path):
    path = tmp_path / "nowhere" / "state.snapshot"
    with pytest.raises(
        InputFileError,
        match=r"state.snapshot: cannot read the snapshot \(No such file or directory\)",
    ):
        MemoryFeatureStore.load_snapshot(path)
