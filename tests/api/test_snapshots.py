"""The report and the dashboard answer from a snapshot: a request never reads the whole base,
never waits for a build once one exists, and never holds up another request."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink, MemoryFeatureStore
from consumer.pipeline import Pipeline
from consumer.ports import Customer
from segmenter.lines import InvoiceLine
from segmenter.model import SegmentModel
from tests.conftest import SAMPLE


class Watched(MemoryFeatureStore):
    """The embedded store, counting full reads; each one can be made slow."""

    def __init__(self) -> None:
        super().__init__()
        self.full_reads = 0
        self.delay = 0.0
        self.reading = threading.Event()

    def customers(self) -> Iterator[Customer]:
        self.full_reads += 1
        self.reading.set()
        time.sleep(self.delay)
        yield from super().customers()


@pytest.fixture
def watched() -> Watched:
    store = Watched()
    pipeline = Pipeline(store, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    store.full_reads = 0  # the daily ranking reads everyone too
    return store


def late_purchase(store: Watched, customer: str, pounds: int) -> None:
    at = store.watermark() or 0
    line = InvoiceLine(f"x{customer}:0", f"x{customer}", "85123A", 1, at, pounds * 10**6, customer)
    store.apply("extra", 0, [(0, line)], 0)


def test_repeated_requests_read_the_base_once(watched):
    client = TestClient(create_app(watched))
    first = client.get("/report")
    assert first.status_code == 200 and watched.full_reads == 1
    for _ in range(5):
        assert client.get("/report").json() == first.json()
        assert client.get("/dashboard").status_code == 200
    assert watched.full_reads == 1


def test_a_change_is_served_stale_at_once_then_fresh(watched):
    client = TestClient(create_app(watched, report_refresh=0.05))
    before = client.get("/report").json()
    watched.delay = 1.0
    late_purchase(watched, "99999", 50_000)  # a new customer, richer than anyone
    started = time.monotonic()
    stale = client.get("/report")
    assert time.monotonic() - started < 0.5  # did not wait for the 1 s build
    assert stale.json() == before
    deadline = time.monotonic() + 10
    while client.get("/report").json()["customers"] == before["customers"]:
        assert time.monotonic() < deadline, "the report was never rebuilt"
        time.sleep(0.05)
    assert client.get("/report").json()["customers"] == before["customers"] + 1


def test_a_slow_build_holds_up_no_other_request(watched):
    client = TestClient(create_app(watched, report_refresh=0.05))
    client.get("/report")
    watched.delay = 2.0
    watched.reading.clear()
    late_purchase(watched, "99998", 10)
    client.get("/dashboard")  # starts the slow rebuild, answers with the last snapshot
    assert watched.reading.wait(5)

    def timed(path: str) -> float:
        started = time.monotonic()
        assert client.get(path).status_code == 200
        return time.monotonic() - started

    with ThreadPoolExecutor(4) as pool:
        took = list(pool.map(timed, ["/customers/99998", "/report", "/dashboard", "/stats"]))
    # Each answered while the 2 s build was still reading.
    assert max(took) < 1.0, took


def test_a_first_build_that_fails_is_an_error_and_the_next_request_tries_again(watched):
    class Broken(Exception):
        pass

    calls = {"n": 0}
    read = watched.customers

    def failing_once() -> Iterator[Customer]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Broken("the store went away mid-read")
        return read()

    watched.customers = failing_once  # type: ignore[method-assign]
    client = TestClient(create_app(watched), raise_server_exceptions=False)
    assert client.get("/report").status_code == 500
    assert client.get("/report").status_code == 200
