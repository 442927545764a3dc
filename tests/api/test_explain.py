"""`why`, history and stats over both feature stores, filled by the real pipeline.

Expected values are taken from the API's other routes (the policy from /stats, the
features from the same response, the events from /events) and from arithmetic here.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import all_events

SAMPLE_CUSTOMERS = 377  # customers with a purchase in the shipped sample
ENTERED, EXITED = "insider.entered", "insider.exited"


def all_insider_ids(client: TestClient) -> list[str]:
    ids: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = client.get("/insiders", params={"offset": offset, "limit": 50}).json()
        ids.extend(item["customer_id"] for item in page["items"])
        offset = page["next_offset"]
    return ids


def policy(client: TestClient) -> dict[str, float]:
    rules = client.get("/stats").json()["policy"]
    assert set(rules) >= {"entry_margin", "exit_margin", "lapse_days"}
    return rules


def signed_sum(why: dict) -> float:
    return sum(d["weight"] if d["effect"] == "for" else -d["weight"] for d in why["drivers"])


def test_why_of_an_insider(client):
    rules = policy(client)
    insiders = all_insider_ids(client)
    assert insiders
    for cid in insiders:
        body = client.get(f"/customers/{cid}").json()
        assert body["insider"] is True
        why = body["why"]
        assert why["summary"].startswith("Insider:"), why["summary"]
        assert why["margin"] > -rules["exit_margin"], (cid, why)
        assert why["to_change"] == pytest.approx(why["margin"] + rules["exit_margin"], abs=1e-9)
        assert why["lapse_in_days"] is not None
        expected_lapse = rules["lapse_days"] - body["features"]["recency_days"]
        assert why["lapse_in_days"] == pytest.approx(expected_lapse, abs=1e-6)
        assert why["drivers"]
        assert all(d["effect"] in {"for", "against"} for d in why["drivers"])
        assert signed_sum(why) == pytest.approx(why["margin"], abs=1e-9)


def test_why_of_a_customer_who_is_not_an_insider(client, store):
    rules = policy(client)
    insiders = set(all_insider_ids(client))
    others = sorted(c.customer_id for c in store.customers() if c.customer_id not in insiders)
    assert others
    for cid in others[:40]:
        body = client.get(f"/customers/{cid}").json()
        assert body["insider"] is False
        why = body["why"]
        assert why["summary"].startswith("not an Insider"), why["summary"]
        assert why["lapse_in_days"] is None
        assert why["to_change"] == pytest.approx(rules["entry_margin"] - why["margin"], abs=1e-9)
        assert why["drivers"]
        assert all(d["effect"] in {"for", "against"} for d in why["drivers"])


def test_history_of_a_customer_who_exited(client):
    events = all_events(client)
    exited = [e["customer_id"] for e in events if e["type"] == EXITED]
    assert exited, "the sample should produce at least one exit"
    for cid in dict.fromkeys(exited):
        theirs = [e for e in events if e["customer_id"] == cid]
        response = client.get(f"/customers/{cid}/history")
        assert response.status_code == 200
        body = response.json()
        assert body["customer_id"] == cid
        history = body["events"]
        assert [h["event_id"] for h in history] == [f"{cid}:{i}" for i in range(1, len(theirs) + 1)]
        assert [h["event_id"] for h in history] == [e["event_id"] for e in theirs]
        types = [h["type"] for h in history]
        assert types == [ENTERED if i % 2 == 0 else EXITED for i in range(len(types))]
        assert [h["at"] for h in history] == sorted(h["at"] for h in history)
        assert [h["reason"] for h in history] == [e["reason"] for e in theirs]
        entries, exits = types.count(ENTERED), types.count(EXITED)
        assert body["insider"] is (entries - exits == 1)
        assert client.get(f"/customers/{cid}").json()["insider"] is body["insider"]


def test_stats_agree_with_the_other_routes(client):
    stats = client.get("/stats").json()
    assert stats["customers"] == SAMPLE_CUSTOMERS
    assert stats["insiders"] == client.get("/insiders").json()["total"]
    assert stats["insiders"] == len(all_insider_ids(client)) > 0
    events = all_events(client)
    assert sum(stats["events"].values()) == len(events) > 0
    assert stats["events"] == dict(Counter(f"{e['type']}:{e['reason']['code']}" for e in events))
    key = re.compile(r"^insider\.(entered|exited):[a-z_]+$")
    assert all(key.match(k) for k in stats["events"]), stats["events"]
    assert "insider.entered:top_segment" in stats["events"]
    # Every customer's events alternate, so entries minus exits is the Insider count.
    entered = sum(v for k, v in stats["events"].items() if k.startswith(ENTERED + ":"))
    exited = sum(v for k, v in stats["events"].items() if k.startswith(EXITED + ":"))
    assert entered - exited == stats["insiders"]
