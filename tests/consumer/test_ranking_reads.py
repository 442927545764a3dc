"""The daily ranking reads the store whole once per pipeline, then ranks its own copy:
the decisions are the same as reading the store every day."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from consumer import pipeline as pipeline_module
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink, MemoryFeatureStore
from consumer.pipeline import Pipeline
from consumer.ports import Customer
from segmenter.model import SegmentModel
from segmenter.segmentation import StepResult
from tests.conftest import SAMPLE


class Counted(MemoryFeatureStore):
    def __init__(self) -> None:
        super().__init__()
        self.full_reads = 0

    def customers(self) -> Iterator[Customer]:
        self.full_reads += 1
        yield from super().customers()


class ReadsEveryDay(Pipeline):
    """The pipeline as it was: every ranking reads every customer from the store."""

    def _remember(self, customers, result: StepResult) -> None:
        self._roster = None


def run(pipeline_type: type[Pipeline]) -> tuple[Counted, Pipeline]:
    store = Counted()
    pipeline = pipeline_type(store, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(SAMPLE, block_size=500).blocks():
        pipeline.process(block)
    return store, pipeline


def test_the_ranking_reads_the_store_once_and_decides_as_if_it_read_it_daily():
    store, pipeline = run(Pipeline)
    daily, _ = run(ReadsEveryDay)
    assert store.full_reads == 1
    assert daily.full_reads > 30  # one per daily ranking
    assert store.outbox == daily.outbox and len(store.outbox) > 0
    assert store.statuses == daily.statuses
    assert pipeline.segmenter.calibration is not None


def restart_over_half_the_sample(caplog: pytest.LogCaptureFixture) -> tuple[int, list[str]]:
    """Half the sample into a store, then a new pipeline (a restart) over the rest: how many
    customers the store held, and what the new one logged."""
    blocks = list(FileInvoiceSource(SAMPLE, block_size=500).blocks())
    store = MemoryFeatureStore()
    first = Pipeline(store, MemoryEventSink(), SegmentModel())
    for block in blocks[: len(blocks) // 2]:
        first.process(block)
    held = store.customer_count()
    caplog.set_level("INFO", logger="consumer.pipeline")
    again = Pipeline(store, MemoryEventSink(), SegmentModel())
    for block in blocks[len(blocks) // 2 :]:  # later days: their rankings need the roster
        again.process(block)
    return held, [r.getMessage() for r in caplog.records]


def test_a_restart_over_a_large_store_says_it_reads_every_customer_and_how_long(
    caplog, monkeypatch
):
    monkeypatch.setattr(pipeline_module, "ROSTER_LOG_CUSTOMERS", 100)  # the sample is "large"
    held, said = restart_over_half_the_sample(caplog)
    reading = [m for m in said if m.startswith("reading the store's ")]
    assert len(reading) == 1, said  # once per process
    # The customers held, and at most those the block that needed the ranking added first.
    count = int(reading[0].split()[3])
    assert 100 < held <= count <= held + 500
    assert reading[0] == f"reading the store's {count} customers for the daily ranking"
    done = [m for m in said if m.startswith("read ")]
    assert len(done) == 1 and done[0].startswith(f"read {count} customers in "), said


def test_a_small_store_is_read_quietly(caplog):
    held, said = restart_over_half_the_sample(caplog)
    assert 100 < held < pipeline_module.ROSTER_LOG_CUSTOMERS
    assert not [m for m in said if m.startswith(("reading the store's ", "read "))], said
