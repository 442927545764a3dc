"""The dashboard: the live report as one self-contained HTML page.

No scripts, fonts or stylesheets from elsewhere: it must work on a closed network
and in the embedded demo. It shows exactly what `GET /report` returns, and reloads
itself every `REFRESH_SECONDS`.
"""

from __future__ import annotations

from html import escape

from api.report import figure, money
from api.schemas import Report

REFRESH_SECONDS = 30

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 72rem;
       padding: 1rem 1.5rem; color: #1d2330; background: #f7f8fa; }
h1 { margin: .2rem 0; } h2 { margin-top: 2rem; border-bottom: 1px solid #d7dbe3; }
.muted { color: #5b6475; } .cards { display: flex; flex-wrap: wrap; gap: .8rem; }
.card { background: #fff; border: 1px solid #d7dbe3; border-radius: 8px;
        padding: .7rem 1rem; min-width: 13rem; flex: 1; }
.card b { display: block; font-size: 1.6rem; }
table { border-collapse: collapse; background: #fff; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #e6e9ef; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #16794c; } .no { color: #b3261e; }
.bar { height: .7rem; display: inline-block; vertical-align: middle; }
.c { background: #8aa4d6; } .r { background: #1f4e9c; }
a { color: #1f4e9c; }
"""


def _customer(cid: str) -> str:
    return f'<a href="/customers/{escape(cid)}">{escape(cid)}</a>'


def _bar(share: float, css: str) -> str:
    width = max(share * 20, 0.05)  # 20rem for 100%
    return f'<span class="bar {css}" style="width:{width:.2f}rem"></span>'


def render(report: Report) -> str:
    as_of = report.as_of.strftime("%Y-%m-%d %H:%M") if report.as_of else "no data yet"
    expected = report.expected_revenue
    moves_in = sum(v for k, v in report.movement.items() if k.startswith("insider.entered"))
    moves_out = sum(v for k, v in report.movement.items() if k.startswith("insider.exited"))
    mean_in, mean_rest = report.mean_revenue["Insiders"], report.mean_revenue["rest"]
    peak = max((w.insiders for w in report.weeks), default=0)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='refresh' content='{REFRESH_SECONDS}'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Insiders: {report.insiders:,} of {report.customers:,} customers</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Insiders</h1>",
        f"<p class='muted'>As of {escape(as_of)} · model version {report.model_version} · "
        f"reloads every {REFRESH_SECONDS} s · <a href='/report'>JSON</a> · "
        "<a href='/events'>events</a> · <a href='/docs'>API</a></p>",
        "<div class='cards'>",
        f"<div class='card'>How many<b>{report.insiders:,}</b>"
        f"{report.customer_share:.1%} of {report.customers:,} customers</div>",
        f"<div class='card'>Share of revenue<b>{report.revenue_share:.1%}</b>"
        f"of {money(report.revenue)} so far</div>",
        f"<div class='card'>Expected revenue, next {report.horizon_days} days"
        f"<b>{money(expected.get('Insiders'))}</b>"
        f"the rest: {money(expected.get('rest'))}</div>",
        f"<div class='card'>Last 30 days<b>+{moves_in} / −{moves_out}</b>entries / exits</div>",
        "</div>",
        "<h2>Who</h2>",
        "<p>The most valuable Insiders (all of them: <a href='/insiders'>/insiders</a>).</p>",
        "<table><tr><th>customer</th><th class='n'>kept (revenue − returns)</th>"
        "<th class='n'>revenue</th></tr>",
        *(
            f"<tr><td>{_customer(c.customer_id)}</td><td class='n'>{money(c.kept_value)}</td>"
            f"<td class='n'>{money(c.revenue)}</td></tr>"
            for c in report.top_insiders
        ),
        "</table>",
        "<h2>What characterises them</h2>",
        "<table><tr><th>median</th><th class='n'>Insiders</th><th class='n'>the rest</th></tr>",
        *(
            f"<tr><td>{escape(t.label)}</td><td class='n'>{figure(t.insiders, t.unit)}</td>"
            f"<td class='n'>{figure(t.rest, t.unit)}</td></tr>"
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
            f"<tr><td>{w.start:%Y-%m-%d}</td><td class='n'>+{w.entries:,}</td>"
            f"<td class='n'>−{w.exits:,}</td><td>{_bar(w.insiders / peak if peak else 0.0, 'r')} "
            f"{w.insiders:,}</td></tr>"
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
            f"<td>{_bar(s.customer_share, 'c')} {s.customer_share:.1%}<br>"
            f"{_bar(s.revenue_share, 'r')} {s.revenue_share:.1%}</td>"
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
        "<h2>Actions</h2><div class='cards'>",
        *(
            f"<div class='card'>{escape(a.title)}<b>{a.count:,}</b>{escape(a.why)}<br>"
            + ", ".join(_customer(c) for c in a.customer_ids)
            + (" …" if a.count > len(a.customer_ids) else "")
            + "</div>"
            for a in report.actions
        ),
        "</div></body></html>",
    ]
    return "\n".join(parts)
