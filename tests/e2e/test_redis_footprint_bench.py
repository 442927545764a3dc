"""The Redis footprint bench on the sample, on the real Redis: measured while it fills, each
N days of event time, and at the end."""

from __future__ import annotations

import itertools
import re
from datetime import date

from tests.conftest import SAMPLE, run_bench


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
