"""The live business report: read the store, build the report, shape it for JSON."""

from __future__ import annotations

import dataclasses
import math

from api import schemas
from consumer.ports import FeatureStore
from segmenter.evaluation import Interval
from segmenter.features import features_of, to_datetime
from segmenter.report import Report, Row, build_report
from segmenter.segmentation import Segmenter

EVENT_PAGE = 1000


def live_report(store: FeatureStore, now: int | None, segmenter: Segmenter | None) -> Report:
    at = now if now is not None else 0
    rows = [Row(c.customer_id, features_of(c.state, at), c.status) for c in store.customers()]
    return build_report(rows, now, segmenter, all_events(store))


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
            schemas.TopCustomer(customer_id=c, revenue=r) for c, r in report.top_insiders
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
