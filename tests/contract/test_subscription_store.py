"""The subscription-store contract, run against the in-memory store and the real Redis one,
with the outbox's trim: active subscriptions hold what they have not been sent, parked ones
hold nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from consumer.memory import MemoryFeatureStore
from consumer.ports import Retention
from consumer.redis_store import RedisFeatureStore
from consumer.subscriptions import (
    Attempt,
    MemorySubscriptionStore,
    RedisSubscriptionStore,
    Subscription,
    resume,
)
from segmenter.events import ENTERED, InsiderEvent, Reason
from segmenter.segmentation import StepResult

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def event(cid: str) -> InsiderEvent:
    return InsiderEvent(cid, 1, ENTERED, 432_000, Reason("top_segment", "top"), 1, 7, {"x": 1})


def commit(store, *customers: str) -> None:
    store.commit_step(StepResult(events=[event(c) for c in customers]), b"m")


def publish_all(store) -> None:
    _, cursor = store.unpublished_events()
    if cursor is not None:
        store.mark_published(cursor)


def ids(store) -> list[str]:
    return [str(e["customer_id"]) for e in store.events(None, 100_000).events]


@pytest.fixture(params=["memory", "redis"])
def stores(request, redis_client, redis_prefix):
    """(feature store, subscription store) over the same outbox."""
    if request.param == "memory":
        events = MemoryFeatureStore()
        return events, MemorySubscriptionStore(events)
    return RedisFeatureStore(redis_client, redis_prefix), RedisSubscriptionStore(
        redis_client, redis_prefix
    )


def new(sub_id: str = "sub_1", **fields) -> Subscription:
    return Subscription(sub_id, "https://hooks.example.com/in?t=1", SECRET, **fields)


def test_add_get_list_remove(stores):
    _, subs = stores
    first = subs.add(new("sub_b", created_at=1.0, types=("insider.exited",)))
    second = subs.add(new("sub_a", created_at=2.0))
    assert subs.get("sub_b") == first and first.secret == SECRET
    assert first.types == ("insider.exited",) and first.state == "active"
    assert [s.id for s in subs.all()] == ["sub_b", "sub_a"]  # oldest first, not by id
    assert subs.remove("sub_b") is True
    assert subs.remove("sub_b") is False
    assert subs.get("sub_b") is None and subs.all() == [second]


def test_a_subscription_starts_at_the_newest_event_or_at_the_oldest_kept(stores):
    events, subs = stores
    commit(events, "c1", "c2", "c3")
    latest = subs.add(new("sub_l"), "latest")
    oldest = subs.add(new("sub_o"), "oldest")
    assert latest.cursor == events.events(None, 10).cursors[-1] and oldest.cursor is None
    assert (subs.lag(latest.cursor), subs.lag(oldest.cursor)) == (0, 3)
    commit(events, "c4", "c5")
    assert (subs.lag(latest.cursor), subs.lag(oldest.cursor)) == (2, 5)
    assert [e["customer_id"] for e in events.events(latest.cursor, 10).events] == ["c4", "c5"]


def test_swap_is_compare_and_set(stores):
    _, subs = stores
    sub = subs.add(new())
    attempt = Attempt("c1:1", 1700000000.5, 204)
    moved = replace(sub, cursor="7", last_delivery=attempt)
    assert subs.swap(sub, moved) is True
    assert subs.get(sub.id) == moved  # every field comes back as it went in
    assert subs.swap(sub, replace(sub, cursor="8")) is False  # stale: someone moved it
    assert subs.get(sub.id) == moved
    subs.remove(sub.id)
    assert subs.swap(moved, replace(moved, cursor="9")) is False  # deleted: stays deleted
    assert subs.get(sub.id) is None


def test_resume_makes_a_parked_subscription_active_from_its_cursor(stores):
    _, subs = stores
    sub = subs.add(new())
    parked = replace(sub, state="parked", attempts=9, failing_since=5.0, parked_at=9.0)
    parked = replace(parked, cursor="3", last_error=Attempt("c:1", 9.0, 500, "HTTP 500"))
    assert subs.swap(sub, parked)
    back = resume(subs, sub.id)
    assert back is not None and subs.get(sub.id) == back
    assert (back.state, back.attempts, back.failing_since, back.parked_at) == (
        "active",
        0,
        None,
        None,
    )
    assert back.cursor == "3" and back.last_error == parked.last_error  # kept, to look at
    assert resume(subs, "sub_none") is None


def test_an_active_subscription_holds_the_trim_and_a_parked_one_does_not(stores):
    events, subs = stores
    events.retention = Retention(events_keep=50)
    sub = subs.add(new(), "oldest")
    commit(events, *(f"a{i}" for i in range(300)))
    publish_all(events)
    assert len(ids(events)) == 300  # sent nothing yet: everything is held

    # Sent a0..a139: the trim may take those, never a140 or later. (Redis trims whole
    # stream nodes, of up to 100 entries: a0..a99 is one.)
    cursor = events.events(None, 140).cursors[-1]
    sent = replace(sub, cursor=cursor)
    assert subs.swap(sub, sent)
    commit(events, "b0")
    publish_all(events)
    kept = ids(events)
    assert kept[-161:] == [f"a{i}" for i in range(140, 300)] + ["b0"]
    assert len(kept) < 300  # it did trim what was sent (Redis: whole nodes of it)
    assert not subs.trimmed_after(cursor)  # the event at the cursor is kept: no gap

    # Parked: it holds nothing, and the trim goes back to about 50 events.
    parked = replace(sent, state="parked", parked_at=1.0)
    assert subs.swap(sent, parked)
    commit(events, "b1")
    publish_all(events)
    kept = ids(events)
    assert 50 <= len(kept) < 150 and kept[-1] == "b1"
    # Resumed later, it finds its next events gone, and can say so.
    assert subs.trimmed_after(cursor)
    assert subs.lag(cursor) == len(kept)  # what is left after the gap


def test_removing_a_subscription_releases_its_hold(stores):
    events, subs = stores
    events.retention = Retention(events_keep=50)
    subs.add(new(), "oldest")
    commit(events, *(f"a{i}" for i in range(300)))
    publish_all(events)
    assert len(ids(events)) == 300
    subs.remove("sub_1")
    commit(events, "b0")
    publish_all(events)
    assert 50 <= len(ids(events)) < 150


def test_the_oldest_of_several_holds_wins(stores):
    events, subs = stores
    events.retention = Retention(events_keep=10)
    commit(events, *(f"a{i}" for i in range(200)))
    cursors = events.events(None, 200).cursors
    for name, upto in (("sub_x", 150), ("sub_y", 60), ("sub_z", 190)):
        sub = subs.add(new(name))
        assert subs.swap(sub, replace(sub, cursor=cursors[upto - 1]))
    publish_all(events)
    kept = ids(events)
    assert kept[-140:] == [f"a{i}" for i in range(60, 200)]
    assert not subs.trimmed_after(cursors[59])
