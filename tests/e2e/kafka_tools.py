"""Helpers for end-to-end tests: run the real CLI, read a topic back from the broker."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from kafka import KafkaConsumer
from kafka.structs import TopicPartition


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run ``insiders ARGS`` as a user would, failing with its output if it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"insiders {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@dataclass
class Message:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def read_topic(bootstrap: str, topic: str) -> list[Message]:
    """Every message of ``topic`` present now, in partition then offset order."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Message] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for _tp, messages in consumer.poll(timeout_ms=1000).items():
                out.extend(
                    Message(m.partition, m.offset, m.key, m.value, dict(m.headers or []))
                    for m in messages
                )
        return sorted(out, key=lambda m: (m.partition, m.offset))
    finally:
        consumer.close()
