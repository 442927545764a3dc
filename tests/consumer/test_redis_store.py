"""What only the Redis store has: applied event ids in buckets, their count fixed per prefix."""

from __future__ import annotations

import zlib

from consumer.redis_store import RedisFeatureStore
from tests.contract.test_feature_store import DAY, LINES, line


def seen_keys(client, prefix: str) -> dict[str, str]:
    """Type of every `seen*` key under the prefix."""
    return {
        key.decode()[len(prefix) :]: client.type(key).decode()
        for key in client.scan_iter(match=f"{prefix}seen*")
    }


def test_event_ids_go_to_their_crc32_bucket(redis_client, redis_prefix):
    store = RedisFeatureStore(redis_client, redis_prefix, seen_buckets=16)
    store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    for line_ in LINES:
        bucket = zlib.crc32(line_.event_id.encode()) % 16
        assert redis_client.hexists(f"{redis_prefix}seen:{bucket}", line_.event_id)
    kinds = seen_keys(redis_client, redis_prefix)
    assert kinds.pop("seen_buckets") == "string"
    assert "seen" not in kinds and set(kinds.values()) == {"hash"}
    assert sum(redis_client.hlen(f"{redis_prefix}{k}") for k in kinds) == len(LINES)


def test_the_first_writers_bucket_count_stays(redis_client, redis_prefix):
    RedisFeatureStore(redis_client, redis_prefix, seen_buckets=16).apply(
        "t", 0, list(enumerate(LINES)), len(LINES) - 1
    )
    # A later consumer configured differently still finds every id: the prefix keeps 16.
    later = RedisFeatureStore(redis_client, redis_prefix, seen_buckets=4096)
    result = later.apply("u", 0, list(enumerate(LINES)), len(LINES) - 1)
    assert (result.applied, result.duplicates) == (0, len(LINES))
    assert redis_client.get(f"{redis_prefix}seen_buckets") == b"16"


def test_a_prefix_written_before_buckets_keeps_its_set(redis_client, redis_prefix):
    # What an earlier version left: ids in one set, no bucket count.
    redis_client.sadd(f"{redis_prefix}seen", "a:0", "a:1")
    store = RedisFeatureStore(redis_client, redis_prefix)
    result = store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    assert (result.applied, result.duplicates) == (len(LINES) - 2, 2)
    new = line("z:0", "z", "9", 1, 1_000_000, 20 * DAY)
    assert store.apply("t", 0, [(100, new)], 100).applied == 1
    assert redis_client.sismember(f"{redis_prefix}seen", "z:0")
    assert set(seen_keys(redis_client, redis_prefix)) == {"seen", "seen_buckets"}
