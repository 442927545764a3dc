"""On the real Kafka and Redis: a backfill by the real `insiders consume` leaves the report in
Redis, built from the consumer's roster, and the API serves it without reading a customer."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
from fastapi.testclient import TestClient

from api import dashboard
from api.app import create_app
from api.saved_report import SavedReport
from consumer.ports import Customer
from consumer.redis_store import RedisFeatureStore
from tests.conftest import SAMPLE
from tests.e2e.kafka_tools import run_cli


class Counted(RedisFeatureStore):
    full_reads = 0

    def customers(self) -> Iterator[Customer]:
        self.full_reads += 1
        yield from super().customers()


def test_a_backfill_leaves_the_report_the_api_would_build(env, redis_client, redis_prefix):
    run_cli("publish", str(SAMPLE), env=env)
    run_cli("consume", "--group", "g", "--exit-at-end", env=env)
    store = Counted(redis_client, redis_prefix)
    saved = store.saved_report()
    assert saved is not None
    blob, revision = saved
    assert revision == store.revision()  # the last one, saved when the input ended
    doc = SavedReport.model_validate_json(blob)
    # The API's own build from every customer in Redis, in another order than the roster's.
    here = dashboard.build(store, store.watermark())
    assert doc.report == here.report and doc.shares == here.shares
    assert doc.report.customers == 377

    store.full_reads = 0
    client = TestClient(create_app(store))
    answer = client.get("/report")
    assert answer.status_code == 200
    assert answer.json() == orjson.loads(doc.report.model_dump_json())
    assert client.get("/dashboard").status_code == 200
    assert store.full_reads == 0
