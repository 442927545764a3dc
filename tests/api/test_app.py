"""The HTTP API over both feature stores, filled by the real pipeline from the shipped sample."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.api.conftest import all_events
from tests.conftest import SAMPLE


def test_customer_status_has_features_segment_and_insider_flag(client, store):
    insider = next(c for c in store.customers() if c.status.insider)
    body = client.get(f"/customers/{insider.customer_id}").json()
    # Hysteresis: an Insider may sit outside segment 1 within the exit band or the dwell time.
    assert body["insider"] is True and body["segment"] == insider.status.segment
    assert body["insider_since"] is not None and body["model_version"] > 0
    assert body["features"]["revenue"] == insider.state.revenue_micros / 1e6
    assert body["features"]["invoices"] == insider.state.invoices
    # "now" is the event-time watermark: the latest invoice date in the file, read as UTC.
    latest = pd.read_csv(SAMPLE, usecols=["InvoiceDate"], parse_dates=["InvoiceDate"]).max()
    assert body["as_of"] == latest.iloc[0].isoformat() + "+00:00"


@pytest.mark.parametrize(
    ("route", "detail"),
    [
        ("/customers/{}", "customer 424242 not found (no purchases seen)"),
        ("/customers/{}/history", "customer 424242 not found"),
    ],
)
def test_unknown_customer_is_a_404_with_a_json_body(client, route, detail):
    response = client.get(route.format("424242"))
    assert response.status_code == 404
    assert response.json() == {"detail": detail}


@pytest.mark.parametrize("route", ["/customers/{}", "/customers/{}/history"])
@pytest.mark.parametrize("bad", ["not%20an%20id", "x" * 65, "a;b"])
def test_malformed_customer_id_is_a_422(client, route, bad):
    assert client.get(route.format(bad)).status_code == 422


@pytest.mark.parametrize("bad", ["abc", "1-2-3", "-1", "9" * 21, "1 "])
def test_malformed_event_cursor_is_a_422_naming_it(client, bad):
    """Both stores: a cursor neither of them could have issued is the client's error."""
    for request in (
        {"url": "/events", "params": {"after": bad}},
        {"url": "/events/stream", "params": {"after": bad}},
        {"url": "/events/stream", "headers": {"Last-Event-ID": bad}},
    ):
        response = client.get(**request)
        assert response.status_code == 422, (request, response.text)
        assert response.json()["detail"][0]["loc"][-1] in ("after", "last-event-id")
    assert client.get("/events", params={"after": ""}).json() == client.get("/events").json()


def test_insiders_are_paged_without_gaps_or_repeats(client, store):
    want = {c.customer_id for c in store.customers() if c.status.insider}
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = client.get("/insiders", params={"offset": offset, "limit": 7}).json()
        assert page["total"] == len(want)
        seen.extend(item["customer_id"] for item in page["items"])
        assert all(item["insider"] for item in page["items"])
        offset = page["next_offset"]
    assert len(seen) == len(set(seen)) and set(seen) == want


def test_events_are_paged_by_cursor(client, store):
    everything = store.events(None, 100_000).events
    got = all_events(client, limit=10)
    assert got == everything and len(got) > 10  # several pages, served as stored
    assert got[0]["at"].endswith("+00:00")
    first = got[0]
    assert set(first) == {
        "event_id",
        "type",
        "customer_id",
        "at",
        "reason",
        "features",
        "segment",
        "model_version",
    }
    assert set(first["reason"]) == {"code", "text"}


def test_health_and_docs(client, store):
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "store": store.backend, "customers": 377}
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/customers/{customer_id}", "/insiders", "/events", "/healthz"} <= set(paths)
