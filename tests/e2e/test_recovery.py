"""Crashes between the steps of a block, on real Redis: the result equals an uninterrupted run."""

from __future__ import annotations

import contextlib

import pandas as pd

from consumer.export import export_frame
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink
from consumer.pipeline import Pipeline
from consumer.records import parse_record
from consumer.redis_store import RedisFeatureStore
from segmenter.errors import InvalidRecord
from segmenter.model import SegmentModel
from segmenter.segmentation import Segmenter
from tests.conftest import SAMPLE

BLOCK = 2000


def blocks() -> list:
    return list(FileInvoiceSource(SAMPLE, block_size=BLOCK).blocks())


def run_through(store: RedisFeatureStore, sink: MemoryEventSink, todo: list) -> None:
    pipeline = Pipeline(store, sink, SegmentModel())
    for block in todo:
        pipeline.process(block)


def apply_only(store: RedisFeatureStore, block: list) -> None:
    """What a consumer that died right after the apply script would have left behind."""
    lines = []
    for record in block:
        with contextlib.suppress(InvalidRecord):
            lines.append((record.offset, parse_record(record.value)))
    store.apply(block[0].topic, block[0].partition, lines, block[-1].offset)


def outcome(store: RedisFeatureStore) -> tuple[pd.DataFrame, list[dict]]:
    return export_frame(store, store.watermark()), store.events(None, 100_000).events


def test_crash_after_apply_before_segmentation(redis_client, redis_prefix):
    all_blocks = blocks()
    assert len(all_blocks) > 10
    baseline = RedisFeatureStore(redis_client, redis_prefix + "base:")
    run_through(baseline, MemoryEventSink(), all_blocks)

    store = RedisFeatureStore(redis_client, redis_prefix + "crash:")
    sink = MemoryEventSink()
    run_through(store, sink, all_blocks[:5])
    apply_only(store, all_blocks[5])  # the process dies here
    assert store.pending(), "the crash left customers waiting for segmentation"
    # The restarted consumer: restores the model, finishes the pending step, and Kafka
    # redelivers block 5 (its offset was never committed) before the rest.
    run_through(store, sink, all_blocks[5:])

    got, want = outcome(store), outcome(baseline)
    pd.testing.assert_frame_equal(got[0], want[0])
    assert got[1] == want[1]
    assert sink.events == want[1]  # every event reached the sink, none twice


def test_crash_after_segmentation_before_publishing(redis_client, redis_prefix):
    all_blocks = blocks()
    store = RedisFeatureStore(redis_client, redis_prefix)
    first_sink = MemoryEventSink()
    pipeline = Pipeline(store, first_sink, SegmentModel())
    # Blocks go through as `process` runs them (apply, segment, sweep, publish) until one
    # whose segmentation step makes events; then the process dies before publishing them.
    # (During the warm-up, and until the first daily ranking sets the edges, a step makes
    # none: which block is the first to is the data's business, not this test's.)
    for crashed in range(len(all_blocks)):
        apply_only(store, all_blocks[crashed])
        pipeline.segment()
        unpublished, _ = store.unpublished_events()
        if unpublished:
            break
        pipeline.sweep()
        pipeline.publish_events()
    assert unpublished, "no segmentation step of the sample produced events"
    assert crashed < len(all_blocks) - 1, "the crash should leave blocks to run after it"
    second_sink = MemoryEventSink()
    run_through(store, second_sink, all_blocks[crashed:])
    assert second_sink.events[: len(unpublished)] == unpublished
    published = first_sink.events + second_sink.events
    assert [e["event_id"] for e in published] == [
        e["event_id"] for e in store.events(None, 100_000).events
    ]


def test_restart_restores_the_model_checkpoint(redis_store):
    all_blocks = blocks()
    run_through(redis_store, MemoryEventSink(), all_blocks[:4])
    checkpoint = redis_store.model_checkpoint()
    assert checkpoint is not None
    saved = Segmenter()
    saved.restore(checkpoint)
    # Same settings as the run that wrote it: other ones are refused (tests/consumer).
    restarted = Pipeline(redis_store, MemoryEventSink(), SegmentModel())
    assert restarted.segmenter.model.version == saved.model.version > 0
    assert restarted.segmenter.model.clusterer.centres == saved.model.clusterer.centres
    assert restarted.segmenter.swept_at == saved.swept_at is not None


def test_a_restart_resumes_after_the_crashed_block_as_if_it_had_finished(
    redis_client, redis_prefix
):
    """The consumer seeks past what Redis holds, so the block that crashed after its apply
    is not processed again: the restart must finish its segmentation step and its sweep."""
    all_blocks = blocks()
    baseline = RedisFeatureStore(redis_client, redis_prefix + "base:")
    pipeline = Pipeline(baseline, MemoryEventSink(), SegmentModel())
    swept = []
    for block in all_blocks:
        pipeline.process(block)
        swept.append(pipeline.segmenter.swept_at)
    crashed = next(i for i in range(1, len(swept)) if swept[i] != swept[i - 1])  # a sweep ran

    store = RedisFeatureStore(redis_client, redis_prefix + "crash:")
    run_through(store, MemoryEventSink(), all_blocks[:crashed])
    apply_only(store, all_blocks[crashed])  # the process dies here
    restarted = Pipeline(store, MemoryEventSink(), SegmentModel())
    assert restarted.segmenter.swept_at == swept[crashed]
    for block in all_blocks[crashed + 1 :]:
        restarted.process(block)
    got, want = outcome(store), outcome(baseline)
    pd.testing.assert_frame_equal(got[0], want[0])
    assert got[1] == want[1]
