"""The live business report: read the store, build the report, shape it for JSON."""

from __future__ import annotations

import dataclasses
import math

from api import schemas
from consumer.ports import FeatureStore
from segmenter.evaluation import Interval
from segmenter.features import to_datetime
from segmenter.report import Report, build_report
from segmenter.segmentation import Segmenter

EVENT_PAGE = 1000


def current_segmenter(store: FeatureStore) -> Segmenter | None:
    """The consumer's latest checkpoint (model and policy), read fresh for every answer.

    A checkpoint that is not valid raises :class:`~segmenter.errors.CheckpointError`
    (the app answers 503); it is JSON data, so reading it never runs anything.
    """
    blob = store.model_checkpoint()
    return Segmenter.from_checkpoint(blob) if blob is not None else None


def current_report(store: FeatureStore, now: int | None) -> schemas.Report:
    """The report on everything the store holds, as of ``now``, shaped for JSON."""
    segmenter = current_segmenter(store)
    return report_body(build_report(store.customers(), now, segmenter, all_events(store)))


def all_events(store: FeatureStore) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    cursor: str | None = None
    while True:
        page = store.events(cursor, EVENT_PAGE)
        events.extend(page.events)
        if len(page.events) < EVENT_PAGE:
            return events
        cursor = page.next_cursor


def _number(value: float) -> float | None:
    """JSON has no NaN: an undefined figure (a median of nobody) is null."""
    return None if math.isnan(value) else value


def _estimate(interval: Interval) -> schemas.Estimate:
    return schemas.Estimate(
        estimate=_number(interval.estimate),
        low=_number(interval.low),
        high=_number(interval.high),
    )


def report_body(report: Report) -> schemas.Report:
    return schemas.Report(
        as_of=to_datetime(report.as_of) if report.as_of is not None else None,
        model_version=report.model_version,
        customers=report.customers,
        insiders=report.insiders,
        customer_share=report.customer_share,
        revenue=report.revenue,
        revenue_share=report.revenue_share,
        horizon_days=report.horizon_days,
        expected_revenue={"Insiders": report.expected_insiders, "rest": report.expected_rest},
        mean_revenue={k: _estimate(v) for k, v in report.mean_revenue.items()},
        top_insiders=[
            schemas.TopCustomer(customer_id=c, revenue=r, kept_value=k)
            for c, r, k in report.top_insiders
        ],
        traits=[
            schemas.Trait(
                name=t.name,
                label=t.label,
                unit=t.unit,
                insiders=_number(t.insiders),
                rest=_number(t.rest),
            )
            for t in report.traits
        ],
        segments=[
            schemas.SegmentRow(
                **{
                    **dataclasses.asdict(s),
                    "median_revenue": _number(s.median_revenue),
                }
            )
            for s in report.segments
        ],
        insider_centre=report.insider_centre,
        conditions=report.conditions,
        policy=dataclasses.asdict(report.rules) if report.rules is not None else {},
        movement=report.movement,
        flaps={"insiders": report.flaps[1], "came_back_within_30_days": report.flaps[0]},
        weeks=[schemas.WeekRow(**dataclasses.asdict(w)) for w in report.weeks],
        evidence=[schemas.EvidenceItem(claim=e.claim, holds=e.holds) for e in report.evidence],
        actions=[
            schemas.ActionItem(
                key=a.key,
                title=a.title,
                why=a.why,
                count=a.count,
                customer_ids=list(a.customer_ids),
            )
            for a in report.actions
        ],
    )


def money(value: float | None) -> str:
    """Whole pounds, for people; "-" when undefined."""
    return "-" if value is None else f"£{value:,.0f}"


def figure(value: float | None, unit: str = "") -> str:
    """A trait's value for people: pounds, whole days and counts, else two decimals.

    >>> figure(3679.2, "£"), figure(22.97, "days"), figure(8.0), figure(0.904), figure(None)
    ('£3,679', '23 days', '8', '0.90', '-')
    """
    if value is None:
        return "-"
    if unit == "£":
        return money(value)
    whole = value == round(value) or abs(value) >= 100 or unit == "days"
    text = f"{value:,.0f}" if whole else f"{value:,.2f}"
    return f"{text} {unit}" if unit else text


def as_markdown(body: schemas.Report) -> str:
    """The report as a Markdown document, for a backfill's output or an e-mail."""
    as_of = body.as_of.strftime("%Y-%m-%d %H:%M") if body.as_of else "no data yet"
    mean_in, mean_rest = body.mean_revenue["Insiders"], body.mean_revenue["rest"]
    out = [
        f"# Insiders report, as of {as_of}",
        "",
        f"Model version {body.model_version}.",
        "",
        "## How many, and their share",
        "",
        f"- **{body.insiders:,} Insiders**: {body.customer_share:.1%} of {body.customers:,} "
        "customers.",
        f"- They hold **{body.revenue_share:.1%}** of the revenue so far ({money(body.revenue)}).",
        f"- Expected revenue over the next {body.horizon_days} days, at each customer's own pace: "
        f"{money(body.expected_revenue.get('Insiders'))} from the Insiders, "
        f"{money(body.expected_revenue.get('rest'))} from the rest.",
        "",
        "## Who (the most valuable)",
        "",
        "| customer | kept (revenue - returns) | revenue |",
        "| --- | ---: | ---: |",
        *(
            f"| {c.customer_id} | {money(c.kept_value)} | {money(c.revenue)} |"
            for c in body.top_insiders
        ),
        "",
        "## What characterises them (medians)",
        "",
        "| | Insiders | the rest |",
        "| --- | ---: | ---: |",
        *(
            f"| {t.label} | {figure(t.insiders, t.unit)} | {figure(t.rest, t.unit)} |"
            for t in body.traits
        ),
        "",
        f"Mean revenue per customer: {money(mean_in.estimate)} [{money(mean_in.low)}, "
        f"{money(mean_in.high)}] for Insiders, {money(mean_rest.estimate)} "
        f"[{money(mean_rest.low)}, {money(mean_rest.high)}] for the rest (95% bootstrap).",
        "",
        "## Membership, week by week",
        "",
        "| week of | entries | exits | Insiders at the end |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {w.start:%Y-%m-%d} | {w.entries:,} | {w.exits:,} | {w.insiders:,} |"
            for w in body.weeks
        ),
        "",
        "## Segments (1 is the Insiders' segment)",
        "",
        "| segment | customers | Insiders | share of customers | share of revenue |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {s.segment if s.segment is not None else 'not yet assessed'} | {s.customers:,} "
            f"| {s.insiders:,} | {s.customer_share:.1%} | {s.revenue_share:.1%} |"
            for s in body.segments
        ),
        "",
        "## Entry and exit conditions",
        "",
        *(f"- {c}" for c in body.conditions),
        "",
        "## Evidence",
        "",
        *(f"- {'holds' if e.holds else 'does NOT hold'}: {e.claim}" for e in body.evidence),
        "",
        "## Actions",
        "",
        *(
            f"- **{a.title}** ({a.count:,}): {a.why}."
            + (f" {', '.join(a.customer_ids)}" if a.customer_ids else "")
            + (" …" if a.count > len(a.customer_ids) else "")
            for a in body.actions
        ),
    ]
    return "\n".join(out) + "\n"
