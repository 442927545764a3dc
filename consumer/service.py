"""The consumer as a service: the writer lease, its heartbeat, the block loop and recovery.

Redis is the truth of progress. The service claims the prefix (a writer lock with a
fencing token, see :meth:`RedisFeatureStore.claim`), reads each partition from the offset
after the last one Redis holds, and renews the lock from a heartbeat thread, so neither a
long step nor a slow start loses it. When the store is not where this process left it
(Redis emptied or restarted, a write whose answer was lost, an outage), the service does
not go on over it: it claims the store again, rebuilds the pipeline from what Redis holds
now (from nothing, if Redis lost everything) and rewinds the source to match. Only a lock
taken by another consumer, or an outage longer than ``outage_seconds``, stops it, with
one line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from consumer.pipeline import Pipeline, PipelineStats
from consumer.ports import RewindableSource
from consumer.redis_store import RedisFeatureStore
from segmenter.errors import InsidersError, ServiceUnavailable, StoreDiverged

if TYPE_CHECKING:  # prometheus_client is loaded only when metrics are served
    from consumer.metrics import ConsumerMetrics

log = logging.getLogger("insiders")

# Errors after which Redis may answer again: wait for it, then resume from what it holds.
REDIS_OUTAGE = (redis.ConnectionError, redis.TimeoutError)


class Heartbeat:
    """Renews the writer lock every ``ttl / 3`` seconds, whatever the main loop is doing."""

    def __init__(self, store: RedisFeatureStore, ttl: int) -> None:
        self.store = store
        self.ttl = ttl
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        held = True
        while not self._halt.wait(self.ttl / 3):
            try:
                renewed = self.store.renew(self.ttl)
            except redis.RedisError as exc:
                log.debug("heartbeat: Redis did not answer: %s", exc)
                continue
            if held and not renewed:
                # The fence refuses this process's next write; the loop handles it there.
                log.warning("heartbeat: the writer lock is no longer this consumer's")
            held = renewed


# How often the consumer looks at how full its applied ids' buckets are (see bucket_warning).
BUCKET_CHECK_SECONDS = 600.0


def bucket_warning(store: RedisFeatureStore) -> str | None:
    """What to tell the operator when the applied ids' buckets hold more ids than Redis keeps
    compact (each id then costs several times as much); None while they fit.

    The buckets split as the ids grow, to about 40 ids each, so this means either a prefix
    written before they split that is still catching up (a few dozen splits a block), or a
    Redis whose ``zset-max-listpack-entries`` is set below what a bucket holds."""
    seen = store.seen_per_bucket()
    if seen is None:
        return None
    per_bucket, buckets = seen
    limit = store.compact_entries()
    if per_bucket <= limit:
        return None
    return (
        f"applied event ids: about {per_bucket:,.0f} in each of the {buckets:,} buckets of "
        f"Redis prefix {store.prefix!r}, past the {limit} that Redis keeps compact, so each id "
        f"takes several times the memory. The buckets split as ids come (about 40 ids each): "
        f"if this stays, Redis's zset-max-listpack-entries ({limit}) is below that; "
        f"its default is 128"
    )


class ConsumerService:
    """Runs one consumer process over a Redis store until the source ends or a stop.

    With ``metrics``, the run loop reports its counts, each partition's lag and each
    block's duration to them after every block.
    """

    def __init__(
        self,
        store: RedisFeatureStore,
        make_pipeline: Callable[[], Pipeline],
        owner: str,
        ttl: int,
        wait: float,
        outage_seconds: float,
        stop: threading.Event,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self.store = store
        self.make_pipeline = make_pipeline
        self.owner = owner
        self.ttl = ttl
        self.wait = wait
        self.outage_seconds = outage_seconds
        self.stop = stop
        self.metrics = metrics
        self.stats = PipelineStats()
        self.recoveries = 0
        self._next_bucket_check = 0.0  # monotonic time of the next look (bucket_warning)

    def claim(self) -> None:
        """Take the prefix, or fail in one line naming who holds it."""
        before = self.store.lease
        try:
            lease = self.store.claim(self.owner, self.ttl, self.wait, self.stop)
        except StoreDiverged as exc:
            if self.stop.is_set():
                return  # a stop came while waiting for the lock: nothing was taken
            raise InsidersError(
                f"another consumer ({exc.holder}) owns the model under Redis prefix "
                f"{self.store.prefix!r}; stop it, or give this one its own INSIDERS_REDIS_PREFIX"
            ) from None
        if before is not None and before.epoch != lease.epoch:
            log.warning(
                "Redis holds no state of prefix %r any more (emptied, or restarted without "
                "its data): rebuilding it from the earliest offsets",
                self.store.prefix,
            )

    def start_offset(self, topic: str, partition: int) -> int:
        """Where to read a partition from: right after the last offset the store holds."""
        return self.store.stored_offset(topic, partition) + 1

    def run(
        self, source: RewindableSource, on_block: Callable[[int], None] | None = None
    ) -> PipelineStats:
        """Process blocks until the source ends or a stop is requested; returns the stats."""
        heartbeat = Heartbeat(self.store, self.ttl)
        heartbeat.start()
        recovering = False
        try:
            while True:
                try:
                    if recovering:
                        self.recoveries += 1
                        self.claim()
                        source.rewind()
                        log.warning("resuming from what Redis holds now")
                    self._run_once(source, on_block)
                    return self.stats
                except StoreDiverged as exc:
                    if exc.holder is not None and exc.holder != self.owner:
                        raise InsidersError(f"stopped: {exc}") from None
                    log.warning("%s", exc)
                except REDIS_OUTAGE as exc:
                    self._wait_for_redis(exc)
                if self.stop.is_set():
                    return self.stats
                recovering = True
        finally:
            heartbeat.stop()
            self.release()

    def release(self) -> None:
        """Give the lock up now (it would expire by itself after the TTL)."""
        try:
            self.store.release()
        except redis.RedisError as exc:
            log.warning("could not release the writer lock (it expires in %ds): %s", self.ttl, exc)

    def _run_once(self, source: RewindableSource, on_block: Callable[[int], None] | None) -> None:
        pipeline = self.make_pipeline()
        try:
            for block in source.blocks():
                started = time.perf_counter()
                pipeline.process(block)
                source.commit(block)
                if self.metrics is not None:
                    seconds = time.perf_counter() - started
                    self._report(self.metrics, len(block), seconds, pipeline, source)
                if on_block is not None:
                    on_block(len(block))
                if block and time.monotonic() >= self._next_bucket_check:
                    self._next_bucket_check = time.monotonic() + BUCKET_CHECK_SECONDS
                    warning = bucket_warning(self.store)
                    if warning is not None:
                        log.warning("%s", warning)
            if not self.stop.is_set():  # the input is done (--exit-at-end): its last report
                pipeline.write_report(final=True)
        finally:
            self.stats.absorb(pipeline.stats)

    def _report(
        self, metrics: ConsumerMetrics, lines: int, seconds: float, pipeline: Pipeline, source: Any
    ) -> None:
        """Hand ``metrics`` this run's totals so far and the source's lag (Kafka's)."""
        totals = PipelineStats()
        totals.absorb(self.stats)  # the pipelines before a recovery
        totals.absorb(pipeline.stats)
        lag = source.lag() if hasattr(source, "lag") else {}
        metrics.block_done(lines, seconds, totals, self.recoveries, lag)

    def _wait_for_redis(self, error: Exception) -> None:
        """Wait, with backoff, until Redis answers; a one-line error after the budget."""
        log.warning("Redis did not answer (%s); retrying for up to %gs", error, self.outage_seconds)
        deadline = time.monotonic() + self.outage_seconds
        delay = 0.2
        while not self.stop.is_set():
            try:
                self.store.client.ping()
                log.info("Redis answers again")
                return
            except redis.RedisError as exc:
                error = exc
            if time.monotonic() + delay > deadline:
                break
            self.stop.wait(delay)
            delay = min(delay * 2, 5.0)
        raise ServiceUnavailable(
            f"Redis did not answer for {self.outage_seconds:g}s ({error}); stopped. "
            "The next start resumes from what Redis holds"
        )
