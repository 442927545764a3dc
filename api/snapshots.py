"""The report, built off the request path: a request reads a snapshot, it never builds one.

The report reads every customer, so it costs O(customers) to build: seconds at a million.
One background thread builds it, one build at a time, when the store has changed since
the last one (its :meth:`~consumer.ports.FeatureStore.revision`; with the wall clock,
also when ``refresh`` seconds have passed). A request answers at once with the latest
snapshot, even while a newer one is being built (stale while revalidating); only the
first request, before any snapshot exists, waits for one. Builds start at most every
``refresh`` seconds, and never more than half the time, so a store that changes all the
time does not keep a core busy.

The snapshot holds the JSON body and, once asked for, the dashboard's HTML: serving either
costs what it returns. A build is :func:`api.saved_report.served`: the report the
segmentation's writer saved in the store, read back, or when there is none current,
:func:`api.dashboard.build` here (the report, and the weekly revenue shares only the
dashboard's chart shows).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from api import dashboard
from api.schemas import Report
from consumer.ports import FeatureStore

log = logging.getLogger("insiders.api")

Version = tuple[int, int]
Build = Callable[[], dashboard.Built]


@dataclass
class Snapshot:
    """One build of the report, for the store as it was at ``version``."""

    version: Version
    report: Report
    body: bytes  # the report as JSON
    shares: list[float]  # the dashboard's chart: dashboard.Built.shares
    built_at: float  # wall time the build ended
    seconds: float  # how long it took
    _html: str | None = field(default=None, repr=False)

    def html(self) -> str:
        # Rendered once per snapshot, by the first request that asks (a race renders twice).
        if self._html is None:
            self._html = dashboard.render(self.report, self.shares)
        return self._html

    def age(self) -> float:
        return max(time.time() - self.built_at, 0.0)


class ReportSnapshots:
    """The latest report of ``store``, rebuilt in the background when the store changes.

    ``build`` builds the report as of now; ``wall_clock``: the report's clock is wall time,
    so it goes stale with time alone, every ``refresh`` seconds.

    >>> from consumer.memory import MemoryFeatureStore
    >>> store = MemoryFeatureStore()
    >>> snapshots = ReportSnapshots(store, lambda: dashboard.build(store, None))
    >>> first = snapshots.latest()  # the first request waits for the first build
    >>> first.report.customers, snapshots.latest() is first  # nothing changed
    (0, True)
    """

    def __init__(
        self,
        store: FeatureStore,
        build: Build,
        refresh: float = 5.0,
        wall_clock: bool = False,
        wait: float = 600.0,
    ) -> None:
        self.store = store
        self.build = build
        self.refresh = refresh
        self.wall_clock = wall_clock
        self.wait = wait  # how long the first request waits for the first build
        self._lock = threading.Lock()
        self._latest: Snapshot | None = None
        self._wanted: Version | None = None
        self._building = False
        self._failure: BaseException | None = None  # of the last build, if it failed
        self._built = threading.Condition(self._lock)
        self._next_start = 0.0  # monotonic time before which no build starts

    def version(self) -> Version:
        """What the store is at now: cheap, O(1) reads. A store that is down raises here."""
        bucket = int(time.time() // self.refresh) if self.wall_clock else 0
        return (self.store.revision(), bucket)

    def latest(self) -> Snapshot:
        """The latest snapshot, at once; a rebuild is started if the store moved on.

        Waits only while there is no snapshot yet. If the build it waited for failed, the
        build's error is raised (the store down, an unusable checkpoint): the routes turn
        it into a 503.
        """
        version = self.version()
        with self._lock:
            latest = self._latest
            if latest is not None and latest.version == version:
                return latest
            self._wanted = version
            if not self._building:
                self._building = True
                threading.Thread(target=self._run, name="report-builder", daemon=True).start()
            if latest is not None and self._failure is None:
                return latest
            # No snapshot yet, or the last build failed: wait for this one.
            self._failure = None
            deadline = time.monotonic() + self.wait
            while self._latest is latest and self._failure is None:
                if not self._built.wait(max(deadline - time.monotonic(), 0.0)):
                    raise TimeoutError(f"the report took over {self.wait:.0f} s to build")
            if self._failure is not None:
                raise self._failure
            assert self._latest is not None
            return self._latest

    def _run(self) -> None:
        while True:
            with self._lock:
                wanted = self._wanted
                if wanted is None or (self._latest is not None and self._latest.version == wanted):
                    self._building = False
                    return
                self._wanted = None
                pause = self._next_start - time.monotonic()
            if pause > 0 and self._latest is not None:
                time.sleep(pause)
                # What the store is at may have moved while waiting: build for the newest.
                with self._lock:
                    wanted = self._wanted or wanted
                    self._wanted = None
            started = time.monotonic()
            try:
                snapshot = self._build(wanted)
            except BaseException as exc:  # handed to the waiting request, which answers 503
                log.warning("report: the build failed: %s", exc)
                with self._lock:
                    self._failure = exc
                    self._building = False
                    self._built.notify_all()
                return
            took = snapshot.seconds
            with self._lock:
                self._latest = snapshot
                self._failure = None
                self._next_start = started + max(self.refresh, 2 * took)
                self._built.notify_all()
            log.info(
                "report: built for revision %d in %.2f s (%d customers)",
                wanted[0],
                took,
                snapshot.report.customers,
            )

    def _build(self, version: Version) -> Snapshot:
        started = time.monotonic()
        # The version is read before the build: a change during it leaves the snapshot
        # marked older than what it may already hold, so the next request rebuilds.
        built = self.build()
        report = built.report
        if built.revision is not None:  # a saved report, of the revision it was saved at
            version = (built.revision, version[1])
        return Snapshot(
            version=version,
            report=report,
            body=report.model_dump_json().encode(),
            shares=built.shares,
            built_at=built.built_at if built.built_at is not None else time.time(),
            seconds=time.monotonic() - started,
        )
