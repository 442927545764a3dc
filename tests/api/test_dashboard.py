"""The dashboard's front: actions first, percentages, quiet weeks left empty, the chart of the
Insiders over time (checked against a forward replay of the events and pandas), a strict
Content-Security-Policy, `/` leading to it, and /docs served from our own files."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from api import dashboard
from api.report import current_report
from api.schemas import Report, WeekRow
from tests.api.conftest import all_events
from tests.conftest import SAMPLE
from tests.reference import load_lines, spec_v1


def test_the_front_page_leads_to_the_dashboard(client):
    answer = client.get("/", follow_redirects=False)
    assert answer.status_code in (302, 307) and answer.headers["location"] == "/dashboard"
    assert client.get("/").url.path == "/dashboard"


def test_the_page_may_load_nothing_and_run_no_script(client):
    answer = client.get("/dashboard")
    policy = dict(
        part.strip().split(" ", 1) for part in answer.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'" and "script-src" not in policy
    assert policy["img-src"] == "'self' data:"
    page = answer.text
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_actions_come_first_and_ratios_are_percentages(client):
    page = client.get("/dashboard").text
    body = client.get("/report").json()
    actions = page.index("What to do now")
    assert actions < page.index("<table") and actions < page.index("<svg")
    for action in body["actions"]:
        assert page.index(action["title"]) > actions
    returned = next(t for t in body["traits"] if t["name"] == "returned_share")
    assert 0 < returned["insiders"] < 0.05  # shown as 0.01 before
    row = f"<td>returned value / revenue</td><td class='n'>{returned['insiders']:.1%}</td>"
    assert row in page


def test_the_chart_follows_the_insiders_and_their_revenue_share(client, store):
    """Independently: replay every event forwards up to each week's end, and weigh the
    members by their revenue computed by pandas from the sample."""
    built = dashboard.build(store, store.watermark())
    assert built.report == current_report(store, store.watermark())
    revenue = spec_v1(load_lines(SAMPLE))["revenue"]
    events = all_events(client)
    weeks = built.report.weeks
    assert len(built.shares) == len(weeks) == 12
    for week, share in zip(weeks, built.shares, strict=True):
        end = week.start + timedelta(weeks=1)
        members: set[str] = set()
        for e in events:
            if datetime.fromisoformat(e["at"]) < end:
                if e["type"] == "insider.entered":
                    members.add(e["customer_id"])
                else:
                    members.discard(e["customer_id"])
        assert len(members) == week.insiders
        assert share == pytest.approx(revenue[sorted(members)].sum() / revenue.sum())
    assert built.shares[-1] == pytest.approx(built.report.revenue_share)
    assert len(set(built.shares)) > 1  # it moved over the 12 weeks
    page = client.get("/dashboard").text
    assert page.count("<rect class='week'") == 12 and f">{built.shares[-1]:.1%}</text>" in page


def week(day: int, entries: int, exits: int, insiders: int) -> WeekRow:
    return WeekRow(
        start=datetime(2011, 1, day, tzinfo=UTC), entries=entries, exits=exits, insiders=insiders
    )


def test_the_chart_is_drawn_to_scale():
    # By hand: the plot is 656 x 196 px from (48, 28); two weeks of 328 px each. The
    # taller bar (20) fills the height, the other (10) half; 25% and 50% sit at a quarter
    # and at half the height, above the bars' middles (x = 48 + 164 and 48 + 328 + 164).
    svg = dashboard.chart([week(3, 10, 0, 10), week(10, 10, 0, 20)], [0.25, 0.5])
    heights = [float(h) for h in re.findall(r"<rect class='week'[^>]* height='([\d.]+)'", svg)]
    assert heights == [98.0, 196.0]
    assert "<polyline points='212.0,175.0 540.0,126.0'" in svg
    assert ">03 Jan</text>" in svg and ">50.0%</text>" in svg
    assert "<polyline" not in dashboard.chart([week(3, 1, 0, 1)], [])
    assert "<svg" not in dashboard.chart([], [])


def empty_report(**changes: object) -> Report:
    fields: dict[str, object] = {
        "as_of": None,
        "model_version": 0,
        "customers": 0,
        "insiders": 0,
        "customer_share": 0.0,
        "revenue": 0.0,
        "revenue_share": 0.0,
        "horizon_days": 90,
        "expected_revenue": {},
        "mean_revenue": {
            k: {"estimate": None, "low": None, "high": None} for k in ("Insiders", "rest")
        },
        "top_insiders": [],
        "traits": [],
        "segments": [],
        "insider_centre": {},
        "conditions": [],
        "policy": {},
        "movement": {},
        "flaps": {},
        "weeks": [],
        "evidence": [],
        "actions": [],
    }
    return Report.model_validate({**fields, **changes})


def test_quiet_weeks_are_empty_and_busy_ones_signed():
    weeks = [week(3, 0, 0, 5), week(10, 3, 0, 8), week(17, 0, 2, 6)]
    page = dashboard.render(empty_report(weeks=weeks))
    rows = re.findall(
        r"<tr><td>2011-01-\d\d</td><td class='n'>([^<]*)</td><td class='n'>([^<]*)<", page
    )
    assert rows == [("", ""), ("+3", ""), ("", "−2")]


def test_hostile_ids_in_actions_are_escaped_and_their_links_quoted():
    hostile = '"><script>alert(1)</script>'
    action = {
        "key": "welcome",
        "title": "<i>t</i>",
        "why": "w",
        "count": 1,
        "customer_ids": [hostile],
    }
    page = dashboard.render(empty_report(actions=[action]))
    assert "<script>" not in page and "<i>t</i>" not in page
    assert 'href="/dashboard/customers/%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E"' in page
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;</a>" in page


def test_the_docs_come_from_our_own_files(client):
    for route, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        answer = client.get(route)
        assert answer.status_code == 200
        page = answer.text
        linked = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)
        assert f"/docs/assets/{asset}" in linked
        assert all(link.startswith("/") and not link.startswith("//") for link in linked), linked
        assert "http://" not in page and "https://" not in page
        assert "default-src 'self'" in answer.headers["content-security-policy"]
        for link in linked:
            fetched = client.get(link)
            assert fetched.status_code == 200 and len(fetched.content) > 1000, link
    assert client.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert "'validatorUrl': null" in client.get("/docs").text.replace('"', "'")
