"""The dashboard: the live report as one self-contained HTML page.

No scripts, fonts or stylesheets from elsewhere: it must work on a closed network
and in the embedded demo (:data:`api.pages.CSP` has the browser enforce it). It shows
what `GET /report` returns, actions first, with a chart of the Insiders over time drawn
here as inline SVG, and reloads itself every `REFRESH_SECONDS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from html import escape

from api.pages import customer_link, document, percent
from api.report import all_events, current_segmenter, figure, money, report_body
from api.schemas import Report, WeekRow
from consumer.ports import FeatureStore
from segmenter.events import EXITED, event_time
from segmenter.report import Table, build_report
from segmenter.segmentation import Segmenter

REFRESH_SECONDS = 30


@dataclass(frozen=True)
class Built:
    """One build of the report, and what only the dashboard shows."""

    report: Report
    # The share of all revenue so far held by the Insiders at each week's end (report.weeks)
    shares: list[float]
    # Wall time the build ended, when it was built elsewhere (the writer's saved report)
    built_at: float | None = None
    # The store's revision it is the report of, when built elsewhere (the saved report's)
    revision: int | None = None


def build(store: FeatureStore, now: int | None) -> Built:
    """:func:`api.report.current_report`, and the weekly shares, from one read of the store."""
    return build_from(Table.of(store.customers()), now, current_segmenter(store), store)


def build_from(
    table: Table, now: int | None, segmenter: Segmenter | None, store: FeatureStore
) -> Built:
    """The report and the weekly shares on ``table``, with the store's recent events."""
    events = all_events(store)
    report = report_body(build_report(table, now, segmenter, events))
    return Built(report, revenue_shares(table, events, report.weeks))


def revenue_shares(
    table: Table, events: Sequence[dict[str, object]], weeks: Sequence[WeekRow]
) -> list[float]:
    """The share of all revenue so far that the Insiders at each week's end hold.

    Today's Insiders, with the events after each week's end undone (as
    :func:`segmenter.report.members_before`), weighed by what each customer has spent up
    to now: the store keeps totals, not a customer's revenue at a past date. The last
    week's share is the report's ``revenue_share``.
    """
    revenue = dict(zip(table.ids.tolist(), table.revenue.tolist(), strict=True))
    total = sum(revenue.values())
    insiders = table.ids[table.insider].tolist()
    members = set(insiders)
    # Summed in the table's (id) order, not the set's: a set of strings iterates in an order
    # that changes with each process's hash seed, and so would the sum's last digits.
    held = sum(revenue[c] for c in insiders)
    newest_first = sorted(events, key=event_time, reverse=True)
    shares: list[float] = []
    undone = 0
    for week in reversed(weeks):
        end = week.start.replace(tzinfo=None) + timedelta(weeks=1)
        while undone < len(newest_first) and event_time(newest_first[undone]) >= end:
            event = newest_first[undone]
            customer = str(event["customer_id"])
            if event["type"] == EXITED and customer not in members:
                members.add(customer)
                held += revenue.get(customer, 0.0)
            elif event["type"] != EXITED and customer in members:
                members.discard(customer)
                held -= revenue.get(customer, 0.0)
            undone += 1
        shares.append(held / total if total else 0.0)
    return shares[::-1]


def _bar(share: float, css: str) -> str:
    width = max(share * 20, 0.05)  # 20rem for 100%
    return f'<span class="bar {css}" style="width:{width:.2f}rem"></span>'


def _signed(sign: str, count: int) -> str:
    """A week's entries or exits: a quiet week is left empty, not "+0"."""
    return f"{sign}{count:,}" if count else ""


def chart(weeks: Sequence[WeekRow], shares: Sequence[float]) -> str:
    """Insiders at each week's end (bars, left axis) and their share of revenue (line,
    right axis, 0-100%), as inline SVG: no script, nothing fetched."""
    if not weeks:
        return "<p>No weeks of membership yet.</p>"
    width, height, left, right, top, bottom = 760, 260, 48, 56, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / len(weeks)
    peak = max(max(w.insiders for w in weeks), 1)
    base = top + plot_h
    parts = [
        f"<svg id='trend' role='img' aria-labelledby='trend-title' viewBox='0 0 {width} {height}' "
        f"width='100%' style='max-width:{width}px;background:#fff;border:1px solid #d7dbe3'>",
        "<title id='trend-title'>Insiders at each week's end, and their share of revenue</title>",
        f"<line x1='{left}' y1='{base}' x2='{width - right}' y2='{base}' stroke='#8a93a6'/>",
        f"<text x='{left - 6}' y='{top + 4}' text-anchor='end'>{peak:,}</text>",
        f"<text x='{left - 6}' y='{base}' text-anchor='end'>0</text>",
        f"<text x='{width - right + 6}' y='{top + 4}'>100%</text>",
        f"<text x='{width - right + 6}' y='{base}'>0%</text>",
        f"<text x='{left}' y='16'><tspan fill='#8aa4d6'>■</tspan> Insiders at the week's end"
        " <tspan fill='#b3261e'>●</tspan> their share of the revenue so far</text>",
    ]
    for i, week in enumerate(weeks):
        x = left + i * step
        h = plot_h * week.insiders / peak
        parts += [
            f"<rect class='week' x='{x + step * 0.15:.1f}' y='{base - h:.1f}' "
            f"width='{step * 0.7:.1f}' height='{h:.1f}' fill='#8aa4d6'/>",
            f"<text x='{x + step / 2:.1f}' y='{base - h - 4:.1f}' "
            f"text-anchor='middle'>{week.insiders:,}</text>",
            f"<text x='{x + step / 2:.1f}' y='{base + 16}' "
            f"text-anchor='middle'>{week.start:%d %b}</text>",
        ]
    if shares:
        points = [
            (left + (i + 0.5) * step, base - plot_h * share) for i, share in enumerate(shares)
        ]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f"<polyline points='{line}' fill='none' stroke='#b3261e' stroke-width='2'/>")
        parts += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='#b3261e'/>" for x, y in points]
        x, y = points[-1]
        parts.append(
            f"<text x='{x:.1f}' y='{y - 8:.1f}' text-anchor='middle' fill='#b3261e'>"
            f"{percent(shares[-1])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render(report: Report, shares: Sequence[float] = ()) -> str:
    """The page; ``shares``: :attr:`Built.shares`, the chart's line (none without)."""
    as_of = report.as_of.strftime("%Y-%m-%d %H:%M") if report.as_of else "no data yet"
    expected = report.expected_revenue
    moves_in = sum(v for k, v in report.movement.items() if k.startswith("insider.entered"))
    moves_out = sum(v for k, v in report.movement.items() if k.startswith("insider.exited"))
    mean_in, mean_rest = report.mean_revenue["Insiders"], report.mean_revenue["rest"]
    peak = max((w.insiders for w in report.weeks), default=0)
    body = [
        "<h1>Insiders</h1>",
        f"<p class='muted'>As of {escape(as_of)} · model version {report.model_version} · "
        f"reloads every {REFRESH_SECONDS} s · <a href='/report'>JSON</a> · "
        "<a href='/events'>events</a> · <a href='/docs'>API</a></p>",
        "<div class='cards'>",
        f"<div class='card'>How many<b>{report.insiders:,}</b>"
        f"{percent(report.customer_share)} of {report.customers:,} customers</div>",
        f"<div class='card'>Share of revenue<b>{percent(report.revenue_share)}</b>"
        f"of {money(report.revenue)} so far</div>",
        f"<div class='card'>Expected revenue, next {report.horizon_days} days"
        f"<b>{money(expected.get('Insiders'))}</b>"
        f"the rest: {money(expected.get('rest'))}</div>",
        f"<div class='card'>Last 30 days<b>+{moves_in} / −{moves_out}</b>entries / exits</div>",
        "</div>",
        "<h2 id='actions'>What to do now</h2><div class='cards'>",
        *(
            f"<div class='card action'>{escape(a.title)}<b>{a.count:,}</b>{escape(a.why)}<br>"
            + ", ".join(customer_link(c) for c in a.customer_ids)
            + (" …" if a.count > len(a.customer_ids) else "")
            + "</div>"
            for a in report.actions
        ),
        "</div>",
        "<h2>Insiders over time</h2>",
        chart(report.weeks, shares),
        "<h2>Who</h2>",
        "<p>The most valuable Insiders (all of them: <a href='/insiders'>/insiders</a>).</p>",
        "<table><tr><th>customer</th><th class='n'>kept (revenue − returns)</th>"
        "<th class='n'>revenue</th></tr>",
        *(
            f"<tr><td>{customer_link(c.customer_id)}</td><td class='n'>{money(c.kept_value)}</td>"
            f"<td class='n'>{money(c.revenue)}</td></tr>"
            for c in report.top_insiders
        ),
        "</table>",
        "<h2>What characterises them</h2>",
        "<table><tr><th>median</th><th class='n'>Insiders</th><th class='n'>the rest</th></tr>",
        *(
            f"<tr><td>{escape(t.label)}</td><td class='n'>{_trait(t.name, t.insiders, t.unit)}"
            f"</td><td class='n'>{_trait(t.name, t.rest, t.unit)}</td></tr>"
            for t in report.traits
        ),
        "</table>",
        f"<p>Mean revenue per customer: {money(mean_in.estimate)} "
        f"[{money(mean_in.low)}, {money(mean_in.high)}] for Insiders, "
        f"{money(mean_rest.estimate)} [{money(mean_rest.low)}, {money(mean_rest.high)}] "
        "for the rest (95% bootstrap intervals).</p>",
        "<h2>Membership, week by week</h2>",
        "<table><tr><th>week of</th><th class='n'>entries</th><th class='n'>exits</th>"
        "<th>Insiders at the end</th></tr>",
        *(
            f"<tr><td>{w.start:%Y-%m-%d}</td><td class='n'>{_signed('+', w.entries)}</td>"
            f"<td class='n'>{_signed('−', w.exits)}</td>"
            f"<td>{_bar(w.insiders / peak if peak else 0.0, 'r')} {w.insiders:,}</td></tr>"
            for w in report.weeks
        ),
        "</table>",
        "<h2>Segments</h2>",
        "<p>Segments are ranked by value; segment 1 is the Insiders' segment. Pale bar: share "
        "of customers; dark bar: share of revenue.</p>",
        "<table><tr><th>segment</th><th class='n'>customers</th><th class='n'>Insiders</th>"
        "<th>customers / revenue</th><th class='n'>median revenue</th>"
        f"<th class='n'>expected, {report.horizon_days} days</th></tr>",
        *(
            f"<tr><td>{s.segment if s.segment is not None else 'not yet assessed'}</td>"
            f"<td class='n'>{s.customers:,}</td><td class='n'>{s.insiders:,}</td>"
            f"<td>{_bar(s.customer_share, 'c')} {percent(s.customer_share)}<br>"
            f"{_bar(s.revenue_share, 'r')} {percent(s.revenue_share)}</td>"
            f"<td class='n'>{money(s.median_revenue)}</td>"
            f"<td class='n'>{money(s.expected_revenue)}</td></tr>"
            for s in report.segments
        ),
        "</table>",
        "<h2>Entry and exit conditions</h2><ul>",
        *(f"<li>{escape(c)}</li>" for c in report.conditions),
        "</ul>",
        "<h2>Evidence</h2><ul>",
        *(
            f"<li class='{'ok' if e.holds else 'no'}'>{'✓' if e.holds else '✗'} "
            f"{escape(e.claim)}</li>"
            for e in report.evidence
        ),
        "</ul>",
        "<p class='muted'>Out of time, on the full Online Retail file, "
        "<code>insiders evaluate</code> measures the Insiders at a cut against the revenue "
        "that follows it.</p>",
    ]
    title = f"Insiders: {report.insiders:,} of {report.customers:,} customers"
    return document(title, body, refresh=REFRESH_SECONDS)


def _trait(name: str, value: float | None, unit: str) -> str:
    """A ratio (``returned_share``) as a percentage, anything else as :func:`figure` has it."""
    return percent(value) if name.endswith("_share") else figure(value, unit)
