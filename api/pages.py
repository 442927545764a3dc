"""Pages for people: the HTML shell the dashboard and the customer page share, and the
customer page itself.

Everything shown is escaped: customer ids and reasons come from the stream, so they are
hostile input. The pages run no script at all, and their ``Content-Security-Policy``
makes that a property the browser enforces: nothing may load from elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from html import escape
from urllib.parse import quote

from api.report import money
from api.schemas import CustomerStatus, History

# Styles are inline (a <style> block and the bars' widths); scripts, frames, fonts and
# anything from another host are refused by the browser.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 72rem;
       padding: 1rem 1.5rem; color: #1d2330; background: #f7f8fa; }
h1 { margin: .2rem 0; } h2 { margin-top: 2rem; border-bottom: 1px solid #d7dbe3; }
.muted { color: #5b6475; } .cards { display: flex; flex-wrap: wrap; gap: .8rem; }
.card { background: #fff; border: 1px solid #d7dbe3; border-radius: 8px;
        padding: .7rem 1rem; min-width: 13rem; flex: 1; }
.card b { display: block; font-size: 1.6rem; }
.action { border-left: 4px solid #1f4e9c; }
table { border-collapse: collapse; background: #fff; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #e6e9ef; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #16794c; } .no { color: #b3261e; }
.bar { height: .7rem; display: inline-block; vertical-align: middle; }
.c { background: #8aa4d6; } .r { background: #1f4e9c; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2330; }
a { color: #1f4e9c; }
"""


def customer_href(customer_id: str) -> str:
    """The customer page's address, safe in an attribute whatever the id holds.

    >>> customer_href('12347'), customer_href('"><b>')
    ('/dashboard/customers/12347', '/dashboard/customers/%22%3E%3Cb%3E')
    """
    return "/dashboard/customers/" + escape(quote(customer_id, safe=""))


def customer_link(customer_id: str) -> str:
    return f'<a href="{customer_href(customer_id)}">{escape(customer_id)}</a>'


def percent(share: float | None) -> str:
    """A ratio for people.

    >>> percent(0.0065), percent(0.42), percent(None)
    ('0.7%', '42.0%', '-')
    """
    return "-" if share is None else f"{share:.1%}"


def document(title: str, body: Iterable[str], refresh: int | None = None) -> str:
    """A whole page: ``title`` is escaped here, ``body`` is HTML already escaped."""
    head = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='refresh' content='{refresh}'>" if refresh else "",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<link rel='icon' href='data:,'>",  # no favicon request
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
    ]
    return "\n".join([*head, *body, "</body></html>"])


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def _days(days: float | None) -> str:
    """Whole days for people.

    >>> _days(1.2), _days(30.0), _days(None)
    ('1 day', '30 days', '-')
    """
    if days is None:
        return "-"
    return f"{days:,.0f} day" + ("" if round(days) == 1 else "s")


def _number(value: float | None, sign: str = "") -> str:
    return "-" if value is None else f"{value:{sign},.2f}"


def customer_page(status: CustomerStatus, history: History) -> str:
    """One customer for people: their status, the why, their features and their history."""
    cid = escape(status.customer_id)
    path = quote(status.customer_id, safe="")
    f, why = status.features, status.why
    if status.insider:
        verdict = f"<b class='ok'>Insider</b> since {_when(status.insider_since)}"
    else:
        verdict = "<b>Not an Insider</b>"
    segment = status.segment if status.segment is not None else "not yet assessed"
    body = [
        f"<p class='muted'><a href='/dashboard'>← dashboard</a> · JSON: "
        f"<a href='/customers/{escape(path)}'>customer</a> · "
        f"<a href='/customers/{escape(path)}/history'>history</a></p>",
        f"<h1>Customer {cid}</h1>",
        f"<p>{verdict} · segment {segment} · model version {status.model_version} · "
        f"as of {_when(status.as_of)}</p>",
        "<h2>Why</h2>",
    ]
    if why is None:
        body.append("<p>No model yet: the consumer has not trained one.</p>")
    else:
        body += [
            f"<p>{escape(why.summary)}</p>",
            "<table><tr><th>margin (&gt; 0: inside the top segment)</th>"
            "<th class='n'>to change the status</th><th class='n'>lapse exit in</th></tr>",
            f"<tr><td>{_number(why.margin, '+')}</td><td class='n'>{_number(why.to_change)}</td>"
            f"<td class='n'>{_days(why.lapse_in_days)}</td></tr></table>",
            "<p>What weighs most:</p>",
            "<table><tr><th>feature</th><th class='n'>this customer</th>"
            "<th class='n'>typical Insider</th><th>effect</th><th class='n'>weight</th></tr>",
            *(
                f"<tr><td>{escape(d.feature)}</td><td class='n'>{_number(d.value)}</td>"
                f"<td class='n'>{_number(d.insider_typical)}</td>"
                f"<td class='{'ok' if d.effect == 'for' else 'no'}'>{escape(d.effect)}</td>"
                f"<td class='n'>{_number(d.weight)}</td></tr>"
                for d in why.drivers
            ),
            "</table>",
        ]
    rows = [
        ("revenue", money(f.revenue)),
        ("returned value", money(f.returned_value)),
        ("kept (revenue − returns)", money(f.kept_value)),
        ("invoices", f"{f.invoices:,}"),
        ("lines", f"{f.lines:,}"),
        ("units", f"{f.units:,}"),
        ("returned units", f"{f.returned_units:,}"),
        ("revenue per invoice", money(f.avg_ticket)),
        ("invoices per 30 days", _number(f.frequency)),
        ("first purchase", _when(f.first_purchase_at)),
        ("last purchase", _when(f.last_purchase_at)),
        ("days since the last purchase", _days(f.recency_days)),
    ]
    body += [
        "<h2>Features</h2><table>",
        *(f"<tr><td>{label}</td><td class='n'>{value}</td></tr>" for label, value in rows),
        "</table>",
        "<h2>History</h2>",
    ]
    if not history.events:
        body.append("<p>No entry or exit yet.</p>")
    else:
        body += [
            "<table><tr><th>when</th><th>what</th><th>why</th><th class='n'>segment</th></tr>",
            *(
                f"<tr><td>{_when(e.at)}</td>"
                f"<td>{'entered' if e.type == 'insider.entered' else 'left'}</td>"
                f"<td>{escape(e.reason.text)}</td>"
                f"<td class='n'>{e.segment if e.segment is not None else '-'}</td></tr>"
                for e in history.events
            ),
            "</table>",
        ]
    return document(f"Customer {status.customer_id}", body)


def not_found_page(customer_id: str) -> str:
    return document(
        "No such customer",
        [
            "<p><a href='/dashboard'>← dashboard</a></p>",
            f"<h1>No customer {escape(customer_id)}</h1><p>No purchase of theirs seen yet.</p>",
        ],
    )
