"""The daily ranking reads the store whole once per pipeline, then ranks its own copy:
the decisions are the same as reading the store every day."""

from __future__ import annotations

from collections.abc import Iterator

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


def test_a_pipeline_over_a_filled_store_says_it_reads_every_customer_and_how_long_it_took(caplog):
    blocks = list(FileInvoiceSource(SAMPLE, block_size=500).blocks())
    store = MemoryFeatureStore()
    first = Pipeline(store, MemoryEventSink(), SegmentModel())
    for block in blocks[: len(blocks) // 2]:
        first.process(block)
    held = len(list(store.customers()))
    caplog.set_level("INFO", logger="consumer.pipeline")
    again = Pipeline(store, MemoryEventSink(), SegmentModel())  # a restart over the same state
    for block in blocks[len(blocks) // 2 :]:  # later days: their rankings need the roster
        again.process(block)
    said = [r.getMessage() for r in caplog.records]
    reading = [m for m in said if m.startswith("reading the store's ")]
    assert len(reading) == 1, said  # once per process
    # The customers held, and those the block that needed the ranking added first.
    count = int(reading[0].split()[3])
    assert held > 100 and held <= count <= held + 500
    assert reading[0] == f"reading the store's {count} customers for the daily ranking"
    assert any(m.startswith(f"read {count} customers in ") for m in said), said
