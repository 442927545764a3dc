"""The report the segmentation's writer builds from its roster and saves in the store: it is
the report the API would build from the store, and the API serves it without reading the
customers, unless it is stale or not a report."""

from __future__ import annotations

import logging
import time

import orjson
import pytest
from fastapi.testclient import TestClient

from api import dashboard
from api.app import create_app
from api.saved_report import ReportWriter, SavedReport
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink
from consumer.pipeline import Pipeline
from segmenter.lines import InvoiceLine
from segmenter.model import SegmentModel
from segmenter.policy import InsiderPolicy, PolicySettings
from segmenter.roster import Roster
from tests.api.test_snapshots import Watched
from tests.conftest import SAMPLE


def replayed(every: float = 5.0) -> Watched:
    """The sample through a pipeline whose writer saves the report (the last one at the end,
    as `insiders consume --exit-at-end` and the demo do)."""
    store = Watched()
    pipeline = Pipeline(store, MemoryEventSink(), SegmentModel(), report=ReportWriter(store, every))
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    pipeline.write_report(final=True)
    store.full_reads = 0
    return store


def late_purchase(store: Watched, customer: str, pounds: int) -> None:
    """A purchase at the watermark, applied to the store with no pipeline (no writer) seeing it."""
    at = store.watermark() or 0
    line = InvoiceLine(f"x{customer}:0", f"x{customer}", "85123A", 1, at, pounds * 10**6, customer)
    store.apply(f"extra-{customer}", 0, [(0, line)], 0)
    assert store.saved_report() is not None and store.saved_report()[1] != store.revision()


def saved_doc(store: Watched) -> SavedReport:
    saved = store.saved_report()
    assert saved is not None
    return SavedReport.model_validate_json(saved[0])


def test_the_saved_report_is_the_one_built_from_the_store():
    store = replayed()
    doc = saved_doc(store)
    here = dashboard.build(store, store.watermark())
    assert doc.report == here.report
    assert doc.shares == here.shares
    assert doc.report.customers == 377 and doc.report.insiders == 46  # the sample's, as replayed
    saved = store.saved_report()
    assert saved is not None and saved[1] == store.revision()


def test_the_api_serves_it_without_reading_the_customers():
    store = replayed()
    client = TestClient(create_app(store))
    for route in ("/report", "/dashboard"):
        assert client.get(route).status_code == 200
    assert store.full_reads == 0
    assert client.get("/report").json() == orjson.loads(saved_doc(store).report.model_dump_json())


def test_a_report_saved_before_later_writes_is_served_until_it_is_overdue():
    store = replayed()
    before = saved_doc(store).report.revenue
    late_purchase(store, "12347", 1000)  # no writer saw it: the saved report is behind
    client = TestClient(create_app(store))
    assert client.get("/report").json()["revenue"] == pytest.approx(before)
    assert store.full_reads == 0

    # Overdue: its writer said the next would come within due_within, and none came.
    saved = store.saved_report()
    assert saved is not None
    doc = saved_doc(store)
    overdue = doc.model_copy(update={"built_at": time.time() - doc.due_within - 60})
    store.save_report(overdue.model_dump_json().encode())
    late_purchase(store, "12348", 500)
    client = TestClient(create_app(store))
    assert client.get("/report").json()["revenue"] == pytest.approx(before + 1500)
    assert store.full_reads == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda doc: b"\x80\x04pickle", "the document"),
        (lambda doc: orjson.dumps({**doc, "report": {**doc["report"], "customers": -3}}), "report"),
        (lambda doc: orjson.dumps({**doc, "version": 9}), "version"),
        (lambda doc: orjson.dumps({**doc, "shares": "all"}), "shares"),
    ],
)
def test_a_saved_report_that_is_not_one_is_not_served(change, field, caplog):
    store = replayed()
    good = orjson.loads(store.saved_report()[0])  # type: ignore[index]
    store.save_report(change(good))
    client = TestClient(create_app(store))
    with caplog.at_level(logging.WARNING, logger="insiders.api"):
        answer = client.get("/report")
    assert answer.status_code == 200
    assert answer.json()["customers"] == 377  # built here, from the store
    assert store.full_reads == 1
    assert any(
        "saved report is not usable" in r.getMessage() and field in r.getMessage()
        for r in caplog.records
    )


def test_the_writer_builds_when_the_store_moved_and_its_time_came():
    store = replayed(every=3600.0)
    writer = ReportWriter(store, every=3600.0)
    now = store.watermark()
    assert writer.due(now, final=False)  # a new writer has built nothing
    writer.write(_roster_of(store), None, now)
    assert not writer.due(now, final=False) and not writer.due(now, final=True)  # nothing moved
    late_purchase(store, "12347", 10)
    assert not writer.due(now, final=False)  # moved, but an hour has not passed
    assert writer.due(now, final=True)  # the input is done: at once


def test_a_failed_build_leaves_the_consumer_running_and_the_api_building(caplog):
    store = replayed()
    before = store.saved_report()
    writer = ReportWriter(store)
    late_purchase(store, "12347", 10)

    class Broken:
        ids = ("x",)

        def column(self, name: str) -> None:
            raise ValueError("a broken roster")

    with caplog.at_level(logging.ERROR, logger="insiders.api"):
        writer.write(Broken(), None, store.watermark())  # type: ignore[arg-type]
    assert store.saved_report() == before  # nothing saved
    assert any("the build failed" in r.getMessage() for r in caplog.records)


def _roster_of(store: Watched) -> Roster:
    return Roster.of((c.customer_id, c.state, c.status) for c in store.customers())


def test_without_a_target_share_the_report_and_stats_answer():
    """INSIDERS_TARGET_SHARE=0 (the clustering decides the size): the policy has no target,
    which the report and /stats show as null, not a failed build."""
    store = Watched()
    policy = InsiderPolicy(PolicySettings(target_share=None))
    pipeline = Pipeline(
        store, MemoryEventSink(), SegmentModel(), policy=policy, report=ReportWriter(store)
    )
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    pipeline.write_report(final=True)
    store.full_reads = 0  # the pipeline's first ranking reads everyone
    client = TestClient(create_app(store))
    report, stats = client.get("/report"), client.get("/stats")
    assert report.status_code == stats.status_code == 200
    assert report.json()["policy"]["target_share"] is None
    assert stats.json()["policy"]["target_share"] is None
    assert store.full_reads == 0  # the consumer's saved report, not one built here
