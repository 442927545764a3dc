"""The feature store in Redis: one hash per customer, offsets and outbox beside them.

Keys (all under a prefix, ``insiders:`` by default):
``c:<id>`` customer hash (running totals in micro-pounds and epoch seconds, plus status),
``ci:<id>`` the customer's purchase invoice numbers (a sorted set, scored by the invoice's
latest day), ``seen:<n>`` applied event ids (sorted sets scored by day * 2^32 +
fingerprint, spread by the id's CRC-32 by linear hashing over the layout in the hash
``seen_buckets``: see apply.lua),
``retention`` where forgetting ids and invoices past the retention stands (see apply.lua),
``offsets`` last applied offset per topic:partition, ``watermark`` latest event time,
``pending`` customers awaiting a segmentation step, ``customers`` ids with purchases,
``insiders`` Insiders by entry time, ``events`` the event stream (outbox for Kafka),
``events:published`` the outbox's published cursor, ``events:holds`` readers' holds on
the outbox (webhook subscriptions' cursors, see ``consumer/subscriptions.py``, which also
keeps ``subscriptions`` and ``subscription:<id>``), ``h:<id>`` a customer's last events,
``event_counts`` events by type and reason, ``revision`` the count of visible writes,
``model`` the segmenter's checkpoint (model, sweep clock, policy), ``report`` the report
the writer last built (``doc``) and the revision it was saved at,
``writer`` the consumer that owns them (``<owner id>#<fencing token>``, with a TTL),
``fence`` the last fencing token drawn, ``epoch`` a random id of this state, set when
the prefix is first claimed, and ``writes`` the count of fenced writes (see ``claim``).

The apply script takes no KEYS (it derives key names from the prefix), so it runs on a
single Redis server, not a cluster.
"""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgpack
import orjson
import redis

from consumer.event_codec import pack, unpack
from consumer.ports import (
    DEFAULT_RETENTION,
    EVENT_HOLDS,
    NEWEST,
    ApplyResult,
    Customer,
    EventPage,
    Refusal,
    Retention,
)
from segmenter.errors import CheckpointError, ServiceUnavailable, StoreDiverged
from segmenter.features import CustomerState
from segmenter.lines import InvoiceLine, LineKind, classify, fingerprint
from segmenter.policy import InsiderStatus
from segmenter.segmentation import StepResult

_KIND_CODE = {LineKind.PURCHASE: "P", LineKind.RETURN: "R", LineKind.IGNORED: "I"}
_STATE_FIELDS = ("rev", "inv", "lines", "units", "rrev", "runits", "first", "last")
_STATUS_FIELDS = ("seg", "ins", "since", "seq", "mv")
# Customers read by one call of the load script (a read of about 1 ms in Redis).
LOAD_BATCH = 1000
_LOAD = (
    "local out = {} for i = 2, #ARGV do out[i - 1] = redis.call('HMGET', ARGV[1] .. ARGV[i], "
    + ", ".join(f"'{f}'" for f in _STATE_FIELDS + _STATUS_FIELDS)
    + ") end return out"
)
# Applied event ids live in small sorted sets, not one set: Redis keeps a sorted set of at
# most 128 members (zset-max-listpack-entries) as a compact listpack, several times smaller
# than one big set. A prefix starts with this many buckets, which split as the ids grow
# (about 40 ids a bucket, see apply.lua): few, since buckets only grow, and an empty-ish
# bucket costs about 95 bytes of key; scored by day, each bucket's ids past the
# retention are forgotten with one ZREMRANGEBYSCORE.
SEEN_BUCKETS = 1024
# Redis's default for that limit (zset-max-listpack-entries), when its config cannot be read.
COMPACT_ENTRIES = 128


# Forgetting past the retention: each apply may visit this many sorted sets (buckets, then
# customers' invoice sets), plus this many per line it applies. A pass over all of them
# thus takes about (buckets + customers) / PRUNE_PER_LINE lines of input.
PRUNE_BASE = 128
PRUNE_PER_LINE = 1.0
# Entries one trim of the outbox removes at most (Redis's default for `XTRIM ... ~`).
TRIM_LIMIT = 10_000


def masked(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: fit for logs and answers.

    >>> masked("redis://:s3cret@redis.internal:6379/0")
    'redis://:***@redis.internal:6379/0'
    >>> masked("rediss://app:s3cret@redis.internal/0?password=other")
    'rediss://app:***@redis.internal/0?password=%2A%2A%2A'
    >>> masked("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key == "password" for key, _ in pairs):
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def connect(url: str, timeout: float = 60.0, check: bool = True) -> redis.Redis:
    """A Redis client for ``url``; with ``check``, one that has answered a PING, or a one-line
    error. ``timeout`` bounds each command (the API uses a short one, so a frozen Redis is
    a quick 503, not a hung request)."""
    client = redis.Redis.from_url(
        url, socket_connect_timeout=min(5.0, timeout), socket_timeout=timeout
    )
    if check:
        try:
            client.ping()
        except redis.RedisError as exc:
            raise ServiceUnavailable(
                f"Redis at {masked(url)} did not answer ({exc}); start it with "
                "`scripts/services start` "
                "or set INSIDERS_REDIS_URL"
            ) from None
    return client


@contextmanager
def watching() -> Iterator[None]:
    """Around a WATCHed transaction: a lost connection stays the outage it is.

    redis-py reports a connection that drops while keys are WATCHed as ``WatchError``, the
    error it also gives when another client changed a watched key. Callers treat that one as a
    conflict; this turns the first back into ``redis.ConnectionError`` (or ``TimeoutError``),
    so that they wait for Redis instead.
    """
    try:
        yield
    except redis.WatchError as exc:
        cause = exc.__context__
        if isinstance(cause, (redis.ConnectionError, redis.TimeoutError)):
            raise type(cause)(f"Redis connection lost inside a transaction: {cause}") from exc
        raise


def _str(value: Any) -> str:
    """Redis answers bytes (the client does not decode: values are not all text)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_order(entry_id: str) -> tuple[int, int]:
    """A stream id (``<ms>-<seq>``) as numbers, for ordering; "" comes first."""
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


def _int(value: Any) -> int | None:
    return None if value is None or value == b"" else int(value)


def decode(customer_id: str, values: Sequence[Any]) -> Customer:
    """A customer from the HMGET of ``_STATE_FIELDS + _STATUS_FIELDS``."""
    rev, inv, lines, units, rrev, runits, first, last, seg, ins, since, seq, mv = values
    state = CustomerState(
        revenue_micros=int(rev or 0),
        invoices=int(inv or 0),
        lines=int(lines or 0),
        units=int(units or 0),
        returned_micros=int(rrev or 0),
        returned_units=int(runits or 0),
        first_ts=_int(first),
        last_ts=_int(last),
    )
    status = InsiderStatus(
        segment=_int(seg),
        insider=ins == b"1",
        insider_since=_int(since),
        sequence=int(seq or 0),
        model_version=int(mv or 0),
    )
    return Customer(customer_id, state, status)


@dataclass
class WriterLease:
    """What a consumer holds while it writes a prefix (see :meth:`RedisFeatureStore.claim`).

    ``value`` is the writer lock's value, ``<owner id>#<fencing token>``; ``epoch`` names
    the prefix's state since it was last created; ``writes`` is the count of fenced writes
    the store must show before this owner's next one.
    """

    value: str
    epoch: str
    writes: int


class RedisFeatureStore:
    """Feature store on a Redis server; see the module docstring for the key layout."""

    backend = "redis"

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "insiders:",
        seen_buckets: int = SEEN_BUCKETS,
        retention: Retention = DEFAULT_RETENTION,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.seen_buckets = seen_buckets  # wanted for a new prefix; see _buckets()
        self.retention = retention  # what a writer keeps; readers ignore it
        self.prune_per_line = PRUNE_PER_LINE
        self._buckets_in_use: int | None = None
        # Set by claim(): every write is then fenced (see _transaction and apply.lua).
        self.lease: WriterLease | None = None
        source = resources.files("consumer").joinpath("lua/apply.lua").read_text()
        self._apply = client.register_script(source)
        self._load = client.register_script(_LOAD)

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "insiders:",
        seen_buckets: int = SEEN_BUCKETS,
        timeout: float = 60.0,
        check: bool = True,
        retention: Retention = DEFAULT_RETENTION,
    ) -> RedisFeatureStore:
        return cls(connect(url, timeout, check), prefix, seen_buckets, retention)

    def _buckets(self) -> int:
        """The prefix's starting bucket count for applied event ids, set by its first apply.

        The first writer's count is stored and wins; the buckets then split as the ids grow
        (see apply.lua). 0 means one plain set (``seen``): a prefix written before buckets
        existed keeps its ids where they are.
        """
        if self._buckets_in_use is None:
            key = self._key("seen_buckets")
            kind = _str(self.client.type(key))
            if kind == "none":
                legacy = bool(self.client.exists(self._key("seen")))
                self.client.hsetnx(key, "n", 0 if legacy else self.seen_buckets)
                kind = "hash"
            # A plain count: the release before's layout, turned into the hash by apply.lua.
            raw: Any = self.client.hget(key, "n") if kind == "hash" else None
            raw = self.client.get(key) if kind == "string" else raw
            try:
                self._buckets_in_use = int(raw or 0)
            except ValueError:
                raise CheckpointError(f"{key} is not a bucket layout (n={_str(raw)})") from None
        return self._buckets_in_use

    def _key(self, name: str) -> str:
        return self.prefix + name

    def seen_per_bucket(self, sample: int = 64) -> tuple[float, int] | None:
        """How many applied ids a bucket holds on average, and how many buckets there are;
        None for a prefix that keeps its ids in one set, or has no layout (yet). The mean is
        exact from the count apply.lua keeps; on a prefix of the release before, the mean
        size of ``sample`` buckets spread over all of them."""
        if self._buckets() == 0:
            return None
        key = self._key("seen_buckets")
        if _str(self.client.type(key)) == "hash":
            layout: Any = self.client.hmget(key, ["n", "split", "held"])
            if layout[0] is None or layout[2] is None:
                return None  # emptied, or not yet counted (the next apply counts)
            buckets = int(layout[0]) + int(layout[1] or 0)
            return int(layout[2]) / buckets, buckets
        raw: Any = self.client.get(key)
        if raw is None:
            return None
        buckets = int(raw)
        picked = range(0, buckets, max(buckets // sample, 1))[:sample]
        pipe = self.client.pipeline(transaction=False)
        for n in picked:
            pipe.zcard(self._key(f"seen:{n}"))
        sizes = [v for v in pipe.execute(raise_on_error=False) if isinstance(v, int)]
        return (sum(sizes) / len(sizes) if sizes else 0.0), buckets

    def compact_entries(self) -> int:
        """The most members of a sorted set Redis keeps compact: its
        ``zset-max-listpack-entries``, or the default where its config cannot be read."""
        try:
            answer: Any = self.client.config_get("zset-max-listpack-entries")
            return int(next(iter(answer.values())))
        except (redis.RedisError, StopIteration, ValueError):
            return COMPACT_ENTRIES

    def stored_offset(self, topic: str, partition: int) -> int:
        value = self.client.hget(self._key("offsets"), f"{topic}:{partition}")
        return -1 if value is None else int(value)

    def apply(
        self,
        topic: str,
        partition: int,
        lines: Sequence[tuple[int, InvoiceLine]],
        last_offset: int,
    ) -> ApplyResult:
        # The lines go as one MessagePack array of 11 values each, not 11 arguments each:
        # packing 55,000 arguments of a 5,000-line block took the client 22 ms, the array 2.
        values: list[Any] = []
        extend = values.extend
        buckets = self._buckets()
        crc32 = zlib.crc32
        for offset, line in lines:
            kind, reason = classify(line)
            hi, lo = divmod(abs(line.quantity) * line.unit_price_micros, 1_000_000_000)
            extend(
                (
                    offset,
                    line.event_id,
                    _KIND_CODE[kind],
                    line.customer_id or "",
                    reason.value if reason is not None else line.invoice_no,
                    line.quantity,
                    hi,
                    lo,
                    line.invoice_ts,
                    crc32(line.event_id.encode()) if buckets else "",
                    fingerprint(line),
                )
            )
        args = [
            self.prefix,
            f"{topic}:{partition}",
            last_offset,
            *self._guard_args(),
            self.retention.dedupe_days,
            PRUNE_BASE + int(self.prune_per_line * len(lines)),
            msgpack.packb(values),
        ]
        try:
            answer = self._apply(args=args)
        except redis.ResponseError as exc:
            layout = str(exc).partition("INSIDERS_LAYOUT ")[2]
            if layout:
                raise CheckpointError(layout) from None
            what = str(exc).partition("INSIDERS_DIVERGED ")[2]
            if not what:
                raise
            raise self._diverged(what) from None
        if answer and answer[0] == b"refused":
            rest = [_str(value) for value in answer[1:]]
            dates = {offset: line.invoice_ts for offset, line in lines}
            refused = []
            for k in range(0, len(rest), 4):
                at, why, event_id, other = int(rest[k]), rest[k + 1], rest[k + 2], rest[k + 3]
                if why == "conflicting_duplicate":
                    refused.append(Refusal.conflict(at, event_id))
                elif why == "beyond_retention":
                    refused.append(Refusal.beyond_retention(at, event_id, dates[at], int(other)))
                else:
                    refused.append(Refusal.beyond_64_bits(at, event_id, other))
            return ApplyResult(refused=tuple(refused))
        if self.lease is not None:
            self.lease.writes += 1
        applied, duplicates, stale = answer
        return ApplyResult(applied, duplicates, stale)

    def pending(self) -> list[str]:
        return [_str(cid) for cid in self.client.zrange(self._key("pending"), 0, -1)]

    def load(self, customer_ids: Sequence[str]) -> list[Customer]:
        # One script call per LOAD_BATCH customers: a pipelined HMGET each costs the client
        # about four times as much (packing and parsing every command apart).
        out: list[Customer] = []
        for start in range(0, len(customer_ids), LOAD_BATCH):
            batch = customer_ids[start : start + LOAD_BATCH]
            answer: Any = self._load(args=[self._key("c:"), *batch])
            out.extend(decode(cid, values) for cid, values in zip(batch, answer, strict=True))
        return out

    def commit_step(self, result: StepResult, model: bytes) -> None:
        insiders = self._key("insiders")
        keep = self.retention.history_keep

        def build(pipe: Any) -> None:
            for cid, status in result.statuses.items():
                pipe.hset(
                    self._key("c:" + cid),
                    mapping={
                        "seg": "" if status.segment is None else status.segment,
                        "ins": int(status.insider),
                        "since": "" if status.insider_since is None else status.insider_since,
                        "seq": status.sequence,
                        "mv": status.model_version,
                    },
                )
                if status.insider and status.insider_since is not None:
                    pipe.zadd(insiders, {cid: status.insider_since})
                else:
                    pipe.zrem(insiders, cid)
            histories = set()
            for event in result.events:
                doc = pack(orjson.dumps(event.as_dict()))
                pipe.xadd(self._key("events"), {"e": doc})
                pipe.rpush(self._key("h:" + event.customer_id), doc)
                histories.add(event.customer_id)
                pipe.hincrby(self._key("event_counts"), f"{event.type}:{event.reason.code}", 1)
            if keep > 0:
                for cid in histories:
                    pipe.ltrim(self._key("h:" + cid), -keep, -1)
            pipe.set(self._key("model"), model)
            pipe.delete(self._key("pending"))
            pipe.incr(self._key("revision"))

        self._transaction(build)

    def revision(self) -> int:
        return int(self.client.get(self._key("revision")) or 0)

    def watermark(self) -> int | None:
        return _int(self.client.get(self._key("watermark")))

    def save_report(self, report: bytes) -> int:
        # The writer is the only one to move the revision, and its fence (the WATCHed write
        # count) refuses the transaction if another took over: read it first, then write.
        revision = self.revision() + 1

        def build(pipe: Any) -> None:
            pipe.delete(self._key("report"))  # whatever was there, even of another type
            pipe.hset(self._key("report"), mapping={"doc": report, "revision": revision})
            pipe.incr(self._key("revision"))

        self._transaction(build)
        return revision

    def saved_report(self) -> tuple[bytes, int] | None:
        try:
            answer: Any = self.client.hmget(self._key("report"), ["doc", "revision"])
        except redis.ResponseError as exc:
            if "WRONGTYPE" not in str(exc):
                raise
            return b"", -1  # a key of another type: an empty document, which readers refuse
        doc, revision = answer
        if doc is None:
            return None
        try:
            at = int(revision)
        except (TypeError, ValueError):
            at = -1  # not a revision: the report is read as not current (and checked)
        return bytes(doc), at

    def model_checkpoint(self) -> bytes | None:
        blob: Any = self.client.get(self._key("model"))
        return None if blob is None else bytes(blob)

    def ignored_counts(self) -> dict[str, int]:
        raw: Any = self.client.hgetall(self._key("ignored"))
        return {_str(k): int(v) for k, v in raw.items()}

    def customer(self, customer_id: str) -> Customer | None:
        values = self.client.hmget(self._key("c:" + customer_id), _STATE_FIELDS + _STATUS_FIELDS)
        if all(v is None for v in values):
            return None
        return decode(customer_id, values)

    def customers(self) -> Iterator[Customer]:
        batch: list[str] = []
        for cid in self.client.sscan_iter(self._key("customers"), count=1000):
            batch.append(_str(cid))
            if len(batch) == 1000:
                yield from self.load(batch)
                batch = []
        if batch:
            yield from self.load(batch)

    def history(self, customer_id: str) -> list[dict[str, object]]:
        key = self._key("h:" + customer_id)
        raw: Any = self.client.lrange(key, 0, -1)
        return [unpack(doc, key) for doc in raw]

    def event_counts(self) -> dict[str, int]:
        raw: Any = self.client.hgetall(self._key("event_counts"))
        return {_str(k): int(v) for k, v in raw.items()}

    def customer_count(self) -> int:
        return int(self.client.scard(self._key("customers")))

    def insiders(self, offset: int, limit: int) -> tuple[list[Customer], int]:
        key = self._key("insiders")
        if limit <= 0:  # ZRANGE 0 -1 would be every Insider
            return [], self.insider_count()
        pipe = self.client.pipeline(transaction=True)
        pipe.zrange(key, offset, offset + limit - 1)
        pipe.zcard(key)
        ids, total = pipe.execute()
        return self.load([_str(cid) for cid in ids]), int(total)

    def insider_count(self) -> int:
        return int(self.client.zcard(self._key("insiders")))

    def events(self, after: str | None, limit: int) -> EventPage:
        start = f"({after}" if after else "-"
        key = self._key("events")
        entries: Any = self.client.xrange(key, min=start, count=limit)
        events = [unpack(fields[b"e"], f"{key} {_str(entry)}") for entry, fields in entries]
        cursors = tuple(_str(entry_id) for entry_id, _ in entries)
        return EventPage(events, cursors[-1] if cursors else None, cursors)

    def wait_events(self, after: str | None, limit: int, timeout: float) -> EventPage:
        key = self._key("events")
        newest = after == NEWEST
        if newest:  # resolved here, not XREAD's "$": a wait of several blocks misses nothing
            last: Any = self.client.xrevrange(key, count=1)
            after = _str(last[0][0]) if last else None
        # XREAD BLOCK on the client's own connections: each block stays well inside its
        # socket timeout (the API's is 2 s), so a long wait is a few blocks in a row.
        socket_timeout = self.client.connection_pool.connection_kwargs.get("socket_timeout")
        most = socket_timeout / 2 if socket_timeout else timeout
        deadline = time.monotonic() + timeout
        while True:
            block = max(0.001, min(most, deadline - time.monotonic()))
            found: Any = self.client.xread(
                {key: after or "0-0"}, count=limit, block=int(block * 1000) or 1
            )
            if found or time.monotonic() >= deadline:
                break
        if not found:
            return EventPage([], after if newest else None)
        entries = found[0][1]
        events = [unpack(fields[b"e"], f"{key} {_str(entry)}") for entry, fields in entries]
        cursors = tuple(_str(entry_id) for entry_id, _ in entries)
        return EventPage(events, cursors[-1], cursors)

    def unpublished_events(self) -> tuple[list[dict[str, object]], str | None]:
        after = self.client.get(self._key("events:published"))
        page = self.events(_str(after) if after else None, 10_000)
        return page.events, page.next_cursor

    def mark_published(self, cursor: str) -> None:
        events, keep = self._key("events"), self.retention.events_keep
        # Trim only when every event is published (the cursor is the stream's last entry),
        # so an event that has not reached the sink is never trimmed. The consumer is the
        # only writer, and its writes are fenced: nothing is appended between the look and
        # the transaction. `~` trims whole stream nodes only, and by Redis's default limit at
        # most 100 nodes' worth of entries a call (10,000), so a lowered keep catches up.
        # Readers' holds (active webhook subscriptions) stop the trim at the oldest cursor.
        trim = False
        below: str | None = None  # with holds: trim the entries below this id only
        if keep > 0:
            pipe = self.client.pipeline(transaction=False)
            pipe.xlen(events)
            pipe.xrevrange(events, count=1)
            pipe.hvals(self._key(EVENT_HOLDS))
            length, newest, holds = pipe.execute()
            trim = length > keep and bool(newest) and _str(newest[0][0]) == cursor
            if trim and holds:
                below = self._trim_below(length - keep, [_str(h) for h in holds])
                trim = below != "0-0"

        def build(pipe: Any) -> None:
            pipe.set(self._key("events:published"), cursor)
            if trim and below is None:
                pipe.xtrim(events, maxlen=keep, approximate=True)
            elif trim:
                pipe.xtrim(events, minid=below, approximate=True, limit=TRIM_LIMIT)
            if trim:
                pipe.incr(self._key("revision"))

        self._transaction(build)

    # The id of the entry at index ARGV[1] (0-based), or of the last one if fewer.
    _NTH_ID = (
        "local r = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1] + 1) "
        "if #r == 0 then return '0-0' end return r[#r][1]"
    )

    def _trim_below(self, excess: int, holds: list[str]) -> str:
        """Where a trim that respects readers' holds stops: it removes the entries below the
        returned id. That is the first entry a MAXLEN trim would keep (it removes at most
        ``excess``, and at most TRIM_LIMIT a call), or the oldest hold's cursor if that comes
        first: the event at a cursor was sent, the ones after it are kept."""
        held = min(holds, key=stream_order)  # "": the holder has been sent nothing yet
        if not held:
            return "0-0"
        first_kept = _str(
            self.client.eval(self._NTH_ID, 1, self._key("events"), min(excess, TRIM_LIMIT))
        )
        return min(first_kept, held, key=stream_order)

    # The writer lock and its lease: the model has one writer per prefix (docs/reliability.md).
    _IF_OWNER = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call({}) end return 0"
    _RENEW = _IF_OWNER.format("'EXPIRE', KEYS[1], ARGV[2]")
    _RELEASE = _IF_OWNER.format("'DEL', KEYS[1]")

    def claim(
        self,
        owner: str,
        ttl: int,
        wait: float,
        stop: threading.Event | None = None,
    ) -> WriterLease:
        """Take the writer lock (waiting up to ``wait`` s) and lease the prefix's state.

        Each claim draws a new fencing token and bumps the write counter, so a transaction
        prepared by an earlier owner fails, and this lease's writes are refused if anyone
        else claims after it. A prefix with no epoch (new, or emptied) gets a fresh one.
        Raises :class:`StoreDiverged` naming the holder if the lock stays taken.
        """
        key = self._key("writer")
        deadline = time.monotonic() + wait
        while True:
            current: Any = self.client.get(key)
            if current is not None and _str(current).split("#")[0] == owner:
                value = _str(current)  # ours already (a re-claim after an outage)
                break
            token = int(self.client.incr(self._key("fence")))
            value = f"{owner}#{token}"
            if self.client.set(key, value, nx=True, ex=ttl):
                break
            holder: Any = self.client.get(key)
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                name = _str(holder).split("#")[0] if holder is not None else "someone"
                raise StoreDiverged(f"{name} holds the writer lock", holder=name)
            if stop is not None:
                stop.wait(0.5)
            else:
                time.sleep(0.5)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self._key("epoch"), uuid.uuid4().hex, nx=True)
        pipe.get(self._key("epoch"))
        pipe.incr(self._key("writes"))
        pipe.expire(key, ttl)
        _, epoch, writes, _ = pipe.execute()
        self._buckets_in_use = None  # the prefix may have been emptied since we looked
        self.lease = WriterLease(value, _str(epoch), int(writes))
        return self.lease

    def renew(self, ttl: int) -> bool:
        """Extend the lease's lock; False if this lease no longer holds it."""
        lease = self.lease
        if lease is None:
            return False
        return bool(self.client.eval(self._RENEW, 1, self._key("writer"), lease.value, ttl))

    def release(self) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            self.client.eval(self._RELEASE, 1, self._key("writer"), lease.value)

    def holder(self) -> str | None:
        """The owner id holding the writer lock now, if any."""
        value: Any = self.client.get(self._key("writer"))
        return None if value is None else _str(value).split("#")[0]

    def _guard_args(self) -> list[Any]:
        lease = self.lease
        return ["", "", ""] if lease is None else [lease.value, lease.epoch, lease.writes]

    def _diverged(self, what: str) -> StoreDiverged:
        if what == "epoch":
            return StoreDiverged(
                f"Redis holds no state of prefix {self.prefix!r} any more, or another one "
                "(emptied, or restarted without its data)"
            )
        if what == "writes":
            return StoreDiverged(
                f"Redis state of prefix {self.prefix!r} is not the one this consumer last wrote "
                "(restored from an older save, or written by another consumer)"
            )
        holder = self.holder()
        return StoreDiverged(
            f"this consumer no longer holds the writer lock of prefix {self.prefix!r}"
            + (f"; {holder} does" if holder else ""),
            holder=holder,
        )

    def _transaction(self, build: Callable[[Any], None]) -> None:
        """Run ``build``'s commands in one MULTI, fenced by the lease when there is one.

        The write counter is WATCHed: a claim by anyone else, or a rollback, makes EXEC fail
        rather than land a stale owner's write.
        """
        lease = self.lease
        if lease is None:
            pipe = self.client.pipeline(transaction=True)
            build(pipe)
            pipe.execute()
            return
        names = [self._key("writes"), self._key("epoch"), self._key("writer")]
        with watching(), self.client.pipeline(transaction=True) as pipe:
            pipe.watch(names[0], names[1])
            writes, epoch, writer = pipe.mget(names)
            if epoch is None or _str(epoch) != lease.epoch:
                raise self._diverged("epoch")
            if writer is None or _str(writer) != lease.value:
                raise self._diverged("writer")
            if writes is None or int(writes) != lease.writes:
                raise self._diverged("writes")
            pipe.multi()
            build(pipe)
            pipe.incr(names[0])
            try:
                with watching():
                    pipe.execute()
            except redis.WatchError:  # the counter moved under the WATCH: another writer
                raise self._diverged("writes") from None
        lease.writes += 1

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False
