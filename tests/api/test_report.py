"""GET /report and GET /dashboard over both stores, checked against pandas on the sample."""

from __future__ import annotations

import orjson
import pandas as pd
import pytest

from api.dashboard import render
from api.schemas import Report
from tests.conftest import SAMPLE
from tests.reference import load_lines, spec_v1


def insider_ids(client) -> set[str]:
    ids: set[str] = set()
    offset: int | None = 0
    while offset is not None:
        page = client.get("/insiders", params={"offset": offset, "limit": 50}).json()
        ids |= {item["customer_id"] for item in page["items"]}
        offset = page["next_offset"]
    return ids


def test_report_figures_agree_with_pandas(client):
    body = client.get("/report").json()
    lines = load_lines(SAMPLE)
    features = spec_v1(lines)
    flag = features.index.isin(insider_ids(client))
    assert (body["customers"], body["insiders"]) == (len(features), flag.sum())
    revenue = features["revenue"]
    assert body["revenue"] == pytest.approx(revenue.sum(), abs=0.01)
    assert body["revenue_share"] == pytest.approx(revenue[flag].sum() / revenue.sum())
    tenure = (lines["InvoiceDate"].max() - features["first_purchase_at"]) / pd.Timedelta(days=1)
    pace = revenue * body["horizon_days"] / tenure.clip(lower=30)
    assert body["expected_revenue"]["Insiders"] == pytest.approx(pace[flag].sum())
    assert body["expected_revenue"]["rest"] == pytest.approx(pace[~flag].sum())
    assert body["mean_revenue"]["Insiders"]["estimate"] == pytest.approx(revenue[flag].mean())
    traits = {t["name"]: t for t in body["traits"]}
    assert traits["avg_ticket"]["rest"] == pytest.approx(features.loc[~flag, "avg_ticket"].median())
    # The most valuable Insiders by what they kept (spec v2: revenue - returned value).
    kept = (features["revenue"] - features["returned_value"])[flag]
    top = kept.reset_index(name="kept").sort_values(
        ["kept", "customer_id"], ascending=[False, True]
    )
    top = top.head(10).set_index("customer_id")["kept"]
    assert [t["customer_id"] for t in body["top_insiders"]] == list(top.index)
    for t in body["top_insiders"]:
        assert t["kept_value"] == pytest.approx(top[t["customer_id"]], abs=0.01)
        assert t["revenue"] == pytest.approx(revenue[t["customer_id"]], abs=0.01)
    segments = body["segments"]
    assert sum(s["customers"] for s in segments) == len(features)
    assert sum(s["insiders"] for s in segments) == flag.sum()


def test_report_states_conditions_evidence_and_actions(client, store):
    body = client.get("/report").json()
    policy = body["policy"]
    assert 0 < policy["target_share"] < 1 and policy["lapse_days"] > 0
    conditions = body["conditions"]
    assert any(f"{policy['lapse_days']:.0f} days" in c for c in conditions)
    assert any(f"holds {policy['target_share']:.0%} of the customers" in c for c in conditions)
    # The edges in force are the ones the last daily ranking stored with the model.
    calibration = orjson.loads(store.model_checkpoint())["calibration"]
    assert any(f"a margin of at least {calibration['entry']:+.2f}" in c for c in conditions)
    assert any(f"their margin below {calibration['exit']:+.2f}" in c for c in conditions)
    assert any(c.startswith("Leave (outranked)") for c in conditions)
    # The model's money input is what customers kept.
    assert body["insider_centre"]["kept_value"] > 0
    assert {a["key"] for a in body["actions"]} == {"welcome", "at_risk", "nearly", "win_back"}
    for action in body["actions"]:
        assert len(action["customer_ids"]) == min(action["count"], 20)
    evidence = body["evidence"]
    assert len(evidence) == 3 and all(isinstance(e["holds"], bool) for e in evidence)


def test_dashboard_is_one_page_showing_the_report(client):
    response = client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    body = client.get("/report").json()
    assert f"{body['insiders']:,}" in page and f"{body['revenue_share']:.1%}" in page
    for action in body["actions"]:
        assert action["title"] in page
    for customer in body["top_insiders"]:
        assert f'href="/dashboard/customers/{customer["customer_id"]}"' in page
    assert len(body["weeks"]) == 12
    for week in body["weeks"]:
        assert f"<td>{week['start'][:10]}</td>" in page
    # Self-contained: nothing is fetched from elsewhere.
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_dashboard_escapes_what_it_shows():
    report = Report(
        as_of=None,
        model_version=0,
        customers=0,
        insiders=0,
        customer_share=0.0,
        revenue=0.0,
        revenue_share=0.0,
        horizon_days=90,
        expected_revenue={},
        mean_revenue={
            k: {"estimate": None, "low": None, "high": None} for k in ("Insiders", "rest")
        },
        top_insiders=[{"customer_id": "<b>x</b>", "revenue": 1.0, "kept_value": 1.0}],
        traits=[],
        segments=[],
        insider_centre={},
        conditions=["<script>alert(1)</script>"],
        policy={},
        movement={},
        flaps={},
        weeks=[],
        evidence=[],
        actions=[],
    )
    page = render(report)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>x</b>" not in page and "no data yet" in page
