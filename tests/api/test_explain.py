"""`why`, history and stats over both feature stores, filled by the real pipeline.

Expected values are taken from the API's other routes (the policy from /stats, the
features from the same response, the events from /events), from the edges of the last
daily ranking as the consumer stored them (the checkpoint's JSON, read here without the
project's code) and from arithmetic here.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import datetime

import orjson
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


def stored_edges(store) -> tuple[float, float]:
    """The (entry, exit) margins the last daily ranking set, from the stored checkpoint."""
    blob = store.model_checkpoint()
    assert blob is not None, "the consumer stored no checkpoint"
    calibration = orjson.loads(blob)["calibration"]
    assert calibration is not None, "no daily ranking yet: the sample should reach one"
    assert calibration["customers"] == SAMPLE_CUSTOMERS
    return calibration["entry"], calibration["exit"]


def days(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() / 86_400


def signed_sum(why: dict) -> float:
    return sum(d["weight"] if d["effect"] == "for" else -d["weight"] for d in why["drivers"])


def test_why_of_an_insider(client, store):
    rules = policy(client)
    entry, exit_ = stored_edges(store)
    assert exit_ <= entry  # the band between them is the hysteresis
    insiders = all_insider_ids(client)
    assert insiders
    for cid in insiders:
        body = client.get(f"/customers/{cid}").json()
        assert body["insider"] is True
        why = body["why"]
        assert why["summary"].startswith("Insider:"), why["summary"]
        assert f"exits below {exit_:+.2f}" in why["summary"], why["summary"]
        # Below the exit edge an Insider stays only through the minimum dwell.
        dwell = days(body["insider_since"], body["as_of"])
        assert why["margin"] >= exit_ or dwell < rules["min_dwell_days"], (cid, why, dwell)
        assert why["to_change"] == pytest.approx(why["margin"] - exit_, abs=1e-9)
        assert why["lapse_in_days"] is not None
        assert why["drivers"]
        assert all(d["effect"] in {"for", "against"} for d in why["drivers"])
        assert signed_sum(why) == pytest.approx(why["margin"], abs=1e-9)


def days_to_lapse(features: dict, rules: dict[str, float]) -> float:
    """Days without a purchase until the lapse rule holds, by hand from the features.

    Lapsed: no purchase for lapse_days, or for overdue_factor x the usual gap if that is
    longer; the usual gap is the span from the first to the last purchase over the n - 1
    gaps between n invoices (one invoice: no gap, lapse_days alone).
    """
    n, factor = features["invoices"], rules["overdue_factor"]
    recency = features["recency_days"]
    span = days(features["first_purchase_at"], features["last_purchase_at"])
    at = rules["lapse_days"] if n < 2 else max(rules["lapse_days"], factor * span / (n - 1))
    return max(at - recency, 0.0)


def test_lapse_in_days_follows_the_lapse_rule(client):
    """`lapse_in_days` is the time until `lapsed` holds, not lapse_days - recency alone."""
    rules = policy(client)
    wrong = []
    for cid in all_insider_ids(client):
        body = client.get(f"/customers/{cid}").json()
        want = days_to_lapse(body["features"], rules)
        got = body["why"]["lapse_in_days"]
        if not (got == pytest.approx(want, abs=1e-6) or (math.isinf(want) and got is None)):
            wrong.append((cid, body["features"]["invoices"], got, want))
    assert not wrong, f"{len(wrong)} Insiders: (id, invoices, lapse_in_days, by the rule) {wrong}"


def test_why_of_a_customer_who_is_not_an_insider(client, store):
    entry, _ = stored_edges(store)
    insiders = set(all_insider_ids(client))
    others = sorted(c.customer_id for c in store.customers() if c.customer_id not in insiders)
    assert others
    for cid in others[:40]:
        body = client.get(f"/customers/{cid}").json()
        assert body["insider"] is False
        why = body["why"]
        assert why["summary"].startswith("not an Insider"), why["summary"]
        assert why["lapse_in_days"] is None
        assert f"enters at {entry:+.2f}" in why["summary"], why["summary"]
        assert why["to_change"] == pytest.approx(entry - why["margin"], abs=1e-9)
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
