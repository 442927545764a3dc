"""Webhook subscriptions: where Insider events are delivered, and how far each one got.

A :class:`SubscriptionStore` keeps the subscriptions with their delivery cursors (the last
event each one was sent). Two implementations sit side by side: Redis, under the feature
store's prefix (``subscriptions`` the set of ids, ``subscription:<id>`` one JSON document
each), and memory, beside the embedded store of ``insiders demo``.

Both *hold* the outbox for active subscriptions: each active subscription's cursor is kept in
the feature store's ``events:holds`` (see :data:`consumer.ports.EVENT_HOLDS`), and the outbox's
trim never removes an event after a hold. A parked subscription holds nothing, so it cannot
keep the outbox from its trim; when it is resumed and the events after its cursor are gone,
:meth:`SubscriptionStore.trimmed_after` says so, and the worker records the gap.

A subscription's secret is stored as given, because the worker needs it to sign: Redis's own
access control (AUTH, ACLs and TLS, all in ``INSIDERS_REDIS_URL``) protects it. It is never
logged (``repr`` leaves it out) and the API shows it only in the answer that creates it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from dataclasses import fields as dataclass_fields
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson
import redis

from consumer.ports import EVENT_HOLDS, FeatureStore
from consumer.redis_store import stream_order, watching
from segmenter.errors import CheckpointError
from segmenter.state import Fields

if TYPE_CHECKING:
    from consumer.memory import MemoryFeatureStore

EVENT_TYPES = ("insider.entered", "insider.exited")
State = Literal["active", "parked"]
_STATES: dict[str, State] = {"active": "active", "parked": "parked"}
Start = Literal["latest", "oldest"]
# Lag is counted, up to this many events: a larger lag reads as this number.
LAG_CAP = 10_000


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery's outcome: the event, when (epoch s), the HTTP status and any error."""

    event_id: str | None  # None: not a delivery (a gap found before delivering)
    at: float
    status: int | None = None  # None: no HTTP answer (refused, timed out, ...)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    """A webhook subscription and where its deliveries stand.

    ``cursor`` is the outbox cursor of the last event sent (or skipped, not being one of
    ``types``); None means before the oldest event kept. ``attempts`` counts the failed
    attempts at the event after it, the first of them at ``failing_since``.

    >>> sub = Subscription("sub_1", "https://example.com/hook", "whsec_abc", ("insider.entered",))
    >>> sub.wants({"type": "insider.exited"}), Subscription("s", "u", "k").wants({"type": "x"})
    (False, True)
    >>> "whsec" in repr(sub)
    False
    """

    id: str
    url: str
    secret: str = field(repr=False)
    types: tuple[str, ...] = ()  # empty: every type
    created_at: float = 0.0
    state: State = "active"
    cursor: str | None = None
    attempts: int = 0
    failing_since: float | None = None
    next_attempt_at: float | None = None
    parked_at: float | None = None
    last_delivery: Attempt | None = None
    last_error: Attempt | None = None

    def wants(self, event: Mapping[str, object]) -> bool:
        return not self.types or event.get("type") in self.types

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: object, path: str = "subscription") -> Subscription:
        """A subscription as ``to_doc`` wrote it, every field checked: what sits in Redis
        is not trusted (a wrong one is a :class:`CheckpointError` naming the field)."""
        fields = Fields(doc, path, SUBSCRIPTION_FIELDS)
        found = fields.string("state")
        state = _STATES.get(found)
        if state is None:
            raise CheckpointError(f"{fields.at('state')}: want active or parked, got {found!r}")
        return cls(
            id=fields.string("id"),
            url=fields.string("url"),
            secret=fields.string("secret"),
            types=tuple(fields.names("types")),
            created_at=fields.number("created_at"),
            state=state,
            cursor=None if fields.raw("cursor") is None else fields.string("cursor"),
            attempts=fields.integer("attempts"),
            failing_since=fields.optional_number("failing_since"),
            next_attempt_at=fields.optional_number("next_attempt_at"),
            parked_at=fields.optional_number("parked_at"),
            last_delivery=_attempt(fields, "last_delivery"),
            last_error=_attempt(fields, "last_error"),
        )


SUBSCRIPTION_FIELDS = tuple(f.name for f in dataclass_fields(Subscription))
ATTEMPT_FIELDS = tuple(f.name for f in dataclass_fields(Attempt))


def _attempt(fields: Fields, name: str) -> Attempt | None:
    if fields.raw(name) is None:
        return None
    doc = Fields(fields.raw(name), fields.at(name), ATTEMPT_FIELDS)
    event_id, status, error = (doc.raw(k) for k in ("event_id", "status", "error"))
    return Attempt(
        None if event_id is None else doc.string("event_id"),
        doc.number("at"),
        None if status is None else doc.integer("status"),
        None if error is None else doc.string("error"),
    )


class SubscriptionStore(Protocol):
    """Webhook subscriptions and their cursors, holding the outbox for active ones."""

    def add(self, subscription: Subscription, start: Start = "latest") -> Subscription:
        """Store a new subscription; it is sent the events after the newest one now
        (``latest``) or every event the outbox still keeps (``oldest``)."""
        ...

    def get(self, subscription_id: str) -> Subscription | None: ...

    def all(self) -> list[Subscription]:
        """Every subscription, oldest first."""
        ...

    def remove(self, subscription_id: str) -> bool:
        """Delete it, and release its hold; False if there was none."""
        ...

    def swap(self, old: Subscription, new: Subscription) -> bool:
        """Store ``new`` in place of ``old`` if the stored one is still ``old`` (compare and
        set: a delete, a resume or another worker in between wins); its hold follows ``new``.
        """
        ...

    def lag(self, cursor: str | None) -> int:
        """Events in the outbox after ``cursor``, counted up to :data:`LAG_CAP`."""
        ...

    def trimmed_after(self, cursor: str) -> bool:
        """Whether events after ``cursor`` may have been trimmed before they were sent (the
        trim passed a parked subscription). Memory knows exactly; Redis, whose stream ids
        have gaps, says so once the event at ``cursor`` itself is gone."""
        ...


def _hold(subscription: Subscription) -> str | None:
    """What an active subscription holds in the outbox: its cursor ("": everything)."""
    return (subscription.cursor or "") if subscription.state == "active" else None


class RedisSubscriptionStore:
    """Subscriptions in Redis, under the feature store's prefix (see the module docstring)."""

    _COUNT = "return #redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])"

    def __init__(self, client: redis.Redis, prefix: str = "insiders:") -> None:
        self.client = client
        self.prefix = prefix
        self._ids = prefix + "subscriptions"
        self._holds = prefix + EVENT_HOLDS
        self._events = prefix + "events"

    def _key(self, subscription_id: str) -> str:
        return f"{self.prefix}subscription:{subscription_id}"

    def _write(self, pipe: Any, subscription: Subscription) -> None:
        pipe.set(self._key(subscription.id), orjson.dumps(subscription.to_doc()))
        hold = _hold(subscription)
        if hold is None:
            pipe.hdel(self._holds, subscription.id)
        else:
            pipe.hset(self._holds, subscription.id, hold)

    def add(self, subscription: Subscription, start: Start = "latest") -> Subscription:
        cursor = None
        if start == "latest":
            newest: Any = self.client.xrevrange(self._events, count=1)
            cursor = newest[0][0].decode() if newest else None
        subscription = replace(subscription, cursor=cursor)
        pipe = self.client.pipeline(transaction=True)
        pipe.sadd(self._ids, subscription.id)
        self._write(pipe, subscription)
        pipe.execute()
        return subscription

    def get(self, subscription_id: str) -> Subscription | None:
        raw: Any = self.client.get(self._key(subscription_id))
        return None if raw is None else _stored(raw, self._key(subscription_id))

    def all(self) -> list[Subscription]:
        ids = sorted(i.decode() for i in self.client.smembers(self._ids))  # type: ignore[union-attr]
        docs: Any = self.client.mget([self._key(i) for i in ids]) if ids else []
        found = [_stored(doc, self._key(i)) for i, doc in zip(ids, docs, strict=True) if doc]
        return sorted(found, key=lambda s: (s.created_at, s.id))

    def remove(self, subscription_id: str) -> bool:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._key(subscription_id))
        pipe.srem(self._ids, subscription_id)
        pipe.hdel(self._holds, subscription_id)
        deleted, _, _ = pipe.execute()
        return bool(deleted)

    def swap(self, old: Subscription, new: Subscription) -> bool:
        key = self._key(old.id)
        with watching(), self.client.pipeline(transaction=True) as pipe:
            pipe.watch(key)
            raw = pipe.get(key)
            if raw is None or _stored(raw, key) != old:
                return False
            pipe.multi()
            self._write(pipe, new)
            try:
                with watching():
                    pipe.execute()
            except redis.WatchError:  # changed by someone else meanwhile
                return False
        return True

    def lag(self, cursor: str | None) -> int:
        start = f"({cursor}" if cursor else "-"
        return int(self.client.eval(self._COUNT, 1, self._events, start, LAG_CAP))

    def trimmed_after(self, cursor: str) -> bool:
        oldest: Any = self.client.xrange(self._events, count=1)
        return bool(oldest) and stream_order(oldest[0][0].decode()) > stream_order(cursor)


class MemorySubscriptionStore:
    """Subscriptions in a dictionary, beside the embedded store whose outbox they read.

    Thread-safe: the API's threads and the worker's share it.
    """

    def __init__(self, events: MemoryFeatureStore) -> None:
        self.events = events
        self._subscriptions: dict[str, Subscription] = {}
        self._lock = threading.Lock()

    def _write(self, subscription: Subscription) -> None:
        self._subscriptions[subscription.id] = subscription
        hold = _hold(subscription)
        if hold is None:
            self.events.holds.pop(subscription.id, None)
        else:
            self.events.holds[subscription.id] = hold

    def _end(self) -> int:
        return self.events.outbox_start + len(self.events.outbox)

    def add(self, subscription: Subscription, start: Start = "latest") -> Subscription:
        with self._lock:
            end = self._end()
            cursor = str(end) if start == "latest" and end else None
            subscription = replace(subscription, cursor=cursor)
            self._write(subscription)
            return subscription

    def get(self, subscription_id: str) -> Subscription | None:
        with self._lock:
            return self._subscriptions.get(subscription_id)

    def all(self) -> list[Subscription]:
        with self._lock:
            return sorted(self._subscriptions.values(), key=lambda s: (s.created_at, s.id))

    def remove(self, subscription_id: str) -> bool:
        with self._lock:
            self.events.holds.pop(subscription_id, None)
            return self._subscriptions.pop(subscription_id, None) is not None

    def swap(self, old: Subscription, new: Subscription) -> bool:
        with self._lock:
            if self._subscriptions.get(old.id) != old:
                return False
            self._write(new)
            return True

    def lag(self, cursor: str | None) -> int:
        start = max(int(cursor or 0), self.events.outbox_start)
        return min(self._end() - start, LAG_CAP)

    def trimmed_after(self, cursor: str) -> bool:
        # Cursors count events from the first ever: cursor n was sent events 1..n, and the
        # trim removed events 1..outbox_start, so some after it are gone when n < outbox_start.
        return int(cursor) < self.events.outbox_start


def subscriptions_for(store: FeatureStore) -> SubscriptionStore:
    """The subscription store that goes with ``store`` (the same Redis and prefix, or its
    outbox in memory)."""
    from consumer.memory import MemoryFeatureStore
    from consumer.redis_store import RedisFeatureStore

    if isinstance(store, RedisFeatureStore):
        return RedisSubscriptionStore(store.client, store.prefix)
    if isinstance(store, MemoryFeatureStore):
        return MemorySubscriptionStore(store)
    raise TypeError(f"no subscription store for a {type(store).__name__}")


def resume(store: SubscriptionStore, subscription_id: str) -> Subscription | None:
    """Make a subscription active again, to be tried at once from its cursor (a parked one,
    or one waiting for its next retry); None if there is no such subscription."""
    while True:
        sub = store.get(subscription_id)
        if sub is None:
            return None
        new = replace(
            sub,
            state="active",
            attempts=0,
            failing_since=None,
            next_attempt_at=None,
            parked_at=None,
        )
        if new == sub or store.swap(sub, new):
            return new


def _stored(raw: bytes | str, key: str) -> Subscription:
    """The subscription a Redis value holds; a CheckpointError naming the key if it is not one."""
    try:
        return Subscription.from_doc(orjson.loads(raw), key)
    except orjson.JSONDecodeError:
        raise UnreadableSubscription(f"{key}: not JSON: {raw[:16]!r}") from None
    except CheckpointError as exc:
        raise UnreadableSubscription(str(exc)) from None


class UnreadableSubscription(CheckpointError):
    """A value where a subscription is kept that is not one (the API answers 503)."""
