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

import numpy as np

from segmenter.evaluation import Interval, bootstrap, flaps, members_at
from segmenter.events import EXITED, event_time
from segmenter.features import SECONDS_PER_DAY, CustomerFeatures, to_datetime, to_epoch
from segmenter.model import INSIDER_SEGMENT, model_input
from segmenter.policy import InsiderStatus, PolicySettings, lapse_after, lapsed, overdue
from segmenter.segmentation import Segmenter

HORIZON_DAYS = 90
WEEKS = 12  # of membership history on the report
RECENT_DAYS = 30  # "recent" entries and exits, and the warning time before a lapse
NEW_DAYS = 7
SAMPLE = 20  # customer ids listed per action; the counts are complete

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


@dataclass(frozen=True, slots=True)
class Row:
    """One customer as the report reads it."""

    customer_id: str
    features: CustomerFeatures
    status: InsiderStatus


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
    rows: Iterable[Row],
    now_ts: int | None,
    segmenter: Segmenter | None,
    events: Sequence[dict[str, object]],
    horizon_days: int = HORIZON_DAYS,
    draws: int = 500,
    seed: int = 42,
) -> Report:
    """The whole report from the customers with a purchase, their events and the model."""
    customers = [r for r in rows if r.features.invoices > 0]
    now = now_ts if now_ts is not None else 0
    segment_of = current_segments(customers, segmenter)
    insiders = [r for r in customers if r.status.insider]
    rest = [r for r in customers if not r.status.insider]
    total_revenue = sum(r.features.revenue for r in customers)
    revenue_in = sum(r.features.revenue for r in insiders)
    rules = segmenter.policy.settings if segmenter is not None else None

    def expected(group: list[Row]) -> float:
        return sum(expected_revenue(r.features, now, horizon_days) for r in group)

    def revenues(group: list[Row]) -> np.ndarray:
        return np.array([r.features.revenue for r in group], dtype=float)

    mean_revenue = {
        "Insiders": bootstrap(revenues(insiders), "mean", draws, seed),
        "rest": bootstrap(revenues(rest), "mean", draws, seed),
    }
    recent = [e for e in events if _ts(e) >= now - RECENT_DAYS * SECONDS_PER_DAY]
    movement: dict[str, int] = {}
    for e in recent:
        key = f"{e['type']}:{_reason_code(e)}"
        movement[key] = movement.get(key, 0) + 1
    window_start = to_datetime(now) - timedelta(days=90)
    flapped = flaps(events, window_start, members_at(events, window_start))
    report = Report(
        as_of=now_ts,
        model_version=segmenter.model.version if segmenter is not None else 0,
        customers=len(customers),
        insiders=len(insiders),
        customer_share=_ratio(len(insiders), len(customers)),
        revenue=total_revenue,
        revenue_share=_ratio(revenue_in, total_revenue),
        horizon_days=horizon_days,
        expected_insiders=expected(insiders),
        expected_rest=expected(rest),
        mean_revenue=mean_revenue,
        top_insiders=[
            (r.customer_id, r.features.revenue, r.features.kept_value)
            for r in sorted(insiders, key=lambda r: (-r.features.kept_value, r.customer_id))[:10]
        ],
        traits=_traits(insiders, rest, now),
        segments=_segments(customers, segment_of, total_revenue, now, horizon_days),
        insider_centre=segmenter.model.typical() if segmenter is not None else {},
        rules=rules,
        conditions=_conditions(rules, segmenter),
        movement=dict(sorted(movement.items())),
        flaps=flapped,
        weeks=weekly(events, now),
    )
    report.evidence.extend(_evidence(report))
    report.actions.extend(_actions(customers, segment_of, recent, rules, now))
    return report


def weekly(events: Sequence[dict[str, object]], now_ts: int, weeks: int = WEEKS) -> list[Week]:
    """Entries, exits and the Insider count at each week's end, for the last ``weeks``
    weeks up to ``now_ts`` (weeks start on Monday), replayed from the events.

    >>> events = [
    ...     {"customer_id": "1", "type": "insider.entered", "at": "2011-01-04T10:00:00"},
    ...     {"customer_id": "2", "type": "insider.entered", "at": "2011-01-12T10:00:00"},
    ...     {"customer_id": "1", "type": "insider.exited", "at": "2011-01-13T10:00:00"},
    ... ]
    >>> now = to_epoch(datetime(2011, 1, 14))
    >>> [(w.start.day, w.entries, w.exits, w.insiders) for w in weekly(events, now, 3)]
    [(27, 0, 0, 0), (3, 1, 0, 1), (10, 1, 1, 1)]
    """
    moment = to_datetime(now_ts)
    this_monday = datetime(moment.year, moment.month, moment.day) - timedelta(days=moment.weekday())
    starts = [this_monday - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]
    entries, exits, insiders = [0] * weeks, [0] * weeks, [0] * weeks
    members: set[str] = set()
    week = -1  # index of the week the replay is in; -1 before the first
    for event in sorted(events, key=lambda e: str(e["at"])):
        at = event_time(event)
        while week + 1 < weeks and at >= starts[week + 1]:
            if week >= 0:
                insiders[week] = len(members)
            week += 1
        if at > moment:
            break
        customer = str(event["customer_id"])
        entered = event["type"] != EXITED
        if entered:
            members.add(customer)
        else:
            members.discard(customer)
        if week >= 0:
            (entries if entered else exits)[week] += 1
    for rest in range(max(week, 0), weeks):
        insiders[rest] = len(members)
    return [Week(*row) for row in zip(starts, entries, exits, insiders, strict=True)]


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _ts(event: dict[str, object]) -> int:
    return to_epoch(event_time(event))


def _reason_code(event: dict[str, object]) -> str:
    reason = event.get("reason")
    return str(reason.get("code", "")) if isinstance(reason, dict) else ""


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def _traits(insiders: list[Row], rest: list[Row], now: int) -> list[Trait]:
    ins = [traits_of(r.features, now) for r in insiders]
    oth = [traits_of(r.features, now) for r in rest]
    return [
        Trait(
            name,
            label,
            unit,
            _median([t[name] for t in ins]),
            _median([t[name] for t in oth]),
        )
        for name, (label, unit) in TRAITS.items()
    ]


def current_segments(customers: list[Row], segmenter: Segmenter | None) -> dict[str, int | None]:
    """Each customer's segment under the current model and features.

    A stored status keeps the segment of the customer's last assessment, which happens
    when they buy (and, for Insiders, on the daily sweep): a report on the whole base
    assesses everyone again. Before the warm-up ends, the stored segments are all there is.
    """
    if segmenter is None or not segmenter.model.clusterer.ready:
        return {r.customer_id: r.status.segment for r in customers}
    model = segmenter.model
    return {r.customer_id: model.segment_of(model_input(r.features)) for r in customers}


def _segments(
    customers: list[Row],
    segment_of: dict[str, int | None],
    total_revenue: float,
    now: int,
    horizon: int,
) -> list[SegmentSummary]:
    groups: dict[int | None, list[Row]] = {}
    for r in customers:
        groups.setdefault(segment_of[r.customer_id], []).append(r)
    out = []
    for segment in sorted(groups, key=lambda s: (s is None, s or 0)):
        group = groups[segment]
        out.append(
            SegmentSummary(
                segment=segment,
                customers=len(group),
                insiders=sum(r.status.insider for r in group),
                customer_share=_ratio(len(group), len(customers)),
                revenue_share=_ratio(sum(r.features.revenue for r in group), total_revenue),
                median_revenue=_median([r.features.revenue for r in group]),
                expected_revenue=sum(expected_revenue(r.features, now, horizon) for r in group),
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
    customers: list[Row],
    segment_of: dict[str, int | None],
    recent: Sequence[dict[str, object]],
    rules: PolicySettings | None,
    now: int,
) -> list[Action]:
    by_value = sorted(customers, key=lambda r: (-r.features.kept_value, r.customer_id))
    value_of = {r.customer_id: r.features.kept_value for r in customers}
    new_since = now - NEW_DAYS * SECONDS_PER_DAY

    def action(key: str, title: str, why: str, ids: list[str]) -> Action:
        ids = sorted(ids, key=lambda c: -value_of.get(c, 0.0))
        return Action(key, title, why, len(ids), tuple(ids[:SAMPLE]))

    actions = [
        action(
            "welcome",
            "Welcome the new Insiders",
            f"entered in the last {NEW_DAYS} days",
            [r.customer_id for r in by_value if r.status.insider and _since(r) >= new_since],
        )
    ]
    if rules is not None:
        at_risk = [
            r.customer_id
            for r in by_value
            if r.status.insider
            and (
                (r.features.recency_days or 0.0) >= lapse_after(r.features, rules) - RECENT_DAYS
                or overdue(r.features, rules)
            )
        ]
        actions.append(
            action(
                "at_risk",
                "Reach out before they lapse",
                f"Insiders overdue for their next order, or within {RECENT_DAYS} days of their "
                "lapse limit",
                at_risk,
            )
        )
    # A segment is as of the customer's last assessment: someone who stopped buying long
    # ago is not "nearly in", whatever their segment said then.
    actions.append(
        action(
            "nearly",
            "Nurture those nearly in",
            f"in segment {INSIDER_SEGMENT} and buying, but not yet far enough inside its edge "
            "to enter",
            [
                r.customer_id
                for r in by_value
                if not r.status.insider
                and segment_of[r.customer_id] == INSIDER_SEGMENT
                and (rules is None or not lapsed(r.features, rules))
            ],
        )
    )
    left = {str(e["customer_id"]) for e in recent if e["type"] == EXITED}
    still_out = {r.customer_id for r in customers if not r.status.insider}
    actions.append(
        action(
            "win_back",
            "Win back those who left",
            f"left the Insiders in the last {RECENT_DAYS} days and are still out",
            sorted(left & still_out),
        )
    )
    return actions


def _since(row: Row) -> int:
    return row.status.insider_since if row.status.insider_since is not None else -(2**62)
