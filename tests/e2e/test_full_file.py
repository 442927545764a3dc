"""The full Online Retail file through real Kafka and Redis, checked against pandas.

One module-wide run (publish 541,909 lines, consume them as a backfill) feeds the
parity, events and embedded-equivalence checks; the file is large, so it is read once.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator

import orjson
import pandas as pd
import pytest

from consumer.export import export_frame
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink, MemoryFeatureStore
from consumer.pipeline import Pipeline
from consumer.redis_store import RedisFeatureStore
from segmenter.model import SegmentModel
from tests.conftest import REDIS_URL, delete_prefix
from tests.e2e.kafka_tools import read_topic, run_cli
from tests.reference import DATA, MISSING_DATA, load_lines, spec_v1

pytestmark = pytest.mark.skipif(not DATA.exists(), reason=MISSING_DATA)


@pytest.fixture(scope="module")
def full_run(redis_client, kafka_bootstrap) -> Iterator[dict]:
    tag = uuid.uuid4().hex[:8]
    topic, events_topic, prefix = f"invoices-{tag}", f"insiders.events-{tag}", f"test:{tag}:"
    env = {
        "INSIDERS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "INSIDERS_REDIS_URL": REDIS_URL,
        "INSIDERS_REDIS_PREFIX": prefix,
        "INSIDERS_EVENTS_TOPIC": events_topic,
    }
    published = run_cli("publish", str(DATA), "--topic", topic, env=env)
    consumed = run_cli("consume", "--topic", topic, "--group", f"g-{tag}", "--exit-at-end", env=env)
    store = RedisFeatureStore(redis_client, prefix)
    yield {
        "store": store,
        "events_topic": events_topic,
        "publish_out": published.stdout,
        "consume_log": consumed.stderr,
        "bootstrap": kafka_bootstrap,
    }
    delete_prefix(redis_client, prefix)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return spec_v1(load_lines(DATA))


def test_publish_reports_every_line(full_run):
    assert "published 541,909 lines" in full_run["publish_out"]


def test_features_in_redis_equal_pandas(full_run, reference):
    store = full_run["store"]
    got = export_frame(store, store.watermark()).set_index("customer_id")
    assert len(got) == len(reference) == 4334
    assert round(reference["revenue"].sum(), 2) == 8_761_066.65
    assert sorted(got.index) == sorted(reference.index)
    got = got.loc[reference.index]
    for money in ("revenue", "returned_value", "avg_ticket"):
        worst = (got[money] - reference[money]).abs().max()
        assert worst < 0.005, f"{money} differs by up to {worst}"
    for count in ("invoices", "lines", "units", "returned_units"):
        assert (got[count].to_numpy() == reference[count].to_numpy()).all(), count
    for when in ("first_purchase_at", "last_purchase_at"):
        assert (pd.to_datetime(got[when]) == reference[when]).all(), when
    for derived in ("recency_days", "frequency"):
        assert (got[derived] - reference[derived]).abs().max() < 1e-9, derived


def test_rejections_and_ignored_lines_are_logged_by_reason(full_run):
    log = full_run["consume_log"]
    # The file's two bad-debt adjustments carry the only negative prices.
    assert "rejected by reason: {'negative_price': 2}" in log
    assert "'no_customer': 135078" in log


def test_entries_minus_exits_equal_the_final_flag(full_run):
    messages = read_topic(full_run["bootstrap"], full_run["events_topic"])
    assert messages, "no insider events were published"
    net: Counter[str] = Counter()
    seen: set[str] = set()
    for m in messages:
        event = orjson.loads(m.value)
        assert m.key == event["customer_id"].encode()
        assert event["event_id"] not in seen, "an event was published twice"
        seen.add(event["event_id"])
        net[event["customer_id"]] += 1 if event["type"] == "insider.entered" else -1
    store = full_run["store"]
    flags = {c.customer_id: int(c.status.insider) for c in store.customers()}
    assert set(net.values()) <= {0, 1}
    assert {cid: n for cid, n in net.items() if n} == {cid: f for cid, f in flags.items() if f}
    # The Redis stream the API pages through holds the same events.
    stream = store.events(None, 100_000).events
    assert [e["event_id"] for e in stream] == [orjson.loads(m.value)["event_id"] for m in messages]


def test_embedded_replay_gives_the_same_features_segments_and_events(full_run):
    """Issue 3 parity: file source + memory store equal Kafka + Redis for the same lines."""
    memory, sink = MemoryFeatureStore(), MemoryEventSink()
    pipeline = Pipeline(memory, sink, SegmentModel())
    source = FileInvoiceSource(DATA)
    for block in source.blocks():
        pipeline.process(block)
    redis_store = full_run["store"]
    embedded = export_frame(memory, memory.watermark())
    kafka = export_frame(redis_store, redis_store.watermark())
    pd.testing.assert_frame_equal(embedded, kafka)
    assert sink.events == redis_store.events(None, 100_000).events
