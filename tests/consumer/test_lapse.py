"""Time-driven exits: an Insider who stops buying leaves as `lapsed` while others keep buying."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import orjson

from consumer.memory import MemoryEventSink, MemoryFeatureStore
from consumer.pipeline import Pipeline
from consumer.ports import SourceRecord
from segmenter.model import SegmentModel

START = datetime(2011, 1, 1, 9, 0)
HEAVY = "77777"


def synthetic_lines(days: int = 330, customers: int = 300, seed: int = 5) -> list[dict]:
    """Invoices of ordinary customers all year, and one heavy buyer who stops on day 90."""
    rng = random.Random(seed)
    lines = []
    for c in range(customers):
        every = rng.choice([4, 10, 20, 45, 90])  # days between visits
        ticket = rng.lognormvariate(3.5, 0.8)
        day = rng.uniform(0, every)
        while day < days:
            lines.append((day, f"{10000 + c}", ticket))
            day += every * rng.uniform(0.7, 1.3)
    for day in range(0, 90, 3):
        lines.append((day + 0.5, HEAVY, 900.0))
    lines.sort()
    records = []
    for n, (day, customer, ticket) in enumerate(lines):
        records.append(
            {
                "event_id": f"S{n}:0",
                "invoice_no": f"S{n}",
                "stock_code": "85123A",
                "description": "HEART",
                "quantity": 10,
                "invoice_date": (START + timedelta(days=day)).isoformat(timespec="seconds"),
                "unit_price": round(ticket / 10, 2),
                "customer_id": customer,
                "country": "United Kingdom",
            }
        )
    return records


def test_a_heavy_buyer_who_stops_exits_as_lapsed():
    records = synthetic_lines()
    store, sink = MemoryFeatureStore(), MemoryEventSink()
    pipeline = Pipeline(store, sink, SegmentModel(warmup=64))
    for start in range(0, len(records), 200):
        chunk = records[start : start + 200]
        pipeline.process(
            [
                SourceRecord("syn", 0, start + i, r["customer_id"].encode(), orjson.dumps(r))
                for i, r in enumerate(chunk)
            ]
        )
    last_purchase = max(r["invoice_date"] for r in records if r["customer_id"] == HEAVY)
    history = store.history(HEAVY)
    assert [e["type"] for e in history][:1] == ["insider.entered"], history
    exits = [e for e in history if e["type"] == "insider.exited"]
    assert exits, f"the heavy buyer never left: {history}"
    assert exits[-1]["reason"]["code"] == "lapsed"
    assert exits[-1]["at"] > last_purchase  # the clock moved on; no line of theirs arrived
    assert not store.statuses[HEAVY].insider
