"""The applied-id bytes bench, on the real Redis and the sample: its ids a customer are what
the product's own store holds after replaying the sample to the end of each day."""

from __future__ import annotations

from datetime import date, datetime

import redis

from consumer.cli import build_pipeline
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink, MemoryFeatureStore
from consumer.settings import ConsumerSettings
from tests.conftest import SAMPLE, run_bench
from tests.e2e.test_redis_footprint_bench import table_rows

# A Wednesday; a Saturday (UCI has no lines on Saturdays, so its watermark is Friday's); the end.
DAYS = (date(2011, 6, 1), date(2011, 6, 4), date(2011, 12, 9))


def held_a_customer(day: date, keep: int) -> str:
    """The ids the embedded store holds after the sample's lines up to the end of ``day``,
    a customer with a purchase."""
    settings = ConsumerSettings(dedupe_days=keep)
    store = MemoryFeatureStore(retention=settings.retention())
    pipeline = build_pipeline(store, MemoryEventSink(), settings)
    until = datetime(day.year, day.month, day.day, 23, 59, 59)
    for block in FileInvoiceSource(SAMPLE, settings.block_size, until).blocks():
        pipeline.process(block)
    return f"{len(store.seen) / store.customer_count():.2f}"


def test_ids_cost_bytes_by_length_and_a_customer_holds_what_the_store_holds(
    kafka_bootstrap, redis_client: redis.Redis
):
    args = ["--smallest", "38", "--largest", "42", "--data", str(SAMPLE)]
    args += ["--days", *(day.isoformat() for day in DAYS), "--dedupe-days", "30"]
    stdout = run_bench("id_bytes.py", args, kafka_bootstrap, timeout=300)
    costs, _, window = stdout.partition("\nLines within")
    header, *rows = table_rows(costs)
    assert header == ["ids a bucket", "6-digit invoices", "7-digit invoices"]
    assert [row[0] for row in rows] == ["38", "42", "mean, 38-42"]
    for row in rows:  # a member and a 64-bit score: two listpack entries of 10 bytes or more
        six, seven = (float(cell.strip("*")) for cell in row[1:])
        assert 20 <= six <= seven < 100
    assert not list(redis_client.scan_iter(match="b*:seen:1*", count=10_000))  # deleted

    _, *files = table_rows(window)
    assert files == [[SAMPLE.name, *(held_a_customer(day, 30) for day in DAYS)]]
