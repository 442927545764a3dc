"""GET /events/stream: server-sent events from a real uvicorn server over both stores."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink
from consumer.pipeline import Pipeline
from consumer.ports import FeatureStore
from segmenter.events import EXITED, InsiderEvent, Reason
from segmenter.segmentation import StepResult
from tests.api.test_serve import free_port
from tests.conftest import SAMPLE

TIMEOUT = httpx.Timeout(10.0)


def fill(store: FeatureStore) -> None:
    pipeline = Pipeline(store, MemoryEventSink())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` on a real uvicorn server, as `insiders api` runs it; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        app.state.stopping.set()
        server.should_exit = True
        thread.join(timeout=20)
        assert not thread.is_alive(), "the server did not stop with streams open"


@pytest.fixture
def base_url(store) -> Iterator[str]:
    fill(store)
    with served(create_app(store, stream_poll=0.05, keepalive=0.3)) as url:
        yield url


def frames(response: httpx.Response) -> Iterator[dict[str, str]]:
    """SSE frames as dicts of their fields; a comment line comes out as {"comment": ...}."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        elif fields:
            yield fields
            fields = {}


def read_events(url: str, count: int, **kwargs) -> list[dict[str, str]]:
    got: list[dict[str, str]] = []
    with httpx.stream("GET", url, timeout=TIMEOUT, **kwargs) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for frame in frames(response):
            if "data" in frame:
                got.append(frame)
            if len(got) == count:
                return got
    raise AssertionError(f"the stream ended after {len(got)} of {count} events")


def test_stream_sends_every_event_in_order_with_its_type(base_url, store):
    expected = store.events(None, 10_000).events
    assert len(expected) > 10
    got = read_events(f"{base_url}/events/stream", len(expected))
    assert [orjson.loads(f["data"]) for f in got] == expected
    assert [f["event"] for f in got] == [e["type"] for e in expected]
    assert len({f["id"] for f in got}) == len(got)


def test_reconnecting_with_last_event_id_resumes_right_after_it(base_url, store):
    expected = store.events(None, 10_000).events
    first = read_events(f"{base_url}/events/stream", 3)
    resumed = read_events(f"{base_url}/events/stream", 2, headers={"Last-Event-ID": first[2]["id"]})
    assert [orjson.loads(f["data"]) for f in resumed] == expected[3:5]
    # `after` is the same cursor, for clients that cannot set headers.
    again = read_events(f"{base_url}/events/stream", 1, params={"after": first[2]["id"]})
    assert orjson.loads(again[0]["data"]) == expected[3]


def test_new_events_arrive_live_and_silence_is_kept_alive(base_url, store):
    page = store.events(None, 10_000)
    features = page.events[-1]["features"]
    new = InsiderEvent("12348", 99, EXITED, 10**9, Reason("lapsed", "test"), 2, 1, features)
    with httpx.stream(
        "GET", f"{base_url}/events/stream", params={"after": page.next_cursor}, timeout=TIMEOUT
    ) as response:
        stream = frames(response)
        # Nothing new yet: the server says it is alive rather than staying silent.
        assert next(stream) == {"comment": "keep-alive"}
        store.commit_step(StepResult(events=[new]), store.model_checkpoint() or b"")
        frame = next(f for f in stream if "data" in f)
    assert orjson.loads(frame["data"]) == new.as_dict()
    assert frame["event"] == "insider.exited"


def an_event(store: FeatureStore, customer: str = "12348") -> InsiderEvent:
    features = store.events(None, 1).events[0]["features"]
    return InsiderEvent(customer, 99, EXITED, 10**9, Reason("lapsed", "test"), 2, 1, features)


class CountingStore:
    """The store, counting the pages read from it (the API's reads of the outbox)."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self.pages = 0

    def events(self, after: str | None, limit: int) -> Any:
        self.pages += 1
        return self.store.events(after, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_quiet_stream_reads_nothing_and_a_new_event_wakes_it_at_once(store):
    """No polling: with a minute between keep-alives (and between tries), an open stream
    does not read the outbox again until an event comes, and then gets it within a second."""
    fill(store)
    counting = CountingStore(store)
    app = create_app(counting, stream_poll=60, keepalive=60)  # type: ignore[arg-type]
    end = store.events(None, 10_000).next_cursor
    new = an_event(store)
    with (
        served(app) as url,
        httpx.stream("GET", f"{url}/events/stream?after={end}", timeout=TIMEOUT) as response,
    ):
        stream = frames(response)
        time.sleep(0.5)
        # The first page (before the answer), once more while following the outbox, and
        # perhaps once more when the tail starts following; then nothing while it is quiet.
        opened = counting.pages
        assert 2 <= opened <= 3
        time.sleep(1.5)
        assert counting.pages == opened
        committed = time.monotonic()
        store.commit_step(StepResult(events=[new]), store.model_checkpoint() or b"")
        frame = next(f for f in stream if "data" in f)
        waited = time.monotonic() - committed
    assert orjson.loads(frame["data"]) == new.as_dict()
    assert waited < 1.0, f"the event came {waited:.2f} s after its commit"
    assert counting.pages == opened + 1  # woken once, read once


STREAMS = 60  # more than the 40 threads of the pool the routes answer from


def test_many_open_streams_take_no_thread_and_every_route_still_answers(store):
    fill(store)
    customer = str(store.events(None, 1).events[0]["customer_id"])
    end = store.events(None, 10_000).next_cursor
    new = an_event(store)
    app = create_app(store, stream_poll=0.05, keepalive=30)

    @app.get("/borrowed")  # this test's own: threads of the routes' pool in use, now
    async def borrowed() -> float:
        return anyio.to_thread.current_default_thread_limiter().borrowed_tokens

    with served(app) as url:
        opened = threading.Barrier(STREAMS + 1, timeout=30)
        got: list[dict[str, str]] = []

        def subscribe() -> None:
            with httpx.stream("GET", f"{url}/events/stream?after={end}", timeout=TIMEOUT) as r:
                opened.wait()
                got.append(next(f for f in frames(r) if "data" in f))

        with ThreadPoolExecutor(STREAMS) as pool:
            subscribers = [pool.submit(subscribe) for _ in range(STREAMS)]
            opened.wait()
            with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
                # Each stream reads once more in a thread just after it opens (its catch-up
                # read, see api/stream.py): wait for those, with all the streams still open.
                # Streams that held a thread while waiting would keep the pool's 40 borrowed.
                deadline = time.monotonic() + 10
                while (in_use := client.get("/borrowed").json()) and time.monotonic() < deadline:
                    time.sleep(0.05)
                answers = []
                for _ in range(20):
                    started = time.perf_counter()
                    response = client.get(f"/customers/{customer}")
                    answers.append((response.status_code, time.perf_counter() - started))
            store.commit_step(StepResult(events=[new]), store.model_checkpoint() or b"")
            for subscriber in subscribers:
                subscriber.result(timeout=10)
    assert {status for status, _ in answers} == {200}
    slowest = max(seconds for _, seconds in answers)
    assert slowest < 1.0, f"/customers took {slowest:.2f} s with {STREAMS} streams open"
    assert in_use == 0  # waiting streams hold none of the pool's 40 threads
    assert [orjson.loads(f["data"]) for f in got] == [new.as_dict()] * STREAMS
