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
