"""The `kafka_broker` fixture: a throwaway broker per test (see kafka_broker.py).

Import it into tests/faults/conftest.py to offer it to every fault test::

    from tests.faults.broker_fixture import kafka_broker  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.kafka_broker import KafkaBroker


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A started single-node broker of this test's own; no JVM is left behind."""
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    try:
        yield broker
    finally:
        broker.close()
