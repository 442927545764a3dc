"""FeatureStore.wait_events, the blocking read behind the API's event stream, run against the
in-memory store and the real Redis store: it answers at once when events are there, waits
for the next one when none is, and comes back empty when none came in time."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from consumer.memory import MemoryFeatureStore
from consumer.ports import NEWEST, EventPage, FeatureStore
from consumer.redis_store import RedisFeatureStore
from segmenter.events import ENTERED, InsiderEvent, Reason
from segmenter.segmentation import StepResult
from tests.conftest import REDIS_URL, delete_prefix

DAY = 86_400


def event(customer: str) -> InsiderEvent:
    return InsiderEvent(customer, 1, ENTERED, 5 * DAY, Reason("top_segment", "top"), 1, 7, {"x": 1})


def commit(store: FeatureStore, *customers: str) -> None:
    store.commit_step(StepResult(events=[event(c) for c in customers]), b"model")


def ids(page: EventPage) -> list[object]:
    return [e["event_id"] for e in page.events]


def commit_later(store: FeatureStore, seconds: float, *customers: str) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), commit(store, *customers)))
    thread.start()
    return thread


def timed(store: FeatureStore, after: str | None, timeout: float) -> tuple[EventPage, float]:
    started = time.monotonic()
    page = store.wait_events(after, 100, timeout)
    return page, time.monotonic() - started


def test_events_already_there_come_at_once_as_events_gives_them(store):
    commit(store, "1", "2", "3")
    first = store.events(None, 1)
    page, took = timed(store, None, 5.0)
    assert page == store.events(None, 100) and ids(page) == ["1:1", "2:1", "3:1"]
    page, took_after = timed(store, first.next_cursor, 5.0)
    assert page == store.events(first.next_cursor, 100) and ids(page) == ["2:1", "3:1"]
    assert max(took, took_after) < 1.0


def test_with_nothing_new_it_waits_the_timeout_and_comes_back_empty(store):
    commit(store, "1")
    end = store.events(None, 100).next_cursor
    page, took = timed(store, end, 0.6)
    assert page.events == [] and page.next_cursor is None
    assert 0.55 <= took < 2.0


def test_an_event_appended_while_waiting_wakes_the_reader_at_once(store):
    commit(store, "1")
    end = store.events(None, 100).next_cursor
    writer = commit_later(store, 0.3, "2", "3")
    page, took = timed(store, end, 10.0)
    writer.join()
    assert ids(page) == ["2:1", "3:1"]
    assert page == store.events(end, 100)  # the same events and cursors as a plain read
    assert 0.25 <= took < 2.0


def test_an_empty_outbox_is_waited_on_from_the_start(store):
    writer = commit_later(store, 0.2, "1")
    page, took = timed(store, None, 10.0)
    writer.join()
    assert ids(page) == ["1:1"] and took < 2.0


def test_newest_skips_the_events_there_and_waits_for_the_next(store):
    commit(store, "1", "2")
    page, _ = timed(store, NEWEST, 0.3)
    assert page.events == []
    # Where it waited from: the next wait goes on from there, missing nothing in between.
    assert page.next_cursor == store.events(None, 2).next_cursor
    commit(store, "2b")
    assert ids(store.wait_events(page.next_cursor, 100, 5.0)) == ["2b:1"]
    writer = commit_later(store, 0.3, "3")
    page, took = timed(store, NEWEST, 10.0)
    writer.join()
    assert ids(page) == ["3:1"] and took < 2.0
    assert page.cursors == store.events(store.events(None, 3).next_cursor, 100).cursors


def test_a_redis_wait_longer_than_the_client_s_socket_timeout_is_no_timeout(redis_client):
    """The API's client gives each command 2 s; a stream waits longer than that."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    store = RedisFeatureStore.from_url(REDIS_URL, prefix, timeout=0.4)
    try:
        commit(store, "1")
        end = store.events(None, 100).next_cursor
        page, took = timed(store, end, 1.5)
        assert page.events == [] and 1.45 <= took < 3.0
        writer = commit_later(store, 0.9, "2")
        page, took = timed(store, end, 10.0)
        writer.join()
        assert ids(page) == ["2:1"] and took < 2.5
    finally:
        store.client.close()
        delete_prefix(redis_client, prefix)


def test_newest_on_an_empty_outbox_waits_from_the_start(store):
    page, _ = timed(store, NEWEST, 0.1)
    commit(store, "1")
    assert page.events == [] and ids(store.wait_events(page.next_cursor, 100, 5.0)) == ["1:1"]


def test_the_memory_store_refuses_a_redis_cursor_as_events_does():
    with pytest.raises(ValueError):
        MemoryFeatureStore().wait_events("1700000000000-0", 10, 0.1)
