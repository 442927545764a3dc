"""The business report the batch notebook used to give, computed live from current state.

Who the Insiders are, how many, what characterises them, their share of revenue, the
revenue to expect from them, the entry and exit conditions, the evidence that they are
worth more than the rest, and what marketing can do next. Pure: the API (and anything
else) passes in the customers, the recent events and the segmenter.

Expected revenue is each customer's own pace since their first purchase, carried over
the horizon: revenue × horizon / max(30, days since the first purchase). It is simple
on purpose, so that marketing can redo it by hand. `insiders evaluate` measures it
against what the Insiders really spent after the cut.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np

from segmenter.evaluation import Interval, bootstrap, flaps
from segmenter.events import EXITED, event_time
from segmenter.features import (
    SECONDS_PER_DAY,
    CustomerFeatures,
    CustomerState,
    to_datetime,
    to_epoch,
)
from segmenter.lines import MICROS_PER_POUND
from segmenter.model import INSIDER_SEGMENT, column_inputs
from segmenter.policy import (
    InsiderStatus,
    PolicySettings,
    lapse_after_days,
    lapsed_mask,
    overdue_mask,
)
from segmenter.roster import NONE, Roster
from segmenter.segmentation import Segmenter

HORIZON_DAYS = 90
WEEKS = 12  # of membership history on the report
RECENT_DAYS = 30  # "recent" entries and exits, and the warning time before a lapse
NEW_DAYS = 7
SAMPLE = 20  # customer ids listed per action; the counts are complete
# The report's events reach back this far: the flaps count over the last 90 days, and
# the 12 weeks and the recent moves fall inside them.
WINDOW_DAYS = 90
# The mean revenue's interval resamples at most this many customers per group: the
# bootstrap costs draws x sample, not draws x customers. Past it the interval is wider
# than the whole group's would be (conservative), around the whole group's mean.
BOOTSTRAP_SAMPLE = 10_000

# What characterises a group: name -> (label, unit). Medians, so a few wholesalers
# do not speak for everyone.
TRAITS: dict[str, tuple[str, str]] = {
    "revenue": ("revenue", "£"),
    "invoices": ("invoices", ""),
    "frequency": ("invoices per 30 days", ""),
    "avg_ticket": ("revenue per invoice", "£"),
    "recency_days": ("days since the last purchase", "days"),
    "tenure_days": ("days since the first purchase", "days"),
    "returned_share": ("returned value / revenue", ""),
}


class Row(Protocol):
    """One customer as the report reads it (the stores' ``Customer`` is one)."""

    @property
    def customer_id(self) -> str: ...

    @property
    def state(self) -> CustomerState: ...

    @property
    def status(self) -> InsiderStatus: ...


@dataclass(frozen=True)
class Table:
    """The customers with a purchase, one array per column: the report reads them whole.

    Money in pounds, times in epoch seconds; ``since`` is NaN for a non-Insider and
    ``segment`` 0 for a customer not assessed yet.
    """

    ids: np.ndarray
    revenue: np.ndarray
    returned: np.ndarray
    invoices: np.ndarray
    first: np.ndarray
    last: np.ndarray
    insider: np.ndarray
    since: np.ndarray
    segment: np.ndarray

    @classmethod
    def of(cls, rows: Iterable[Row]) -> Table:
        ids: list[str] = []
        numbers: list[tuple[float, ...]] = []
        nan = float("nan")
        # A customer given twice (a scan of the store may): the last copy, as a Roster does.
        rows = {r.customer_id: r for r in rows}.values()
        for r in rows:
            s, st = r.state, r.status
            if s.invoices <= 0 or s.first_ts is None or s.last_ts is None:
                continue
            ids.append(r.customer_id)
            numbers.append(
                (
                    s.revenue_micros,
                    s.returned_micros,
                    s.invoices,
                    s.first_ts,
                    s.last_ts,
                    st.insider,
                    st.insider_since if st.insider and st.insider_since is not None else nan,
                    st.segment or 0,
                )
            )
        grid = np.array(numbers, dtype=float).reshape(len(numbers), 8)
        return cls._by_id(
            ids=np.array(ids, dtype=str),
            revenue=grid[:, 0] / MICROS_PER_POUND,
            returned=grid[:, 1] / MICROS_PER_POUND,
            invoices=grid[:, 2],
            first=grid[:, 3],
            last=grid[:, 4],
            insider=grid[:, 5] > 0,
            since=grid[:, 6],
            segment=grid[:, 7].astype(int),
        )

    @classmethod
    def of_roster(cls, roster: Roster) -> Table:
        """The same table from a :class:`~segmenter.roster.Roster`'s columns: array code, no
        object per customer (what the segmentation's writer builds the report from).

        >>> from segmenter.features import CustomerState
        >>> roster = Roster()
        >>> roster.put("7", CustomerState(2_500_000, 1, 1, 1, 0, 0, 10, 10), InsiderStatus())
        >>> roster.put("8", CustomerState(0, 0, 0, 0, 900_000, 1), InsiderStatus())
        >>> table = Table.of_roster(roster)  # "8" only returned: not on the report
        >>> table.ids.tolist(), table.revenue.tolist(), table.segment.tolist()
        (['7'], [2.5], [0])
        """
        invoices = roster.column("invoices")
        first, last = roster.column("first_ts"), roster.column("last_ts")
        kept = np.flatnonzero((invoices > 0) & (first != NONE) & (last != NONE))
        insider = roster.column("insider")[kept] > 0
        since = roster.column("insider_since")[kept].astype(float)
        since[~insider | (roster.column("insider_since")[kept] == NONE)] = np.nan
        segment = roster.column("segment")[kept]
        return cls._by_id(
            ids=np.array([roster.ids[row] for row in kept.tolist()], dtype=str),
            revenue=roster.column("revenue_micros")[kept] / MICROS_PER_POUND,
            returned=roster.column("returned_micros")[kept] / MICROS_PER_POUND,
            invoices=invoices[kept].astype(float),
            first=first[kept].astype(float),
            last=last[kept].astype(float),
            insider=insider,
            since=since,
            segment=np.where(segment == NONE, 0, segment).astype(int),
        )

    @classmethod
    def _by_id(cls, **columns: np.ndarray) -> Table:
        """The rows in id order: the report is the same whatever order the customers came
        in (a scan of the store, a roster), to the last digit of its sums and bootstraps."""
        order = np.argsort(columns["ids"], kind="stable")
        return cls(**{name: column[order] for name, column in columns.items()})

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def kept(self) -> np.ndarray:
        return self.revenue - self.returned

    def tenure(self, now_ts: int) -> np.ndarray:
        """Days since the first purchase, at least 0 (:func:`tenure_days`)."""
        return np.maximum((now_ts - self.first) / SECONDS_PER_DAY, 0.0)

    def recency(self, now_ts: int) -> np.ndarray:
        return (now_ts - self.last) / SECONDS_PER_DAY

    def span(self) -> np.ndarray:
        return (self.last - self.first) / SECONDS_PER_DAY

    def expected(self, now_ts: int, horizon: float) -> np.ndarray:
        """:func:`expected_revenue` of every customer."""
        return self.revenue * horizon / np.maximum(30.0, self.tenure(now_ts))

    def traits(self, now_ts: int) -> dict[str, np.ndarray]:
        """:func:`traits_of` of every customer."""
        unclamped = (now_ts - self.first) / SECONDS_PER_DAY
        revenue = self.revenue
        return {
            "revenue": revenue,
            "invoices": self.invoices,
            "frequency": self.invoices * 30 / np.maximum(30.0, unclamped),
            "avg_ticket": revenue / self.invoices,
            "recency_days": self.recency(now_ts),
            "tenure_days": self.tenure(now_ts),
            "returned_share": np.divide(
                self.returned, revenue, out=np.zeros_like(revenue), where=revenue != 0
            ),
        }

    def most_valuable(self, mask: np.ndarray, limit: int) -> np.ndarray:
        """Indexes of the first ``limit`` customers under ``mask``, by kept value, then id."""
        chosen = np.flatnonzero(mask)
        kept = self.kept[chosen]
        if len(chosen) > limit:
            # Only those at or above the limit-th value can be listed (ties included).
            floor = np.partition(kept, len(kept) - limit)[len(kept) - limit]
            keep = kept >= floor
            chosen, kept = chosen[keep], kept[keep]
        order = np.lexsort((self.ids[chosen], -kept))
        return chosen[order][:limit]


def tenure_days(features: CustomerFeatures, now_ts: int) -> float:
    first = features.first_purchase_at
    if first is None:
        return 0.0
    return max((_moment(now_ts) - first) / timedelta(days=1), 0.0)


@functools.lru_cache(maxsize=8)
def _moment(ts: int) -> datetime:
    # A report asks for the same clock value thousands of times.
    return to_datetime(ts)


def expected_revenue(features: CustomerFeatures, now_ts: int, horizon: float) -> float:
    """Revenue over ``horizon`` days at the customer's own pace so far.

    >>> from segmenter.features import CustomerState, features_of
    >>> s = CustomerState(revenue_micros=600_000_000, invoices=3, lines=3, first_ts=0, last_ts=0)
    >>> expected_revenue(features_of(s, 180 * SECONDS_PER_DAY), 180 * SECONDS_PER_DAY, 90)
    300.0
    """
    return features.revenue * horizon / max(30.0, tenure_days(features, now_ts))


def traits_of(features: CustomerFeatures, now_ts: int) -> dict[str, float]:
    revenue = features.revenue
    return {
        "revenue": revenue,
        "invoices": float(features.invoices),
        "frequency": features.frequency or 0.0,
        "avg_ticket": features.avg_ticket or 0.0,
        "recency_days": features.recency_days or 0.0,
        "tenure_days": tenure_days(features, now_ts),
        "returned_share": features.returned_value / revenue if revenue else 0.0,
    }


@dataclass(frozen=True, slots=True)
class Trait:
    name: str
    label: str
    unit: str
    insiders: float  # median over Insiders
    rest: float  # median over the other customers


@dataclass(frozen=True, slots=True)
class SegmentSummary:
    segment: int | None  # value rank, 1 = the Insiders' segment; None = not assessed yet
    customers: int
    insiders: int
    customer_share: float
    revenue_share: float
    median_revenue: float
    expected_revenue: float


@dataclass(frozen=True, slots=True)
class Week:
    """One week of membership: Monday 00:00, entries, exits, Insiders at its end."""

    start: datetime
    entries: int
    exits: int
    insiders: int


@dataclass(frozen=True, slots=True)
class Evidence:
    claim: str
    holds: bool


@dataclass(frozen=True, slots=True)
class Action:
    key: str
    title: str
    why: str
    count: int
    customer_ids: tuple[str, ...]  # the first SAMPLE, most valuable first


@dataclass(frozen=True)
class Report:
    as_of: int | None
    model_version: int
    customers: int
    insiders: int
    customer_share: float
    revenue: float
    revenue_share: float
    horizon_days: int
    expected_insiders: float
    expected_rest: float
    mean_revenue: dict[str, Interval]  # "Insiders", "rest": bootstrap 95% intervals
    # (customer id, revenue, kept value), most valuable first: by kept value (spec v2)
    top_insiders: list[tuple[str, float, float]]
    traits: list[Trait]
    segments: list[SegmentSummary]
    insider_centre: dict[str, float]  # the Insider segment's centre in feature units
    rules: PolicySettings | None
    conditions: list[str]  # entry and exit conditions in words
    movement: dict[str, int]  # "<type>:<reason>" over the last RECENT_DAYS days
    flaps: tuple[int, int]  # (exited and re-entered within 30 days, Insiders) last 90 days
    weeks: list[Week]  # the last WEEKS weeks, oldest first, the current one included
    evidence: list[Evidence] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)


def build_report(
    rows: Iterable[Row] | Table,
    now_ts: int | None,
    segmenter: Segmenter | None,
    events: Sequence[dict[str, object]],
    horizon_days: int = HORIZON_DAYS,
    draws: int = 500,
    seed: int = 42,
) -> Report:
    """The whole report from the customers, their recent events and the model.

    Array code over the whole base: the API builds it off the request path, and it must
    stay a matter of seconds at a million customers. ``events`` need only reach back
    :data:`WINDOW_DAYS` days before ``now_ts``; the membership before that comes from the
    current Insiders.
    """
    table = rows if isinstance(rows, Table) else Table.of(rows)
    now = now_ts if now_ts is not None else 0
    segment_of = current_segments(table, segmenter, now)
    ins = table.insider
    total_revenue = float(table.revenue.sum())
    revenue_in = float(table.revenue[ins].sum())
    rules = segmenter.policy.settings if segmenter is not None else None
    expected = table.expected(now, horizon_days)
    mean_revenue = {
        "Insiders": bootstrap(table.revenue[ins], "mean", draws, seed, BOOTSTRAP_SAMPLE),
        "rest": bootstrap(table.revenue[~ins], "mean", draws, seed, BOOTSTRAP_SAMPLE),
    }
    window = [e for e in events if _ts(e) >= now - WINDOW_DAYS * SECONDS_PER_DAY]
    window.sort(key=lambda e: str(e["at"]))
    recent = [e for e in window if _ts(e) >= now - RECENT_DAYS * SECONDS_PER_DAY]
    movement: dict[str, int] = {}
    for e in recent:
        key = f"{e['type']}:{_reason_code(e)}"
        movement[key] = movement.get(key, 0) + 1
    window_start = to_datetime(now) - timedelta(days=90)
    members = set(table.ids[ins].tolist())
    flapped = flaps(window, window_start, members_before(window, members, window_start))
    top = table.most_valuable(ins, 10)
    report = Report(
        as_of=now_ts,
        model_version=segmenter.model.version if segmenter is not None else 0,
        customers=len(table),
        insiders=int(ins.sum()),
        customer_share=_ratio(int(ins.sum()), len(table)),
        revenue=total_revenue,
        revenue_share=_ratio(revenue_in, total_revenue),
        horizon_days=horizon_days,
        expected_insiders=float(expected[ins].sum()),
        expected_rest=float(expected[~ins].sum()),
        mean_revenue=mean_revenue,
        top_insiders=[
            (str(table.ids[i]), float(table.revenue[i]), float(table.kept[i])) for i in top
        ],
        traits=_traits(table, now),
        segments=_segments(table, segment_of, expected),
        insider_centre=segmenter.model.typical() if segmenter is not None else {},
        rules=rules,
        conditions=_conditions(rules, segmenter),
        movement=dict(sorted(movement.items())),
        flaps=flapped,
        weeks=weekly(window, now, len(members)),
    )
    report.evidence.extend(_evidence(report))
    report.actions.extend(_actions(table, segment_of, recent, rules, now))
    return report


def members_before(
    events: Sequence[dict[str, object]], members_now: set[str], moment: datetime
) -> set[str]:
    """The Insiders just before ``moment``: today's, with the events since undone.

    ``events`` must hold every event from ``moment`` on, oldest first.

    >>> events = [
    ...     {"customer_id": "1", "type": "insider.exited", "at": "2011-02-01T00:00:00"},
    ...     {"customer_id": "3", "type": "insider.entered", "at": "2011-02-02T00:00:00"},
    ... ]
    >>> sorted(members_before(events, {"2", "3"}, datetime(2011, 1, 15)))
    ['1', '2']
    """
    members = set(members_now)
    for e in reversed(events):
        if event_time(e) < moment:
            break
        if e["type"] == EXITED:
            members.add(str(e["customer_id"]))
        else:
            members.discard(str(e["customer_id"]))
    return members


def weekly(
    events: Sequence[dict[str, object]], now_ts: int, insiders_now: int, weeks: int = WEEKS
) -> list[Week]:
    """Entries, exits and the Insider count at each week's end, for the last ``weeks``
    weeks up to ``now_ts`` (weeks start on Monday).

    ``events`` must hold every event of those weeks, oldest first; the counts at each
    week's end are today's count with the later events undone.

    >>> events = [
    ...     {"customer_id": "1", "type": "insider.entered", "at": "2011-01-04T10:00:00"},
    ...     {"customer_id": "2", "type": "insider.entered", "at": "2011-01-12T10:00:00"},
    ...     {"customer_id": "1", "type": "insider.exited", "at": "2011-01-13T10:00:00"},
    ... ]
    >>> now = to_epoch(datetime(2011, 1, 14))
    >>> [(w.start.day, w.entries, w.exits, w.insiders) for w in weekly(events, now, 1, 3)]
    [(27, 0, 0, 0), (3, 1, 0, 1), (10, 1, 1, 1)]
    """
    moment = to_datetime(now_ts)
    this_monday = datetime(moment.year, moment.month, moment.day) - timedelta(days=moment.weekday())
    starts = [this_monday - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]
    entries, exits = [0] * weeks, [0] * weeks
    for event in events:
        at = event_time(event)
        if at < starts[0] or at > moment:
            continue
        week = min((at - starts[0]) // timedelta(weeks=1), weeks - 1)
        (exits if event["type"] == EXITED else entries)[week] += 1
    insiders = [0] * weeks
    count = insiders_now
    for week in reversed(range(weeks)):
        insiders[week] = count
        count -= entries[week] - exits[week]
    return [Week(*row) for row in zip(starts, entries, exits, insiders, strict=True)]


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _ts(event: dict[str, object]) -> int:
    return to_epoch(event_time(event))


def _reason_code(event: dict[str, object]) -> str:
    reason = event.get("reason")
    return str(reason.get("code", "")) if isinstance(reason, dict) else ""


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def _traits(table: Table, now: int) -> list[Trait]:
    columns = table.traits(now)
    return [
        Trait(
            name,
            label,
            unit,
            _median(columns[name][table.insider]),
            _median(columns[name][~table.insider]),
        )
        for name, (label, unit) in TRAITS.items()
    ]


def current_segments(table: Table, segmenter: Segmenter | None, now: int) -> np.ndarray:
    """Each customer's segment under the current model and features (0: not assessed).

    A stored status keeps the segment of the customer's last assessment, which happens
    when they buy (and on the daily ranking): a report on the whole base assesses
    everyone again. Before the warm-up ends, the stored segments are all there is.
    """
    if segmenter is None or not segmenter.model.clusterer.ready or not len(table):
        return table.segment
    inputs = column_inputs(table.revenue, table.kept, table.invoices, table.first, table.last, now)
    return segmenter.model.margins(inputs)[1]


def _segments(table: Table, segment_of: np.ndarray, expected: np.ndarray) -> list[SegmentSummary]:
    total = float(table.revenue.sum())
    out = []
    assessed = sorted(int(s) for s in np.unique(segment_of) if s)
    for segment in [*assessed, 0] if (segment_of == 0).any() else assessed:
        group = segment_of == segment
        out.append(
            SegmentSummary(
                segment=segment or None,
                customers=int(group.sum()),
                insiders=int((group & table.insider).sum()),
                customer_share=_ratio(int(group.sum()), len(table)),
                revenue_share=_ratio(float(table.revenue[group].sum()), total),
                median_revenue=_median(table.revenue[group]),
                expected_revenue=float(expected[group].sum()),
            )
        )
    return out


def _conditions(rules: PolicySettings | None, segmenter: Segmenter | None) -> list[str]:
    if rules is None or segmenter is None:
        return ["no model yet: the consumer has not written a checkpoint"]
    centre = segmenter.model.typical()
    where = ", ".join(
        f"{TRAITS[name][0]} ~£{value:,.0f}"
        if TRAITS.get(name, ("", ""))[1] == "£"
        else f"{TRAITS.get(name, (name, ''))[0]} ~{value:,.0f}"
        for name, value in centre.items()
    )
    edges = segmenter.edges
    if rules.target_share is not None:
        size = (
            f"The group holds {rules.target_share:.0%} of the customers, within "
            f"±{rules.share_band:.1%}: each day every customer is ranked by margin (their "
            f"position against the edge of segment {INSIDER_SEGMENT}, the top-value segment; "
            f"margin 1 is its centre{': ' + where if where else ''}) and the edges are set "
            f"from that ranking."
        )
        enter_at = f"{edges.entry:+.2f}" if edges is not None else "the calibrated edge"
        leave_at = f"{edges.exit:+.2f}" if edges is not None else "the calibrated edge"
    else:
        size = (
            f"The group is the customers the model places in segment {INSIDER_SEGMENT}, the "
            f"top-value segment (margin 1 is its centre{': ' + where if where else ''})."
        )
        enter_at, leave_at = f"{rules.entry_margin:+.2f}", f"{-rules.exit_margin:+.2f}"
    lines = [
        size,
        f"Enter: a margin of at least {enter_at}, and not lapsed.",
        f"Stay: at least {rules.min_dwell_days:.0f} days once in, unless the customer's own "
        f"returns or losses drop them a full centre gap below the exit edge; moves between "
        f"the two edges do not count.",
        f"Leave (left_top_segment): the customer's own activity puts their margin below "
        f"{leave_at}.",
        "Leave (outranked): on the daily ranking, others now rank above them by more than the band."
        if rules.target_share is not None
        else "",
        f"Leave (lapsed): no purchase for {rules.lapse_days:.0f} days, or for "
        f"{rules.overdue_factor:g} times their usual gap between invoices if that is longer; "
        f"or, on the daily sweep, below the exit edge and more than {rules.overdue_factor:g} "
        "times their usual gap since the last purchase.",
    ]
    return [line for line in lines if line]


def _evidence(report: Report) -> list[Evidence]:
    ins, rest = report.mean_revenue["Insiders"], report.mean_revenue["rest"]
    flapped, members = report.flaps
    return [
        Evidence(
            f"{report.customer_share:.1%} of customers hold {report.revenue_share:.1%} of the "
            f"revenue so far",
            report.revenue_share > report.customer_share,
        ),
        Evidence(
            f"mean revenue per Insider £{ins} against £{rest} for the rest (95% bootstrap "
            f"intervals); the intervals do not overlap",
            ins.low > rest.high,
        )
        if ins.low > rest.high
        else Evidence(
            f"mean revenue per Insider £{ins} against £{rest} for the rest (95% bootstrap "
            f"intervals); the intervals overlap",
            False,
        ),
        Evidence(
            f"{flapped} of {members} Insiders of the last 90 days left and came back within "
            f"30 days ({_ratio(flapped, members):.1%}; the aim is under 2%)",
            _ratio(flapped, members) < 0.02,
        ),
    ]


def _actions(
    table: Table,
    segment_of: np.ndarray,
    recent: Sequence[dict[str, object]],
    rules: PolicySettings | None,
    now: int,
) -> list[Action]:
    ins = table.insider

    def action(key: str, title: str, why: str, mask: np.ndarray) -> Action:
        chosen = table.most_valuable(mask, SAMPLE)
        return Action(key, title, why, int(mask.sum()), tuple(table.ids[chosen].tolist()))

    new_since = now - NEW_DAYS * SECONDS_PER_DAY
    actions = [
        action(
            "welcome",
            "Welcome the new Insiders",
            f"entered in the last {NEW_DAYS} days",
            ins & (np.nan_to_num(table.since, nan=-np.inf) >= new_since),
        )
    ]
    recency, span = table.recency(now), table.span()
    if rules is not None:
        near_limit = recency >= lapse_after_days(table.invoices, span, rules) - RECENT_DAYS
        late = overdue_mask(recency, table.invoices, span, rules)
        actions.append(
            action(
                "at_risk",
                "Reach out before they lapse",
                f"Insiders overdue for their next order, or within {RECENT_DAYS} days of their "
                "lapse limit",
                ins & (near_limit | late),
            )
        )
    # A segment is as of the customer's last assessment: someone who stopped buying long
    # ago is not "nearly in", whatever their segment said then.
    buying = (
        ~lapsed_mask(recency, table.invoices, span, rules)
        if rules is not None
        else np.ones(len(table), dtype=bool)
    )
    actions.append(
        action(
            "nearly",
            "Nurture those nearly in",
            f"in segment {INSIDER_SEGMENT} and buying, but not yet far enough inside its edge "
            "to enter",
            ~ins & (segment_of == INSIDER_SEGMENT) & buying,
        )
    )
    left = {str(e["customer_id"]) for e in recent if e["type"] == EXITED}
    actions.append(
        action(
            "win_back",
            "Win back those who left",
            f"left the Insiders in the last {RECENT_DAYS} days and are still out",
            ~ins & np.isin(table.ids, np.array(sorted(left), dtype=str)),
        )
    )
    return actions
