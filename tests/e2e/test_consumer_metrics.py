"""`insiders consume --metrics-port` on real Kafka and Redis: the figures a scrape gives
equal what the test fed in, counted by the test (and by Kafka), and parse with
prometheus_client's own parser; the lag of the Kafka source; a port in use."""

from __future__ import annotations

import gzip
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from consumer.kafka_io import KafkaInvoiceSource, ensure_topics
from tests.conftest import SAMPLE, unique
from tests.e2e.kafka_tools import read_topic, run_cli

SERVING = re.compile(r"serving the consumer's metrics on (http://\S+)")
# Records no consumer can apply, by the reason each is dead-lettered with.
POISON: dict[str, list[bytes | None]] = {
    "not_json": [b"\xff\xfe{", b"{oops"],
    "tombstone": [None],
    "unknown_layout": [b'{"InvoiceNo": "536365"}'],
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def family(found: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (sample, labels), value in found.items() if sample == name}


def served_at(log: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """The URL the consumer's log line gives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = SERVING.search(log.read_text())
        if match:
            return match.group(1)
        assert process.poll() is None, f"consume exited early:\n{log.read_text()}"
        time.sleep(0.2)
    raise AssertionError(f"no line saying where metrics are served:\n{log.read_text()}")


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def test_the_consumer_reports_what_it_was_fed(env, kafka_bootstrap, tmp_path):
    topic = env["INSIDERS_TOPIC"]
    with gzip.open(SAMPLE, "rt") as rows:
        sample_lines = sum(1 for _ in rows) - 1  # the header
    run_cli("publish", str(SAMPLE), "--partitions", "2", env=env)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for value in (v for values in POISON.values() for v in values):
        producer.send(topic, key=b"99999", value=value)
    producer.flush()
    producer.close()
    ends = end_offsets(kafka_bootstrap, topic)
    fed = sample_lines + sum(len(v) for v in POISON.values())
    assert sorted(ends) == [0, 1] and sum(ends.values()) == fed

    log = tmp_path / "consume.log"
    started = time.time()
    with log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "consumer.cli", "consume", "--metrics-port", "0"],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        url = served_at(log, process)
        assert url.startswith("http://127.0.0.1:")  # loopback unless told otherwise
        deadline = time.monotonic() + 300
        while True:
            found = scrape(url)
            lag = family(found, "insiders_consumer_lag")
            read = found.get(("insiders_consumer_lines_total", ()))
            if read == fed and len(lag) == 2 and not any(lag.values()):
                break
            assert time.monotonic() < deadline, f"not caught up: {found}"
            assert process.poll() is None, log.read_text()
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0, log.read_text()
    with pytest.raises(OSError):  # the server went with the consumer
        scrape(url)

    assert lag == {(("partition", str(p)), ("topic", topic)): 0 for p in ends}
    assert found[("insiders_consumer_lines_applied_total", ())] == sample_lines
    dead = family(found, "insiders_consumer_dead_letters_total")
    assert dead == {(("reason", r),): len(v) for r, v in POISON.items()}
    on_topic = Counter(
        m.headers["reason"].decode() for m in read_topic(kafka_bootstrap, f"{topic}.dlq")
    )
    assert dead == {(("reason", r),): n for r, n in on_topic.items()}
    assert found[("insiders_consumer_recoveries_total", ())] == 0
    assert found[("insiders_consumer_events_published_total", ())] > 0
    committed = found[("insiders_consumer_last_commit_timestamp_seconds", ())]
    assert started < committed < time.time()

    # A block ends at each multiple of the block size (5,000) and, live, whenever the
    # consumer catches up: at least this many blocks, each timed once.
    least = sum(math.ceil(end / 5000) for end in ends.values())
    blocks = found[("insiders_consumer_block_seconds_count", ())]
    assert blocks >= least
    buckets = family(found, "insiders_consumer_block_seconds_bucket")
    assert buckets[(("le", "+Inf"),)] == blocks
    assert found[("insiders_consumer_block_seconds_sum", ())] > 0


def test_lag_is_the_records_not_yet_committed(kafka_bootstrap):
    topic = unique("lag")
    ensure_topics(kafka_bootstrap, [topic])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(10):
        producer.send(topic, value=str(i).encode())
    producer.flush()
    producer.close()
    # The store holds offsets up to 1: reading starts at 2. Blocks end at multiples of 4.
    source = KafkaInvoiceSource(
        kafka_bootstrap, topic, unique("group"), 4, exit_at_end=True, start_offset=lambda t, p: 2
    )
    try:
        blocks = source.blocks()
        first = next(blocks)
        assert [r.offset for r in first] == [2, 3]
        assert source.lag() == {(topic, 0): 10 - 2}
        source.commit(first)
        assert source.lag() == {(topic, 0): 10 - 4}
        second = next(blocks)
        source.commit(second)
        assert source.lag() == {(topic, 0): 10 - 8}
        source.commit(next(blocks))
        assert source.lag() == {(topic, 0): 0}
    finally:
        source.close()


def test_a_port_in_use_is_one_line(env, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "consumer.cli", "consume"],
            env={**os.environ, **env, "INSIDERS_METRICS_PORT": f"127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"insiders: error: cannot serve the consumer's metrics on 127.0.0.1:{port}"
    )
    assert "Address already in use" in last
