"""The API's tests share one fixture: an app over a store filled from the shipped sample."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink
from consumer.pipeline import Pipeline
from segmenter.model import SegmentModel
from tests.conftest import SAMPLE


@pytest.fixture
def client(store):
    pipeline = Pipeline(store, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    return TestClient(create_app(store))


def all_events(client: TestClient, limit: int = 40) -> list[dict]:
    """Every event, read page by page through GET /events as a subscriber would."""
    events: list[dict] = []
    params: dict[str, object] = {"limit": limit}
    while True:
        body = client.get("/events", params=params).json()
        if not body["events"]:
            assert body["next_cursor"] is None
            return events
        events.extend(body["events"])
        params = {"limit": limit, "after": body["next_cursor"]}
