"""GET /metrics over both stores: the Prometheus text agrees with the store and /stats."""

from __future__ import annotations

import re

SAMPLE_LINE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$")


def parse(text: str) -> dict[tuple[str, str], float]:
    samples: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = SAMPLE_LINE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        name, labels, value = match.groups()
        samples[(name, labels or "")] = float(value)
    return samples


def family(samples: dict[tuple[str, str], float], wanted: str) -> dict[str, float]:
    return {labels: value for (name, labels), value in samples.items() if name == wanted}


def test_metrics_agree_with_the_store(client, store):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse(response.text)
    stats = client.get("/stats").json()
    assert samples[("insiders_customers", "")] == stats["customers"] == store.customer_count()
    assert samples[("insiders_members", "")] == stats["insiders"]
    assert samples[("insiders_model_version", "")] == stats["model_version"] > 0
    assert samples[("insiders_watermark_seconds", "")] == store.watermark()
    events = family(samples, "insiders_events_total")
    expected = {
        f'reason="{key.split(":")[1]}",type="{key.split(":")[0]}"': count
        for key, count in stats["events"].items()
    }
    assert events == expected and sum(events.values()) > 0
    ignored = family(samples, "insiders_lines_ignored_total")
    assert ignored == {f'reason="{k}"': v for k, v in store.ignored_counts().items()}
    assert ignored  # the sample has lines without a customer id
