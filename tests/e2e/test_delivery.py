"""Delivery guarantees on real Kafka and Redis: exactly-once effect, dead letters."""

from __future__ import annotations

import os
import signal

import orjson
import pandas as pd
from kafka import KafkaProducer

from consumer.export import export_frame
from consumer.redis_store import RedisFeatureStore
from tests.conftest import SAMPLE
from tests.e2e.kafka_tools import read_topic, run_cli


def snapshot(store: RedisFeatureStore) -> tuple[pd.DataFrame, list[str]]:
    frame = export_frame(store, store.watermark())
    events = [e["event_id"] for e in store.events(None, 100_000).events]
    return frame, events


def test_duplicates_and_replays_change_nothing(env, redis_client, redis_prefix, kafka_bootstrap):
    topic = env["INSIDERS_TOPIC"]
    store = RedisFeatureStore(redis_client, redis_prefix)
    run_cli("publish", str(SAMPLE), env=env)
    run_cli("consume", "--group", "first", "--exit-at-end", env=env)
    frame, events = snapshot(store)
    assert len(frame) == 377 and events

    # The same lines published a second time: new offsets, same event ids.
    run_cli("publish", str(SAMPLE), env=env)
    again = run_cli("consume", "--group", "first", "--exit-at-end", env=env)
    assert "31,325 records: 0 applied, 31,325 duplicate" in again.stderr
    pd.testing.assert_frame_equal(snapshot(store)[0], frame)
    assert snapshot(store)[1] == events

    # A new consumer group starts where Redis left off, not at offset 0: the store, not the
    # group, holds the progress.
    replay = run_cli("consume", "--group", "second", "--exit-at-end", env=env)
    assert " 0 records: 0 applied, 0 duplicate, 0 already applied" in replay.stderr
    pd.testing.assert_frame_equal(snapshot(store)[0], frame)
    assert snapshot(store)[1] == events
    published = read_topic(kafka_bootstrap, env["INSIDERS_EVENTS_TOPIC"])
    assert [orjson.loads(m.value)["event_id"] for m in published] == events
    assert topic  # the topic name came from the environment, as the CLI documents


GOOD = {
    "event_id": "900001:0",
    "invoice_no": "900001",
    "stock_code": "85123A",
    "description": "WHITE HANGING HEART T-LIGHT HOLDER",
    "quantity": 6,
    "invoice_date": "2011-01-02T10:00:00",
    "unit_price": 2.55,
    "customer_id": "99001",
    "country": "United Kingdom",
}


def variant(event_id: str, **changes: object) -> bytes:
    doc = {**GOOD, "event_id": event_id, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...})


BAD = {
    "not_json": b"{this is not json",
    "missing_field": variant("m:0", quantity=..., unit_price=...),
    "wrong_type": variant("w:0", quantity="6"),
    "zero_quantity": variant("z:0", quantity=0),
    "bad_date": variant("d:0", invoice_date="2011-02-30 25:61"),
    "negative_price": variant("n:0", unit_price=-1.5),
    "unknown_layout": orjson.dumps({"InvoiceNo": "1", "StockCode": "85123A", "Quantity": 1}),
    "too_large": variant("big:0", description="x" * 1_000_000),
}


def test_bad_records_go_to_the_dead_letter_topic_and_the_stream_goes_on(
    env, redis_client, redis_prefix, kafka_bootstrap
):
    topic = env["INSIDERS_TOPIC"]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=2 * 1024 * 1024)
    sent: list[tuple[str | None, bytes]] = []
    for i in range(3):
        sent.append((None, variant(f"900001:{i}", quantity=i + 1)))
    for reason, value in BAD.items():
        sent.append((reason, value))
    sent.append((None, variant("900002:0", invoice_no="900002", quantity=10)))
    for _, value in sent:
        producer.send(topic, key=b"99001", value=value)
    producer.flush()
    producer.close()

    done = run_cli("consume", "--group", "g", "--exit-at-end", env=env)

    dead = read_topic(kafka_bootstrap, f"{topic}.dlq")
    want = [(offset, reason, value) for offset, (reason, value) in enumerate(sent) if reason]
    got = [(int(m.headers["source.offset"]), m.headers["reason"].decode(), m.value) for m in dead]
    assert got == want  # every bad record, with its reason and its original bytes
    for m in dead:
        assert m.headers["source.topic"] == topic.encode()
        assert m.headers["source.partition"] == b"0"
        assert m.key == b"99001"
        assert m.headers["detail"]
    # Good lines on both sides of the bad ones were applied.
    customer = RedisFeatureStore(redis_client, redis_prefix).customer("99001")
    assert customer is not None
    assert (customer.state.lines, customer.state.units, customer.state.invoices) == (4, 16, 2)
    counts = ", ".join(f"'{r}': 1" for r in sorted(BAD))
    assert f"rejected by reason: {{{counts}}}" in done.stderr


def test_three_partitions_give_the_same_features(env, redis_client, redis_prefix):
    """Lines spread over partitions arrive in another order; the features do not change."""
    from tests.reference import load_lines, spec_v1

    run_cli("publish", str(SAMPLE), "--partitions", "3", env=env)
    done = run_cli("consume", "--group", "p3", "--exit-at-end", env=env)
    assert "31,325 records: 31,325 applied" in done.stderr
    store = RedisFeatureStore(redis_client, redis_prefix)
    assert {store.stored_offset(env["INSIDERS_TOPIC"], p) >= 0 for p in range(3)} == {True}
    got = export_frame(store, store.watermark()).set_index("customer_id")
    want = spec_v1(load_lines(SAMPLE))
    got = got.loc[want.index]
    assert (got["revenue"] - want["revenue"]).abs().max() < 0.005
    assert (got["invoices"].to_numpy() == want["invoices"].to_numpy()).all()
    assert (pd.to_datetime(got["last_purchase_at"]) == want["last_purchase_at"]).all()
    assert (got["recency_days"] - want["recency_days"]).abs().max() < 1e-9


def test_a_second_consumer_on_the_same_prefix_is_refused(env, redis_client, redis_prefix):
    """One writer owns the model: a second consumer says who holds it, in one line."""
    import subprocess
    import sys
    import time

    first = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "consume", "--group", "one"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while redis_client.get(redis_prefix + "writer") is None:
            assert first.poll() is None and time.monotonic() < deadline, "first consumer died"
            time.sleep(0.2)
        second = subprocess.run(
            [sys.executable, "-m", "consumer.cli", "consume", "--group", "two"],
            env={**os.environ, **env, "INSIDERS_WRITER_WAIT": "1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1
        assert (
            f":{first.pid}:" in second.stderr
            and "owns the model under Redis prefix" in second.stderr
        )
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0, first.stderr.read() if first.stderr else ""
        assert redis_client.get(redis_prefix + "writer") is None  # released on the way out
    finally:
        if first.poll() is None:
            first.kill()
