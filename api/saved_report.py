"""The report built where the roster is, and saved in the store for every API process.

The report reads every customer. An API process that builds it itself reads the whole
store for each build: about a minute and a gigabyte at a million customers, in every
replica, again whenever the store changes. The segmentation's one writer already holds
every customer as columns (its :class:`~segmenter.roster.Roster`), so it builds the report
from them, without reading the store, and saves it (``FeatureStore.save_report``); each
API process then reads one document, whatever the number of customers.

The writer builds one when the store has moved on (or, on the wall clock, the time), at
most every ``every`` seconds and never more than a tenth of the time, and at once at the
end of its input. The API serves the saved report when nothing was written since it was
saved, or while a newer one is due (its ``due_within``, with some grace); otherwise, and
when the document does not pass its checks, it builds the report itself, as before. A
store without a live writer of this version (a tool, an older consumer, a crashed one)
thus still gets a current report.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from api import dashboard
from api.schemas import Report
from consumer.ports import FeatureStore
from segmenter.report import Table
from segmenter.roster import Roster
from segmenter.segmentation import Segmenter

log = logging.getLogger("insiders.api")

# A build may take at most this share of the writer's time.
MOST_OF_THE_TIME = 0.1
# How late past its due time a saved report is still served: the writer builds between
# blocks, so a block (or an idle poll) may come first.
GRACE_SECONDS = 30.0
# The longest a writer may promise the next report within.
LONGEST_DUE = 7 * 86_400


class SavedReport(BaseModel):
    """The report as the writer saves it; checked field by field when read back."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    version: Literal[1] = 1
    built_at: float  # wall time (epoch seconds) the build ended
    seconds: float = Field(ge=0)  # how long it took
    # While the store changes, the next comes within this many seconds (at most a week).
    due_within: float = Field(gt=0, le=LONGEST_DUE)
    report: Report
    shares: list[float]  # dashboard.Built.shares

    @model_validator(mode="after")
    def _servable(self) -> SavedReport:
        # What the dashboard reads by name, and numbers that are numbers: a NaN or an
        # infinity would be served as null where the schema promises a number.
        if not {"Insiders", "rest"} <= self.report.mean_revenue.keys():
            raise ValueError("report.mean_revenue: wants Insiders and rest")
        where = _not_finite(self.report.model_dump(), "report")
        if where is not None:
            raise ValueError(f"{where}: not a finite number")
        return self


def _not_finite(value: Any, where: str) -> str | None:
    """Where in ``value`` (a dump of plain data) a float is NaN or infinite; None: nowhere."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _not_finite(item, f"{where}.{key}")
        if found is not None:
            return found
    return None


class ReportWriter:
    """Builds the report from the writer's roster and saves it in ``store``.

    Plugs into :class:`consumer.pipeline.Pipeline` (its ``ReportWriter`` protocol), which
    asks after each block whether one is :meth:`due`, and :meth:`write` s it if so.

    >>> from consumer.memory import MemoryFeatureStore
    >>> store = MemoryFeatureStore()
    >>> writer = ReportWriter(store, every=5.0)
    >>> writer.due(now=None, final=False)  # nothing built yet
    True
    >>> writer.write(Roster(), None, None)
    >>> saved = store.saved_report()
    >>> saved[1] == store.revision(), SavedReport.model_validate_json(saved[0]).report.customers
    (True, 0)
    >>> writer.due(now=None, final=True)  # nothing changed since
    False
    """

    def __init__(self, store: FeatureStore, every: float = 5.0) -> None:
        self.store = store
        self.every = every
        self._last: tuple[int, int | None] | None = None  # (revision saved at, now)
        self._next = 0.0  # monotonic time before which no build starts, unless final

    def due(self, now: int | None, final: bool) -> bool:
        """Whether to build now: the store (or ``now``) moved on since the last report, and
        its time has come; ``final``: the input is done, build now if anything moved."""
        if self._last == (self.store.revision(), now):
            return False
        return final or time.monotonic() >= self._next

    def write(self, roster: Roster, segmenter: Segmenter | None, now: int | None) -> None:
        started = time.monotonic()
        try:
            built = dashboard.build_from(Table.of_roster(roster), now, segmenter, self.store)
            seconds = time.monotonic() - started
            interval = max(self.every, seconds / MOST_OF_THE_TIME)
            doc = SavedReport(  # checked as its readers check it
                built_at=time.time(),
                seconds=seconds,
                due_within=min(interval, LONGEST_DUE),
                report=built.report,
                shares=built.shares,
            )
        except Exception:  # derived data: the consumer goes on, the API builds its own
            log.exception("report: the build failed; the API builds the report meanwhile")
            self._next = started + self.every
            return
        revision = self.store.save_report(doc.model_dump_json().encode())
        self._last = (revision, now)
        self._next = started + interval
        log.debug("report: built in %.2f s for %d customers", seconds, built.report.customers)


def served(store: FeatureStore, now: int | None) -> dashboard.Built:
    """The report to serve: the writer's saved one when it is current or still fresh,
    otherwise one built here from the store."""
    saved = store.saved_report()
    if saved is not None:
        blob, revision = saved
        try:
            doc = SavedReport.model_validate_json(blob)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the document"
            log.warning(
                "report: the saved report is not usable (%s: %s); building it here",
                where,
                first["msg"],
            )
        else:
            wall = time.time()
            # Fresh: its writer said the next would come by now (and it was not built in
            # the future, beyond the grace for clocks that differ).
            fresh = (
                doc.built_at - GRACE_SECONDS
                <= wall
                <= doc.built_at + doc.due_within + (GRACE_SECONDS)
            )
            # Current: nothing written since, and of this clock's now (on the wall clock the
            # time moves on with no write; another clock's report is another report).
            as_of = doc.report.as_of
            current = revision == store.revision() and (
                (None if as_of is None else int(as_of.timestamp())) == now
            )
            if current or fresh:
                # With the revision it is of: a snapshot of a report served while behind is
                # read again once the store is at another, and not kept once it is overdue.
                return dashboard.Built(
                    doc.report, doc.shares, built_at=doc.built_at, revision=revision
                )
    return dashboard.build(store, now)
