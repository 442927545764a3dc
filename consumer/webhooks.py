"""The webhook worker: delivers every Insider entry and exit to every webhook subscription.

Each subscription is sent the outbox's events after its cursor, one POST per event, in the
outbox's order, and its cursor moves only once the receiver answered 2xx: delivery is at least
once, and in order per customer (in fact in order overall, since a failing event holds back
the ones after it). A failed delivery is retried under exponential backoff with jitter (see
:class:`RetryPolicy`); a subscription still failing ``give_up_after`` seconds after its first
failure is *parked*: it keeps its cursor and its last error, gets nothing more, and no longer
holds the outbox's trim, until it is resumed (``POST /subscriptions/{id}/resume``).

Requests follow the Standard Webhooks specification (https://www.standardwebhooks.com): the
body is the event's JSON as on the ``insiders.events`` topic, ``webhook-id`` is its
``event_id`` (the same on every retry: receivers dedupe by it), and ``webhook-timestamp`` and
``webhook-signature`` are made by the ``standardwebhooks`` library with the subscription's
secret, so a receiver verifies them with ``Webhook(secret).verify(body, headers)``.
"""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import orjson
from standardwebhooks import Webhook

from consumer.ports import FeatureStore
from consumer.subscriptions import Attempt, Subscription, SubscriptionStore

if TYPE_CHECKING:
    from consumer.webhook_metrics import WebhookMetrics

log = logging.getLogger("insiders.webhooks")

USER_AGENT = "insiders-webhooks/0.1.0 (Standard Webhooks)"
PAGE = 100  # events read from the outbox at a time, per subscription
ANSWER_SHOWN = 200  # characters of a refusal's body kept in its error

# (url, body, headers, timeout) -> (HTTP status, the start of the answer's body)
Sender = Callable[[str, bytes, dict[str, str], float], tuple[int, bytes]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing delivery is retried, and when its subscription is parked.

    The n-th retry waits ``delay(n) = min(most, first * 2 ** (n - 1))``, jittered to between
    half and all of it. A failure whose next attempt would come more than ``give_up_after``
    seconds after the first failure of that event parks the subscription instead.

    >>> policy = RetryPolicy(first=2.0, most=3600.0, give_up_after=86_400.0)
    >>> [policy.delay(n) for n in (1, 2, 3, 11, 12, 40)]
    [2.0, 4.0, 8.0, 2048.0, 3600.0, 3600.0]
    >>> 1.0 <= policy.wait(1, random.Random(7)) <= 2.0
    True
    """

    first: float = 2.0
    most: float = 3600.0
    give_up_after: float = 86_400.0

    def delay(self, attempt: int) -> float:
        return float(min(self.most, self.first * 2 ** min(attempt - 1, 64)))

    def wait(self, attempt: int, rng: random.Random) -> float:
        full = self.delay(attempt)
        return full / 2 + rng.uniform(0, full / 2)


def sent(subscription: Subscription, cursor: str, attempt: Attempt) -> Subscription:
    """The subscription once the event at ``cursor`` was delivered."""
    return replace(
        subscription,
        cursor=cursor,
        attempts=0,
        failing_since=None,
        next_attempt_at=None,
        last_delivery=attempt,
    )


def failed(
    subscription: Subscription, attempt: Attempt, policy: RetryPolicy, rng: random.Random
) -> Subscription:
    """The subscription after a failed attempt: a retry planned, or parked.

    >>> sub = Subscription("s", "http://x", "k")
    >>> policy = RetryPolicy(first=10.0, most=10.0, give_up_after=25.0)
    >>> rng = random.Random(1)
    >>> sub = failed(sub, Attempt("e:1", at=100.0, status=500), policy, rng)
    >>> sub.state, sub.attempts, 105.0 <= sub.next_attempt_at <= 110.0
    ('active', 1, True)
    >>> sub = failed(sub, Attempt("e:1", at=120.0, status=500), policy, rng)
    >>> sub.state, sub.attempts, sub.failing_since, sub.parked_at
    ('parked', 2, 100.0, 120.0)
    """
    attempts = subscription.attempts + 1
    since = subscription.failing_since if subscription.failing_since is not None else attempt.at
    wait = policy.wait(attempts, rng)
    tried = replace(subscription, attempts=attempts, failing_since=since, last_error=attempt)
    if attempt.at + wait > since + policy.give_up_after:
        return replace(tried, state="parked", parked_at=attempt.at, next_attempt_at=None)
    return replace(tried, next_attempt_at=attempt.at + wait)


def signed(secret: str, event_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """The request headers for ``body``: JSON, our User-Agent, and Standard Webhooks'."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, now, body.decode()),
    }


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """POST ``body`` to ``url``; redirects are not followed (a 3xx is a failure)."""
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname or "", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(ANSWER_SHOWN)
    finally:
        connection.close()


class WebhookWorker:
    """Delivers the outbox's events to every active subscription; see the module docstring.

    ``send`` and ``clock`` are injected so that tests can stand in for HTTP and time.
    """

    def __init__(
        self,
        subscriptions: SubscriptionStore,
        events: FeatureStore,
        retry: RetryPolicy,
        timeout: float = 10.0,
        poll: float = 1.0,
        concurrency: int = 8,
        send: Sender = post,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        metrics: WebhookMetrics | None = None,
    ) -> None:
        self.subscriptions = subscriptions
        self.events = events
        self.retry = retry
        self.timeout = timeout
        self.poll = poll
        self.concurrency = concurrency
        self.send = send
        self.clock = clock
        self.rng = rng or random.Random()
        self.metrics = metrics

    def due(self, subscription: Subscription, now: float) -> bool:
        waiting = subscription.next_attempt_at
        return subscription.state == "active" and (waiting is None or waiting <= now)

    def deliver(self, subscription_id: str, stop: threading.Event | None = None) -> int:
        """Send one subscription its events after its cursor, in order, until it has had
        them all, one fails, it changes elsewhere (deleted, parked, resumed), or ``stop``.
        Returns how many were delivered."""
        sub = self.subscriptions.get(subscription_id)
        delivered = 0
        while sub is not None and self.due(sub, self.clock()):
            if sub.cursor is not None and self.subscriptions.trimmed_after(sub.cursor):
                sub = self._swap(sub, self._gap(sub))
                continue
            page = self.events.events(sub.cursor, PAGE)
            if not page.events:
                break
            for event, cursor in zip(page.events, page.cursors, strict=True):
                if stop is not None and stop.is_set():
                    return delivered
                if not sub.wants(event):
                    sub = self._swap(sub, replace(sub, cursor=cursor))
                    if sub is None:
                        return delivered
                    continue
                attempt = self._attempt(sub, event)
                ok = attempt.error is None
                new = (
                    sent(sub, cursor, attempt) if ok else failed(sub, attempt, self.retry, self.rng)
                )
                sub = self._swap(sub, new)
                if sub is None:  # changed meanwhile: an unrecorded delivery is sent again
                    return delivered
                if not ok:
                    self._report_failure(sub)
                    return delivered
                delivered += 1
                log.info(
                    "delivered %s to subscription %s (%s): HTTP %s",
                    attempt.event_id,
                    sub.id,
                    sub.url,
                    attempt.status,
                )
        return delivered

    def _swap(self, old: Subscription, new: Subscription) -> Subscription | None:
        """``new`` once stored; None if the subscription changed meanwhile (the next turn
        reads it again)."""
        return new if self.subscriptions.swap(old, new) else None

    def _gap(self, sub: Subscription) -> Subscription:
        error = (
            f"events after cursor {sub.cursor} may have been trimmed from the outbox "
            "(INSIDERS_EVENTS_KEEP) while the subscription was parked, before they were sent; "
            "delivery goes on from the oldest event kept"
        )
        log.warning("subscription %s (%s): %s", sub.id, sub.url, error)
        return replace(sub, cursor=None, last_error=Attempt(None, self.clock(), None, error))

    def _attempt(self, sub: Subscription, event: dict[str, object]) -> Attempt:
        event_id = str(event["event_id"])
        body = orjson.dumps(event)
        now = self.clock()
        headers = signed(sub.secret, event_id, body, datetime.fromtimestamp(now, UTC))
        started = time.perf_counter()
        try:
            status, answer = self.send(sub.url, body, headers, self.timeout)
        except (OSError, http.client.HTTPException) as exc:
            self._count(sub, None, exc, started)
            return Attempt(event_id, now, None, f"{type(exc).__name__}: {exc}")
        self._count(sub, status, None, started)
        if 200 <= status < 300:
            return Attempt(event_id, now, status)
        text = answer.decode("utf-8", "replace").replace("\n", " ").strip()[:ANSWER_SHOWN]
        return Attempt(event_id, now, status, f"HTTP {status}" + (f": {text}" if text else ""))

    def _count(
        self, sub: Subscription, status: int | None, error: BaseException | None, started: float
    ) -> None:
        if self.metrics is not None:
            self.metrics.attempted(sub.id, status, error, time.perf_counter() - started)

    def _report_failure(self, sub: Subscription) -> None:
        error = sub.last_error
        assert error is not None and sub.failing_since is not None
        if sub.state == "parked":
            log.error(
                "subscription %s (%s) parked: %d attempts at %s failed over %.0fs (last: %s); "
                "it gets nothing more until POST /subscriptions/%s/resume",
                sub.id,
                sub.url,
                sub.attempts,
                error.event_id,
                error.at - sub.failing_since,
                error.error,
                sub.id,
            )
        else:
            log.warning(
                "delivery of %s to subscription %s (%s) failed: %s; attempt %d, next in %.1fs",
                error.event_id,
                sub.id,
                sub.url,
                error.error,
                sub.attempts,
                (sub.next_attempt_at or error.at) - error.at,
            )

    def _turn(self, subscription_id: str, stop: threading.Event, busy: set[str]) -> None:
        try:
            self.deliver(subscription_id, stop)
        except Exception as exc:  # the store went away: the next turn tries again
            log.warning("subscription %s: %s: %s", subscription_id, type(exc).__name__, exc)
        finally:
            busy.discard(subscription_id)

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set, then finish the deliveries in hand and return."""
        busy: set[str] = set()
        unavailable = False
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook") as pool:
            first = True
            while not stop.is_set():
                try:
                    subscriptions = self.subscriptions.all()
                except Exception as exc:
                    if not unavailable:
                        log.warning("cannot read the subscriptions (%s); retrying", exc)
                    unavailable = True
                    stop.wait(self.poll)
                    continue
                if unavailable:
                    log.info("the subscriptions can be read again")
                    unavailable = False
                if first:
                    self._announce(subscriptions)
                    first = False
                now = self.clock()
                for sub in subscriptions:
                    if sub.id in busy or not self.due(sub, now):
                        continue
                    busy.add(sub.id)
                    pool.submit(self._turn, sub.id, stop, busy)
                stop.wait(self.poll)
            pool.shutdown(wait=True, cancel_futures=True)
        log.info("webhook worker stopped")

    def _announce(self, subscriptions: list[Subscription]) -> None:
        parked = [s for s in subscriptions if s.state == "parked"]
        log.info(
            "delivering Insider events to %d subscription(s); looking for new events every %gs",
            len(subscriptions) - len(parked),
            self.poll,
        )
        for sub in parked:
            log.warning(
                "subscription %s (%s) is parked since %s; POST /subscriptions/%s/resume resumes it",
                sub.id,
                sub.url,
                datetime.fromtimestamp(sub.parked_at or 0, UTC).isoformat(),
                sub.id,
            )
