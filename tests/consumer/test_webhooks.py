"""The webhook worker over the in-memory store: signed deliveries to a real local HTTP server,
order, type filters, backoff then park, resume, and gaps left by the trim."""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from standardwebhooks import Webhook

from consumer.memory import MemoryFeatureStore
from consumer.ports import Retention
from consumer.subscriptions import MemorySubscriptionStore, Subscription, resume
from consumer.webhooks import USER_AGENT, RetryPolicy, WebhookWorker
from segmenter.events import ENTERED, EXITED, InsiderEvent, Reason
from segmenter.segmentation import StepResult

SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"  # 24 bytes, base64


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every request it is sent.

    ``answer(n)`` gives the status of the n-th request (1-based); by default 204.
    ``delay`` seconds pass before each answer.
    """

    def __init__(self, answer: Callable[[int], int] = lambda n: 204, delay: float = 0.0) -> None:
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    status = answer(len(receiver.requests) + 1)
                    receiver.requests.append((dict(self.headers.items()), body, status))
                time.sleep(delay)
                with contextlib.suppress(OSError):  # the sender may have given up waiting
                    self.send_response(status)
                    self.send_header("Content-Length", "4")
                    self.end_headers()
                    self.wfile.write(b"nope" if status >= 300 else b"done")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/insiders?team=crm"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> list[dict]:
        """The bodies of the requests answered 2xx, as JSON, in the order received."""
        with self._lock:
            return [orjson.loads(body) for _, body, status in self.requests if status < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def commit(store: MemoryFeatureStore, *events: tuple[str, int, str]) -> None:
    """Outbox events (customer, sequence, type), as the pipeline commits them."""
    made = [
        InsiderEvent(cid, seq, kind, 1_323_000_000 + seq, Reason("top_segment", "top"), 1, 7, {})
        for cid, seq, kind in events
    ]
    store.commit_step(StepResult(events=made), b"m")


STORY = [
    ("12347", 1, ENTERED),
    ("12348", 1, ENTERED),
    ("12347", 2, EXITED),
    ("12349", 1, ENTERED),
    ("12348", 2, EXITED),
    ("12347", 3, ENTERED),
]


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


POLICY = RetryPolicy(1.0, 4.0, 20.0)


def setup(
    policy: RetryPolicy = POLICY, **worker: object
) -> tuple[MemoryFeatureStore, MemorySubscriptionStore, WebhookWorker]:
    events = MemoryFeatureStore()
    subs = MemorySubscriptionStore(events)
    return events, subs, WebhookWorker(subs, events, policy, rng=random.Random(3), **worker)  # type: ignore[arg-type]


def test_each_event_is_posted_signed_as_standard_webhooks_says(receiver):
    events, subs, worker = setup()
    sub = subs.add(Subscription("sub_1", receiver.url, SECRET), "oldest")
    commit(events, *STORY)
    assert worker.deliver(sub.id) == len(STORY)
    stored = events.events(None, 100).events
    assert receiver.accepted() == stored  # the event JSON, as on the events topic
    for headers, body, _ in receiver.requests:
        # What a receiver does: verify with the library and the secret, or refuse.
        assert Webhook(SECRET).verify(body, headers) == orjson.loads(body)
        assert headers["webhook-id"] == orjson.loads(body)["event_id"]
        assert headers["User-Agent"] == USER_AGENT
        assert headers["Content-Type"] == "application/json"
        with pytest.raises(Exception, match="No matching signature"):
            Webhook("whsec_" + "A" * 32).verify(body, headers)
    done = subs.get(sub.id)
    assert done is not None and subs.lag(done.cursor) == 0
    assert done.last_delivery is not None and done.last_delivery.event_id == "12347:3"
    assert done.last_delivery.status == 204 and done.last_error is None


def test_a_failing_event_holds_back_the_ones_after_it_so_each_customer_stays_in_order():
    events, subs, _ = setup()
    clock = Clock()
    # The receiver refuses 12347:2 twice; it would take 12347:3 at once.
    refused = {"12347:2": 2}
    sent: list[str] = []

    def send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
        event_id = headers["webhook-id"]
        sent.append(event_id)
        if refused.get(event_id, 0) > 0:
            refused[event_id] -= 1
            return 503, b"busy"
        return 200, b""

    worker = WebhookWorker(subs, events, RetryPolicy(1.0, 4.0, 60.0), send=send, clock=clock)
    subs.add(Subscription("sub_1", "http://127.0.0.1:9/", SECRET), "oldest")
    commit(events, *STORY)
    assert worker.deliver("sub_1") == 2  # 12347:1, 12348:1, then 12347:2 fails
    waiting = subs.get("sub_1")
    assert waiting is not None and waiting.attempts == 1 and waiting.next_attempt_at is not None
    assert waiting.last_error is not None and waiting.last_error.error == "HTTP 503: busy"
    assert worker.deliver("sub_1") == 0  # not due yet: nothing is sent
    while (sub := subs.get("sub_1")) is not None and sub.next_attempt_at is not None:
        clock.now = sub.next_attempt_at
        worker.deliver("sub_1")
    expected = [f"{c}:{s}" for c, s, _ in STORY]
    assert sent == [*expected[:3], "12347:2", "12347:2", *expected[3:]]
    # First deliveries, per customer: sequences in order.
    firsts = list(dict.fromkeys(sent))
    for customer in ("12347", "12348", "12349"):
        seqs = [int(e.split(":")[1]) for e in firsts if e.startswith(customer + ":")]
        assert seqs == sorted(seqs)


def test_backoff_doubles_with_jitter_then_the_subscription_is_parked(caplog):
    events, subs, _ = setup()
    clock = Clock(1000.0)
    attempts: list[float] = []

    def refuse(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
        attempts.append(clock.now)
        return 500, b"Internal Server Error"

    policy = RetryPolicy(first=1.0, most=4.0, give_up_after=20.0)
    worker = WebhookWorker(subs, events, policy, send=refuse, clock=clock, rng=random.Random(5))
    subs.add(Subscription("sub_1", "http://127.0.0.1:9/", SECRET), "oldest")
    commit(events, *STORY)
    assert events.holds == {"sub_1": ""}
    caplog.set_level(logging.INFO, logger="insiders.webhooks")
    while (sub := subs.get("sub_1")) is not None and sub.state == "active":
        clock.now = sub.next_attempt_at or clock.now
        worker.deliver("sub_1")
    parked = subs.get("sub_1")
    assert parked is not None and parked.state == "parked"
    # Waits, worked by hand: 1, 2, 4, then 4 each time (the most), each jittered to
    # between half and all of it.
    full = [1.0, 2.0] + [4.0] * 20
    waits = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(d / 2 <= w <= d for w, d in zip(waits, full, strict=False)), waits
    # Parked at the last failure, the first one at which a further wait (4 s at most) would
    # pass 20 s since the first failure: so after 16 s, and within 20 s.
    assert parked.parked_at == attempts[-1] and 16.0 < attempts[-1] - attempts[0] <= 20.0
    assert parked.attempts == len(attempts) and parked.failing_since == attempts[0]
    assert parked.cursor is None  # nothing was sent: it keeps its place
    assert parked.last_error is not None and parked.last_error.event_id == "12347:1"
    assert parked.last_error.error == "HTTP 500: Internal Server Error"
    assert "sub_1" not in events.holds  # parked: it no longer holds the trim
    assert any(
        "subscription sub_1" in r.message and "parked" in r.message and "resume" in r.message
        for r in caplog.records
    )
    assert worker.deliver("sub_1") == 0  # parked: nothing more is tried
    tried = len(attempts)

    # Resumed, with the receiver back: everything is delivered, from where it stopped.
    worker.send = lambda url, body, headers, timeout: (200, b"")
    assert resume(subs, "sub_1") is not None and events.holds == {"sub_1": ""}
    assert worker.deliver("sub_1") == len(STORY) and len(attempts) == tried
    assert subs.get("sub_1").state == "active"  # type: ignore[union-attr]


def test_a_subscription_to_some_types_gets_only_those(receiver):
    events, subs, worker = setup()
    subs.add(Subscription("sub_1", receiver.url, SECRET, types=(EXITED,)), "oldest")
    commit(events, *STORY)
    assert worker.deliver("sub_1") == 2
    assert [e["event_id"] for e in receiver.accepted()] == ["12347:2", "12348:2"]
    sub = subs.get("sub_1")
    assert sub is not None and subs.lag(sub.cursor) == 0  # the entries were passed over


def test_a_new_subscription_gets_the_events_after_it_was_made(receiver):
    events, subs, worker = setup()
    commit(events, *STORY[:3])
    subs.add(Subscription("sub_1", receiver.url, SECRET))  # start: latest
    commit(events, *STORY[3:])
    assert worker.deliver("sub_1") == 3
    assert [e["event_id"] for e in receiver.accepted()] == ["12349:1", "12348:2", "12347:3"]


def test_a_receiver_that_does_not_answer_in_time_is_a_failed_delivery():
    slow = Receiver(delay=2.0)
    try:
        events, subs, worker = setup(timeout=0.3)
        subs.add(Subscription("sub_1", slow.url, SECRET), "oldest")
        commit(events, *STORY[:1])
        started = time.monotonic()
        assert worker.deliver("sub_1") == 0
        assert time.monotonic() - started < 1.5
        sub = subs.get("sub_1")
        assert sub is not None and sub.attempts == 1 and sub.last_error is not None
        assert sub.last_error.status is None and "timed out" in str(sub.last_error.error)
    finally:
        slow.close()


def test_nobody_listening_is_a_failed_delivery_naming_the_error():
    events, subs, worker = setup()
    subs.add(Subscription("sub_1", "http://127.0.0.1:9/nothing-here", SECRET), "oldest")
    commit(events, *STORY[:1])
    assert worker.deliver("sub_1") == 0
    sub = subs.get("sub_1")
    assert sub is not None and sub.last_error is not None
    assert sub.last_error.error is not None
    assert sub.last_error.error.startswith("ConnectionRefusedError")


def test_a_gap_left_by_the_trim_while_parked_shows_and_delivery_goes_on(receiver, caplog):
    events, subs, worker = setup()
    events.retention = Retention(events_keep=2)
    sub = subs.add(Subscription("sub_1", receiver.url, SECRET), "oldest")
    commit(events, *STORY[:2])
    assert worker.deliver("sub_1") == 2
    sent = subs.get("sub_1")
    assert sent is not None
    assert subs.swap(sent, replace(sent, state="parked", parked_at=1.0))
    commit(events, *STORY[2:])
    events.mark_published(events.unpublished_events()[1] or "")
    assert [e["event_id"] for e in events.events(None, 10).events] == ["12348:2", "12347:3"]
    resume(subs, sub.id)
    caplog.set_level(logging.WARNING, logger="insiders.webhooks")
    assert worker.deliver("sub_1") == 2
    after = subs.get("sub_1")
    assert after is not None and after.last_error is not None
    assert after.last_error.event_id is None and "trimmed" in str(after.last_error.error)
    assert any("trimmed" in r.message for r in caplog.records)
    got = [e["event_id"] for e in receiver.accepted()]
    assert got == ["12347:1", "12348:1", "12348:2", "12347:3"]  # 12347:2, 12349:1 are lost


def test_the_worker_runs_until_stopped_and_picks_up_new_events(receiver):
    events, subs, worker = setup(poll=0.05)
    subs.add(Subscription("sub_1", receiver.url, SECRET), "oldest")
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        commit(events, *STORY)
        deadline = time.monotonic() + 10
        while len(receiver.accepted()) < len(STORY) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert [e["event_id"] for e in receiver.accepted()] == [f"{c}:{s}" for c, s, _ in STORY]
