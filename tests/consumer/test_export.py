"""`insiders export` writes one row per customer with the documented columns, in CSV and Parquet."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink
from consumer.pipeline import Pipeline
from segmenter.model import SegmentModel
from tests.conftest import REDIS_URL, SAMPLE
from tests.reference import load_lines, spec_v1

# Spec v2: spec v1's columns, with kept_value (revenue - returned_value) after the returns.
SPEC_V2 = [
    "revenue",
    "invoices",
    "lines",
    "units",
    "returned_value",
    "returned_units",
    "kept_value",
    "first_purchase_at",
    "last_purchase_at",
    "recency_days",
    "frequency",
    "avg_ticket",
]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_from_redis(redis_store, redis_prefix, tmp_path, fmt):
    pipeline = Pipeline(redis_store, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    out = tmp_path / f"customers.{fmt}"
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "export", "--out", str(out), "--format", fmt],
        env={**os.environ, "INSIDERS_REDIS_URL": REDIS_URL, "INSIDERS_REDIS_PREFIX": redis_prefix},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    frame = (
        pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out, dtype={"customer_id": str})
    )
    assert list(frame.columns) == ["customer_id", *SPEC_V2, "segment", "insider"]
    reference = spec_v1(load_lines(SAMPLE))
    assert sorted(frame["customer_id"]) == sorted(reference.index)
    frame = frame.set_index("customer_id").loc[reference.index]
    assert (frame["revenue"] - reference["revenue"]).abs().max() < 0.005
    kept = reference["revenue"] - reference["returned_value"]
    assert (frame["kept_value"] - kept).abs().max() < 0.005
    assert (reference["returned_value"] > 0).any()  # the sample has returns: kept != revenue
    assert (frame["invoices"].to_numpy() == reference["invoices"].to_numpy()).all()
    assert frame["insider"].sum() == redis_store.insiders(0, 0)[1]
    statuses = {c.customer_id: c.status.segment for c in redis_store.customers()}
    exported = {cid: None if pd.isna(v) else int(v) for cid, v in frame["segment"].items()}
    assert exported == statuses
    assert f"wrote {len(reference):,} customers" in done.stdout


def test_report_from_redis(redis_store, redis_prefix, tmp_path):
    """`insiders report` writes the live service's business report from Redis."""
    pipeline = Pipeline(redis_store, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    out = tmp_path / "report.md"
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "report", "--out", str(out)],
        env={**os.environ, "INSIDERS_REDIS_URL": REDIS_URL, "INSIDERS_REDIS_PREFIX": redis_prefix},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    reference = spec_v1(load_lines(SAMPLE))
    insiders = {c.customer_id for c in redis_store.customers() if c.status.insider}
    share = reference.loc[sorted(insiders), "revenue"].sum() / reference["revenue"].sum()
    assert f"**{len(insiders):,} Insiders**" in text
    assert f"of {len(reference):,} customers" in text and f"**{share:.1%}**" in text
    assert f"as of {reference['last_purchase_at'].max():%Y-%m-%d %H:%M}" in text
