"""GET /events/stream: server-sent events from a real uvicorn server over both stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
import uvicorn

from api.app import create_app
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink
from consumer.pipeline import Pipeline
from segmenter.events import EXITED, InsiderEvent, Reason
from segmenter.segmentation import StepResult
from tests.api.test_serve import free_port
from tests.conftest import SAMPLE

TIMEOUT = httpx.Timeout(10.0)


@pytest.fixture
def base_url(store) -> Iterator[str]:
    pipeline = Pipeline(store, MemoryEventSink())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    app = create_app(store, stream_poll=0.05, keepalive=0.3)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    app.state.stopping.set()
    server.should_exit = True
    thread.join(timeout=20)


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
