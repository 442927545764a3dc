"""The writer lease on real Redis: a store that is not as its owner left it refuses the write.

Each case is what an owner meets after a pause (another consumer claimed the prefix), after
Redis lost its data (no epoch), or after a rollback to an older save (the write count is
behind). In each the write is refused before it changes anything.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest
import redis
from redis.client import Pipeline

from consumer.redis_store import RedisFeatureStore
from consumer.subscriptions import RedisSubscriptionStore, Subscription
from segmenter.errors import StoreDiverged
from segmenter.segmentation import StepResult
from tests.conftest import REDIS_URL
from tests.consumer.test_redis_store import LINES


def offsets(store: RedisFeatureStore) -> dict:
    return store.client.hgetall(store.prefix + "offsets")


def test_a_paused_owner_is_fenced_out_by_the_next_claim(redis_client, redis_prefix):
    first = RedisFeatureStore(redis_client, redis_prefix)
    first.claim("host:1:aaaa", ttl=30, wait=0)
    first.apply("t", 0, list(enumerate(LINES[:2])), 1)
    # The first owner pauses past its lock's life; another consumer takes the prefix.
    redis_client.delete(redis_prefix + "writer")
    second = RedisFeatureStore(redis_client, redis_prefix)
    second.claim("host:2:bbbb", ttl=30, wait=0)
    before = offsets(first)

    with pytest.raises(StoreDiverged) as refused:
        first.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    assert refused.value.holder == "host:2:bbbb"
    with pytest.raises(StoreDiverged):
        first.commit_step(StepResult(), b"stale model")
    with pytest.raises(StoreDiverged):
        first.mark_published("1-0")
    with pytest.raises(StoreDiverged):
        first.save_report(b"a stale owner's report")
    assert offsets(first) == before
    assert redis_client.get(redis_prefix + "model") is None
    assert first.saved_report() is None
    # The new owner writes on.
    assert second.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1).applied == len(LINES) - 2


def test_each_claim_draws_a_new_fencing_token(redis_client, redis_prefix):
    store = RedisFeatureStore(redis_client, redis_prefix)
    first = store.claim("host:1:aaaa", ttl=30, wait=0).value
    store.release()
    second = store.claim("host:1:aaaa", ttl=30, wait=0).value
    assert first.split("#")[0] == second.split("#")[0] == "host:1:aaaa"
    assert int(second.split("#")[1]) == int(first.split("#")[1]) + 1


def test_a_claimed_lock_is_refused_to_another_owner_in_time(redis_client, redis_prefix):
    RedisFeatureStore(redis_client, redis_prefix).claim("host:1:aaaa", ttl=30, wait=0)
    with pytest.raises(StoreDiverged) as refused:
        RedisFeatureStore(redis_client, redis_prefix).claim("host:2:bbbb", ttl=30, wait=0.6)
    assert refused.value.holder == "host:1:aaaa"


def test_a_store_that_lost_its_data_refuses_the_write(redis_client, redis_prefix):
    store = RedisFeatureStore(redis_client, redis_prefix)
    store.claim("host:1:aaaa", ttl=30, wait=0)
    store.apply("t", 0, list(enumerate(LINES[:2])), 1)
    for key in redis_client.scan_iter(match=redis_prefix + "*"):
        redis_client.delete(key)  # what a restart without persistence leaves

    with pytest.raises(StoreDiverged) as refused:
        store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    assert refused.value.holder is None  # nobody else: the owner may claim again and rebuild
    assert "holds no state" in str(refused.value)
    assert list(redis_client.scan_iter(match=redis_prefix + "*")) == []
    # Claiming again starts a new epoch, and writes go on from nothing.
    store.claim("host:1:aaaa", ttl=30, wait=0)
    assert store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1).applied == len(LINES)


def test_a_store_rolled_back_to_an_older_save_refuses_the_write(redis_client, redis_prefix):
    store = RedisFeatureStore(redis_client, redis_prefix)
    store.claim("host:1:aaaa", ttl=30, wait=0)
    store.apply("t", 0, list(enumerate(LINES[:2])), 1)
    store.commit_step(StepResult(), b"model after block 1")
    redis_client.decr(redis_prefix + "writes")  # the last write is not in the save

    with pytest.raises(StoreDiverged) as refused:
        store.commit_step(StepResult(), b"model after block 2")
    assert "not the one this consumer last wrote" in str(refused.value)
    assert redis_client.get(redis_prefix + "model") == b"model after block 1"


class ConnectionKiller:
    """Kills, from another connection, every connection of one named client: what a Redis
    that dies or drops the client does, at the moment the test picks."""

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.admin = redis.Redis.from_url(url)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(REDIS_URL, client_name=self.name)

    def __call__(self) -> None:
        ids = [c["id"] for c in self.admin.client_list() if c.get("name") == self.name]
        assert ids, "the client under test has a connection to kill"
        for client_id in ids:
            self.admin.client_kill_filter(_id=client_id)


@pytest.fixture
def killer() -> ConnectionKiller:
    return ConnectionKiller(REDIS_URL, f"under-test-{uuid.uuid4().hex[:8]}")


def kill_after_watch(monkeypatch: pytest.MonkeyPatch, kill: ConnectionKiller) -> None:
    """The next WATCH lands, then the connection that sent it is killed."""
    watch = Pipeline.watch

    def watch_then_die(self: Pipeline, *names: Any) -> Any:
        result = watch(self, *names)
        monkeypatch.setattr(Pipeline, "watch", watch)
        kill()
        return result

    monkeypatch.setattr(Pipeline, "watch", watch_then_die)


def test_a_connection_lost_after_the_watch_is_an_outage_not_another_writer(
    redis_prefix, killer, monkeypatch
):
    # redis-py reports this as WatchError, which the service took for a conflict it does not
    # retry: a Redis killed at this point stopped the consumer (seen in CI).
    store = RedisFeatureStore(killer.client(), redis_prefix)
    store.claim("host:1:aaaa", ttl=30, wait=0)
    kill_after_watch(monkeypatch, killer)
    with pytest.raises(redis.ConnectionError):
        store.commit_step(StepResult(), b"model")
    assert store.client.get(redis_prefix + "model") is None
    # Once Redis answers, the owner's next write goes through: its lease still holds.
    store.commit_step(StepResult(), b"model")
    assert store.client.get(redis_prefix + "model") == b"model"


def test_a_connection_lost_at_exec_is_an_outage_not_another_writer(redis_prefix, killer):
    store = RedisFeatureStore(killer.client(), redis_prefix)
    store.claim("host:1:aaaa", ttl=30, wait=0)

    def build(pipe: Any) -> None:
        pipe.set(redis_prefix + "model", b"lost")
        killer()  # the commands are queued here; EXEC goes out on a dead connection

    with pytest.raises(redis.ConnectionError):
        store._transaction(build)
    assert store.client.get(redis_prefix + "model") is None


def test_another_writer_inside_the_watch_is_still_a_conflict(redis_client, redis_prefix):
    store = RedisFeatureStore(redis_client, redis_prefix)
    store.claim("host:1:aaaa", ttl=30, wait=0)

    def build(pipe: Any) -> None:
        pipe.set(redis_prefix + "model", b"stale")
        redis_client.incr(redis_prefix + "writes")  # a write by someone else, after the check

    with pytest.raises(StoreDiverged) as refused:
        store._transaction(build)
    assert "not the one this consumer last wrote" in str(refused.value)
    assert redis_client.get(redis_prefix + "model") is None


def test_a_subscription_swap_that_loses_its_connection_is_an_outage(
    redis_prefix, killer, monkeypatch
):
    subscriptions = RedisSubscriptionStore(killer.client(), redis_prefix)
    old = subscriptions.add(Subscription("sub_1", "https://example.com/hook", "whsec_x"))
    kill_after_watch(monkeypatch, killer)
    with pytest.raises(redis.ConnectionError):  # not False, "someone changed it"
        subscriptions.swap(old, replace(old, attempts=1))
    assert subscriptions.get("sub_1") == old
