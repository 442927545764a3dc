"""A poison corpus through real Kafka: the sample, then every kind of record that used to crash,
poison or erase. The consumer exits 0, each poison record is on the dead-letter topic with its
reason, and the features and the Insiders equal a clean replay of the sample."""

from __future__ import annotations

import gzip
import json

import orjson
import pandas as pd
from kafka import KafkaProducer

from consumer.cli import build_pipeline
from consumer.export import export_frame
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink, MemoryFeatureStore
from consumer.redis_store import RedisFeatureStore
from consumer.settings import ConsumerSettings
from tests.conftest import SAMPLE
from tests.e2e.kafka_tools import read_topic, run_cli


def first_sample_record() -> dict:
    """The sample's first line as `insiders publish` sends it (its event id is applied)."""
    source = FileInvoiceSource(SAMPLE)
    record = next(iter(source.records()))
    assert record.value is not None
    return orjson.loads(record.value)


def poison() -> list[tuple[str, bytes | None]]:
    applied = first_sample_record()
    fresh = {**applied, "event_id": "poison:0", "invoice_no": "poison", "customer_id": "99999"}

    def with_(**changes: object) -> bytes:
        return json.dumps({**fresh, **changes}).encode()

    return [
        ("tombstone", None),
        ("out_of_range", with_(unit_price=1e308)),
        ("out_of_range", with_(quantity=2**62)),
        ("out_of_range", with_(quantity=10_000_000, unit_price=1e12)),
        ("implausible_date", with_(invoice_date="0001-01-01T00:00:00+01:00")),
        ("implausible_date", with_(invoice_date="9999-12-31T23:59:59-01:00")),
        ("implausible_date", with_(invoice_date="9999-12-31T23:59:59")),
        ("conflicting_duplicate", json.dumps({**applied, "quantity": 10_000}).encode()),
        ("not_json", b"\xff\xfe{"),
        ("unknown_layout", b'{"InvoiceNo": "536365"}'),
    ]


def clean_replay() -> MemoryFeatureStore:
    store = MemoryFeatureStore()
    pipeline = build_pipeline(store, MemoryEventSink(), ConsumerSettings())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    return store


def test_the_poison_corpus(env, kafka_bootstrap, redis_client, redis_prefix):
    topic = env["INSIDERS_TOPIC"]
    run_cli("publish", str(SAMPLE), env=env)
    with gzip.open(SAMPLE, "rt") as rows:
        sample_lines = sum(1 for _ in rows) - 1
    corpus = poison()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for _, value in corpus:
        producer.send(topic, key=b"99999", value=value)
    producer.flush()
    producer.close()

    done = run_cli("consume", "--exit-at-end", env=env)

    dead = read_topic(kafka_bootstrap, f"{topic}.dlq")
    got = sorted(
        (int(m.headers["source.offset"]), m.headers["reason"].decode(), m.value) for m in dead
    )
    want = [(sample_lines + i, reason, value) for i, (reason, value) in enumerate(corpus)]
    # Each poison record, its reason, its original bytes (None: a tombstone). A conflicting
    # duplicate is found at apply time, after the others of its block: compare by offset.
    assert got == want
    for m in dead:
        assert m.headers["detail"]

    store = RedisFeatureStore(redis_client, redis_prefix)
    clean = clean_replay()
    pd.testing.assert_frame_equal(
        export_frame(store, store.watermark()), export_frame(clean, clean.watermark())
    )
    assert store.watermark() == clean.watermark()  # no poison moved the event clock
    insiders = [c.customer_id for c in store.insiders(0, 10_000)[0]]
    assert insiders == [c.customer_id for c in clean.insiders(0, 10_000)[0]]
    assert len(insiders) > 0
    assert "conflicting_duplicate" in done.stderr
