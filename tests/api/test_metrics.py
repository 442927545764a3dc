"""GET /metrics over both stores: it parses with prometheus_client's own parsers, and its
figures equal a pandas count of the sample and the events read back through /events."""

from __future__ import annotations

import json
import re
from collections import Counter

import pandas as pd
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from consumer.memory import MemoryFeatureStore
from consumer.metrics import ConsumerMetrics
from consumer.pipeline import PipelineStats
from tests.api.conftest import all_events
from tests.conftest import REPO, SAMPLE
from tests.reference import load_lines, spec_v1

OURS = {
    "insiders_customers",
    "insiders_members",
    "insiders_model_version",
    "insiders_watermark_seconds",
    "insiders_events",
    "insiders_lines_ignored",
}


def samples(text: str, parse=text_string_to_metric_families) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of every sample of the text."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parse(text)
        for s in family.samples
    }


def family(found: dict[tuple, float], name: str) -> dict[tuple, float]:
    return {labels: value for (sample, labels), value in found.items() if sample == name}


def test_metrics_equal_an_independent_count_of_the_sample(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    names = {f.name for f in text_string_to_metric_families(response.text)}
    assert names == OURS  # no process or GC metrics: nothing of this replica's own
    found = samples(response.text)

    lines = load_lines(SAMPLE)  # the sample as pandas reads it, sharing no code with ours
    assert found[("insiders_customers", ())] == len(spec_v1(lines)) > 0
    latest = (lines["InvoiceDate"].max() - pd.Timestamp(0)) // pd.Timedelta(seconds=1)
    assert found[("insiders_watermark_seconds", ())] == latest

    customer = lines["CustomerID"].notna()
    product = lines["StockCode"].str.fullmatch(r"\d{5}[A-Za-z]{0,2}")
    ignored = {
        "no_customer": int((~customer).sum()),
        "not_a_product": int((customer & ~product).sum()),
        "zero_price": int((customer & product & (lines["UnitPrice"] == 0)).sum()),
    }
    assert family(found, "insiders_lines_ignored_total") == {
        (("reason", reason),): count for reason, count in ignored.items()
    }
    assert all(ignored.values())

    # Every event read back page by page, counted here.
    read = Counter((e["type"], e["reason"]["code"]) for e in all_events(client))
    events = family(found, "insiders_events_total")
    assert events == {(("reason", r), ("type", t)): n for (t, r), n in read.items()}
    entered = sum(n for (t, _), n in read.items() if t == "insider.entered")
    exited = sum(n for (t, _), n in read.items() if t == "insider.exited")
    assert found[("insiders_members", ())] == entered - exited > 0
    assert found[("insiders_model_version", ())] == client.get("/stats").json()["model_version"]
    assert found[("insiders_model_version", ())] > 0


def test_openmetrics_when_asked_for(client):
    plain = samples(client.get("/metrics").text)
    response = client.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert samples(response.text, openmetrics_families) == plain


def test_an_empty_store_has_no_watermark_and_no_counts():
    text = TestClient(create_app(MemoryFeatureStore())).get("/metrics").text
    found = samples(text)
    assert found == {
        ("insiders_customers", ()): 0,
        ("insiders_members", ()): 0,
        ("insiders_model_version", ()): 0,
    }
    assert {f.name for f in text_string_to_metric_families(text)} == OURS - {
        "insiders_watermark_seconds"
    }


def test_the_grafana_dashboard_queries_only_metrics_that_exist(client):
    """Every metric docs/grafana-dashboard.json names is one that /metrics or the consumer
    serves (the webhook worker's, to come in its own row, are not checked here)."""
    dashboard = (REPO / "docs" / "grafana-dashboard.json").read_text()
    json.loads(dashboard)  # valid JSON
    queried = set(re.findall(r"\binsiders_\w+", dashboard)) - set(
        re.findall(r"\binsiders_webhook\w*", dashboard)
    )
    consumer = ConsumerMetrics()
    stats = PipelineStats(records=1)
    stats.rejected["not_json"] += 1
    consumer.block_done(1, 0.1, stats, 0, {("invoices", 0): 0})
    served = {name for name, _ in samples(client.get("/metrics").text)} | {
        name for name, _ in samples(generate_latest(consumer.registry).decode())
    }
    assert queried and queried <= served, sorted(queried - served)
