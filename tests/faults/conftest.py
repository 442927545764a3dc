"""Fixtures of the fault tests: throwaway Redis servers that a test may kill, freeze or restart
without touching the shared one that `scripts/services` runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.redis_server import RedisServer


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A started redis-server of this test's own, without persistence; stopped afterwards."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def throwaway_redis_aof(tmp_path: Path) -> Iterator[RedisServer]:
    """The same with an append-only file, so ``restart()`` after ``kill()`` reloads the data."""
    server = RedisServer(tmp_path / "redis-aof", appendonly=True).start()
    try:
        yield server
    finally:
        server.stop()


from tests.faults.broker_fixture import kafka_broker  # noqa: E402, F401  (offered to every test)
