"""A file of bad lines does not flood the log: a few in full per reason, then a count."""

from __future__ import annotations

import logging

import orjson

from consumer.memory import MemoryEventSink, MemoryFeatureStore
from consumer.pipeline import LOGGED_PER_REASON, Pipeline
from consumer.ports import SourceRecord


def record(offset: int, **change: object) -> SourceRecord:
    doc = {
        "event_id": f"1:{offset}",
        "invoice_no": "1",
        "stock_code": "85123A",
        "quantity": 6,
        "invoice_date": "2011-01-01T10:00:00",
        "unit_price": 2.55,
        "customer_id": "17850",
        **change,
    }
    return SourceRecord("invoices", 0, offset, b"17850", orjson.dumps(doc))


def test_each_reason_is_logged_a_few_times_then_counted(caplog):
    sink = MemoryEventSink()
    pipeline = Pipeline(MemoryFeatureStore(), sink)
    block = [record(i, quantity=0) for i in range(12)]
    block += [record(12 + i, unit_price=-1.0) for i in range(2)]
    block += [record(14)]
    with caplog.at_level(logging.WARNING, logger="consumer.pipeline"):
        pipeline.process(block)
    messages = [r.getMessage() for r in caplog.records]
    zero = [m for m in messages if "zero_quantity" in m]
    assert len(zero) == 5 + 1 == LOGGED_PER_REASON + 1
    assert "rejected invoices[0]@0: zero_quantity: event 1:0" in zero[0]
    assert zero[-1] == (
        "more zero_quantity rejections: counted, not logged (each is on the dead-letter topic)"
    )
    assert len([m for m in messages if "negative_price" in m]) == 2
    # Nothing is lost: every rejection is counted and dead-lettered, the good line applied.
    assert pipeline.stats.rejected == {"zero_quantity": 12, "negative_price": 2}
    assert len(sink.dead_letters) == 14 and pipeline.stats.applied == 1
