"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import REDIS_URL


@pytest.fixture
def env(kafka_bootstrap, redis_prefix):
    tag = uuid.uuid4().hex[:8]
    return {
        "INSIDERS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "INSIDERS_REDIS_URL": REDIS_URL,
        "INSIDERS_REDIS_PREFIX": redis_prefix,
        "INSIDERS_EVENTS_TOPIC": f"insiders.events-{tag}",
        "INSIDERS_TOPIC": f"invoices-{tag}",
    }
