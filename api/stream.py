"""``GET /events/stream``'s live side: every open stream follows the outbox without polling it.

Each stream reads its own pages with :meth:`FeatureStore.events` (a quick read, in the thread
pool). Once it has read everything, it waits on the app's :class:`EventTail`: one thread per
app, blocked in :meth:`FeatureStore.wait_events` (``XREAD BLOCK`` on Redis, a condition in
memory) on the newest event, that wakes every waiting stream when new events come. A waiting
stream holds no thread and no Redis connection, so open streams do not take the thread pool
that the other routes answer from; the tail's thread runs while at least one stream is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator

import redis
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import ServerSentEvent

from api.schemas import Event
from consumer.ports import NEWEST, EventPage, FeatureStore

log = logging.getLogger("insiders.api")

PAGE = 100  # events a stream reads at a time
TAIL_BLOCK = 5.0  # seconds the tail's thread waits in one call; it also stops within this
TAIL_RETRY = 1.0  # seconds between the tail's tries while the store does not answer
STOP_CHECK = 0.5  # seconds between a waiting stream's looks at the server's stop


class EventTail:
    """Wakes the waiting streams of one app when the outbox gets new events.

    A stream takes :attr:`generation` *before* it reads a page; if that page is empty it
    calls :meth:`wait` with it, which returns at once if events came meanwhile. So no event
    appended after a read can be missed by a stream that waits.
    """

    def __init__(self, store: FeatureStore, block: float = TAIL_BLOCK) -> None:
        self.store = store
        self.block = block
        self.generation = 0
        self._lock = threading.Lock()
        self._streams = 0
        self._running = False
        self._waiting: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        """While a stream is open: the tail's thread runs."""
        with self._lock:
            self._streams += 1
            start, self._running = not self._running, True
        if start:
            threading.Thread(target=self._follow, name="event-tail", daemon=True).start()
        try:
            yield
        finally:
            with self._lock:
                self._streams -= 1

    async def wait(self, seen: int, timeout: float) -> bool:
        """True once new events came after generation ``seen``; False after ``timeout``."""
        woken = asyncio.Event()
        waiter = (asyncio.get_running_loop(), woken)
        with self._lock:
            if self.generation != seen:
                return True
            self._waiting.add(waiter)
        try:
            await asyncio.wait_for(woken.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiting.discard(waiter)

    def _follow(self) -> None:
        cursor: str | None = NEWEST
        down = False
        while True:
            with self._lock:
                if not self._streams:  # the last stream closed: stop (a new one restarts it)
                    self._running = False
                    return
            try:
                # At first, only where the outbox ends (no wait): from then on nothing is missed.
                page = self.store.wait_events(cursor, PAGE, 0 if cursor == NEWEST else self.block)
            except (redis.RedisError, OSError) as exc:
                if not down:
                    log.info("event streams: cannot follow the outbox (%s); retrying", exc)
                down = True
                time.sleep(TAIL_RETRY)
                continue
            down = False
            if page.events or cursor == NEWEST:
                # Streams that read before the tail knew where the outbox ended read again.
                cursor = page.next_cursor
                self._wake()

    def _wake(self) -> None:
        with self._lock:
            self.generation += 1
            waiting, self._waiting = self._waiting, set()
        for loop, woken in waiting:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                loop.call_soon_threadsafe(woken.set)


async def follow(
    store: FeatureStore,
    tail: EventTail,
    cursor: str | None,
    first: EventPage,
    stopping: threading.Event,
    keepalive: float,
    retry: float,
    name: str,
) -> AsyncIterator[ServerSentEvent]:
    """The stream's events after ``cursor`` (``first`` is their first page, already read),
    then new ones as they come, until the server stops.

    A comment says the stream is alive after ``keepalive`` seconds of silence. If the store
    stops answering, one comment says so, and the stream tries again every ``retry``
    seconds at the same cursor, and goes on from there once the store answers.
    """
    page: EventPage | None = first
    followed = False  # whether ``page`` was read after ``seen``, while the tail followed
    seen = tail.generation
    down = False
    quiet_since = time.monotonic()
    with tail.following():
        while not stopping.is_set():
            if page is None:
                seen = tail.generation
                try:
                    page = await run_in_threadpool(store.events, cursor, PAGE)
                    followed = True
                except redis.RedisError as exc:
                    if not down:
                        log.warning("event stream: %s is unavailable (%s); retrying", name, exc)
                        yield ServerSentEvent(comment="store unavailable, retrying")
                        down = True
            if page is not None:
                if down:
                    log.info("event stream: %s answers again", name)
                    down = False
                for event, event_cursor in zip(page.events, page.cursors, strict=True):
                    yield ServerSentEvent(
                        raw_data=Event.model_validate(event).model_dump_json(),
                        event=str(event["type"]),
                        id=event_cursor,
                    )
                if page.events:
                    cursor, quiet_since = page.cursors[-1], time.monotonic()
                if len(page.events) == PAGE or not followed:  # there may be more: read on
                    page = None
                    continue
            page = None
            # Nothing new: wait for the tail, the next try while the store is down, the
            # keep-alive, or the server's stop, whichever comes first.
            due = quiet_since + keepalive
            until = min(due, time.monotonic() + retry) if down else due
            while not stopping.is_set() and (left := until - time.monotonic()) > 0:
                if await tail.wait(seen, min(left, STOP_CHECK)):
                    break
            if time.monotonic() >= due and not stopping.is_set():
                yield ServerSentEvent(comment="keep-alive")
                quiet_since = time.monotonic()
