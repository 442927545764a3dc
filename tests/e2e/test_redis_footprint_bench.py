"""The Redis footprint bench on the sample, on the real Redis: measured while it fills, each
N days of event time, and at the end."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
from datetime import date

from consumer.export import export_frame
from consumer.redis_store import RedisFeatureStore
from consumer.settings import ConsumerSettings
from tests.conftest import REDIS_URL, REPO, SAMPLE, delete_prefix, run_bench
from tests.reference import load_lines, spec_v1


def table_rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| ---")
    ]


def number(cell: str) -> int:
    return int(cell.strip("*").replace(",", ""))


def test_the_footprint_is_measured_every_n_days_while_filling(kafka_bootstrap):
    args = ["--data", str(SAMPLE), "--dedupe-days", "30", "--every-days", "60"]
    stdout = run_bench("redis_footprint.py", args, kafka_bootstrap, timeout=600)
    during, _, after = stdout.partition("\nRedis bytes per customer:")
    header, *rows = table_rows(during)
    assert header[:3] == ["event day", "lines", "customers"] and header[-1] == "all"
    assert len(rows) >= 3
    days = [date.fromisoformat(row[0]) for row in rows]
    assert all((later - earlier).days >= 60 for earlier, later in itertools.pairwise(days))
    lines = [number(row[1]) for row in rows]
    customers = [number(row[2]) for row in rows]
    assert lines == sorted(set(lines)) and customers == sorted(customers)
    for row in rows:  # the families add up to the whole (each rounded to a byte)
        families = [number(cell) for cell in row[3:-1]]
        assert abs(sum(families) - number(row[-1])) <= len(families)
    total = re.search(r"([\d,]+) lines, ([\d,]+) customers", after)
    assert total is not None, after
    assert lines[-1] < number(total[1]) and customers[-1] <= number(total[2])


def test_an_interrupted_fill_resumed_holds_every_customer(kafka_bootstrap, redis_client):
    """A fill stopped with Ctrl-C under ``--keep`` and finished by ``--resume`` skips the lines
    the first sitting applied and ends with the customers and features pandas finds in the
    file: nothing lost or counted twice across the sittings."""
    args = ["--data", str(SAMPLE), "--dedupe-days", "30", "--every-days", "60", "--keep"]
    env = {
        **os.environ,
        "INSIDERS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "INSIDERS_REDIS_URL": REDIS_URL,
    }
    first = subprocess.Popen(
        [sys.executable, "benches/redis_footprint.py", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As a background job gets it: SIGINT ignored, which the bench overrides.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    prefix = None
    try:
        assert first.stdout is not None
        for line in first.stdout:  # the first measure while filling: stop it there
            if line.startswith("| 20"):
                first.send_signal(signal.SIGINT)
                break
        _, stderr = first.communicate(timeout=120)
        kept = re.search(r"--resume (\S+)", stderr)
        assert kept is not None, stderr[-3000:]
        prefix = kept[1]
        # Named as long as the service's keys: a key's name is part of what it costs.
        assert len(prefix) == len(ConsumerSettings().redis_prefix)
        assert first.returncode == 1 and "redis_footprint: interrupted" in stderr, stderr[-3000:]
        held = redis_client.scard(prefix + "customers")
        want = spec_v1(load_lines(SAMPLE))
        assert 0 < held < len(want)  # stopped part of the way
        stored = int(redis_client.hget(prefix + "offsets", f"file:{SAMPLE.name}:0"))

        other = ["--data", str(SAMPLE), "--dedupe-days", "400", "--resume", prefix]
        refused = subprocess.run(
            [sys.executable, "benches/redis_footprint.py", *other],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 2
        assert refused.stderr.strip().endswith("it was filled with --dedupe-days 30")

        again = ["--data", str(SAMPLE), "--resume", prefix]
        after = run_bench("redis_footprint.py", again, kafka_bootstrap, timeout=600)
        rows = {row[0]: row[1] for row in table_rows(after)}
        assert number(rows["lines held before this sitting (skipped)"]) == stored + 1
        assert number(rows["lines refused as `beyond_retention`, this sitting"]) == 0
        total = re.search(r"([\d,]+) lines, ([\d,]+) customers", after)
        assert total is not None, after
        assert number(total[2]) == len(want)
        store = RedisFeatureStore(redis_client, prefix)
        got = export_frame(store, store.watermark()).set_index("customer_id").loc[want.index]
        assert (got["revenue"] - want["revenue"]).abs().max() < 0.005
        assert (got["invoices"].to_numpy() == want["invoices"].to_numpy()).all()
        assert (got["lines"].to_numpy() == want["lines"].to_numpy()).all()
    finally:
        first.kill()
        if prefix is not None:
            delete_prefix(redis_client, prefix)
