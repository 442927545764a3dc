"""The API over a model checkpoint it cannot use: a clear 503, and nothing in it runs."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from consumer.redis_store import RedisFeatureStore
from segmenter.lines import InvoiceLine
from tests.hostile import assert_the_payload_is_live, hostile_pickle

DAY = 86_400
LINES = [
    InvoiceLine("a:0", "a", "85123A", 6, 10 * DAY, 2_550_000, "12347"),
    InvoiceLine("b:0", "b", "85123A", 2, 11 * DAY, 3_390_000, "12348"),
]
# Every route that reads the model; /insiders, /events and /healthz do not.
MODEL_ROUTES = ["/stats", "/customers/12347", "/report", "/metrics", "/dashboard"]


@pytest.fixture
def planted(redis_client, redis_prefix, tmp_path):
    """A store with customers, and a pickle at ``<prefix>model`` that would create a file."""
    assert_the_payload_is_live(tmp_path)
    store = RedisFeatureStore(redis_client, redis_prefix)
    store.apply("invoices", 0, list(enumerate(LINES)), len(LINES) - 1)
    marker = tmp_path / "pwned"
    redis_client.set(redis_prefix + "model", hostile_pickle(marker))
    return store, marker


@pytest.mark.parametrize("route", MODEL_ROUTES)
def test_a_pickle_at_the_model_key_is_a_503_and_never_runs(planted, route):
    store, marker = planted
    answer = TestClient(create_app(store)).get(route)
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["detail"].startswith(
        "the model checkpoint in the redis store is unusable: not an Insiders checkpoint "
        "(not JSON: b'\\x80"
    )
    assert not marker.exists()


def test_routes_that_do_not_need_the_model_still_answer(planted):
    store, marker = planted
    client = TestClient(create_app(store))
    assert client.get("/insiders").status_code == 200
    assert client.get("/events").status_code == 200
    assert client.get("/customers/12347/history").status_code == 200
    assert client.get("/healthz").json()["status"] == "ok"
    assert not marker.exists()


def test_a_checkpoint_of_another_version_names_what_is_wrong(redis_client, redis_prefix):
    store = RedisFeatureStore(redis_client, redis_prefix)
    redis_client.set(
        redis_prefix + "model", orjson.dumps({"format": "insiders.checkpoint", "version": 9})
    )
    answer = TestClient(create_app(store, store_name="Redis at redis://x:6379/0")).get("/stats")
    assert answer.status_code == 503
    assert answer.json() == {
        "detail": "the model checkpoint in Redis at redis://x:6379/0 is unusable: Insiders "
        "checkpoint version 9: this release reads versions 1 and 2"
    }
