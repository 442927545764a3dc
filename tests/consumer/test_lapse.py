"""Time-driven exits: an Insider who stops buying leaves as `lapsed` while others keep buying.

With a target share, an Insider also leaves at the daily ranking when others outrank them
(`outranked`); the code is `lapsed` when they are also overdue (more than overdue_factor x
their usual gap since their last purchase). A heavy buyer who buys every three days and
stops is overdue within a week, so however the ranking moves, their exit is `lapsed`.
Only their own lines can waive the 30-day dwell, so the model's drift does not take them
out while they still buy.
"""

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
    theirs = sorted(r["invoice_date"] for r in records if r["customer_id"] == HEAVY)
    last_purchase = theirs[-1]
    history = store.history(HEAVY)
    assert [e["type"] for e in history][:1] == ["insider.entered"], history
    # The premise: the heaviest buyer by far (£900 every 3 days, £27,000 in all; the others
    # spend some £30 a visit) is an Insider when they stop.
    before = [e for e in history if e["at"] <= last_purchase]
    assert before and before[-1]["type"] == "insider.entered", (
        f"the heavy buyer was not an Insider at their last purchase {last_purchase}: {history}"
    )
    exits = [e for e in history if e["type"] == "insider.exited" and e["at"] > last_purchase]
    assert exits, f"the heavy buyer never left after they stopped: {history}"
    assert len(exits) == 1 and exits[0] == history[-1], history  # and never came back
    # By hand: overdue once the time since the last purchase is more than twice the usual
    # gap between purchases, (last - first) / (invoices - 1): 30 invoices from day 0.5 to
    # day 87.5, a gap of 3 days.
    at = datetime.fromisoformat(exits[0]["at"]).replace(tzinfo=None)
    first, last = (datetime.fromisoformat(theirs[i]) for i in (0, -1))
    recency = (at - last) / timedelta(days=1)
    gap = (last - first) / timedelta(days=1) / (len(theirs) - 1)
    assert gap == 3.0 and recency > 2 * gap, (recency, gap)
    assert exits[0]["reason"]["code"] == "lapsed", exits[0]
    assert not store.statuses[HEAVY].insider
