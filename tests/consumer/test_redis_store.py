"""What only the Redis store has: applied event ids in buckets that split as they grow, and
how it forgets them past the retention (the contract tests check what both stores do)."""

from __future__ import annotations

import re
import zlib

import pytest
import redis

from consumer.ports import Retention
from consumer.redis_store import RedisFeatureStore
from consumer.service import bucket_warning
from segmenter.errors import CheckpointError, StoreDiverged
from segmenter.lines import fingerprint
from tests.contract.test_feature_store import DAY, LINES, line

P32 = 1 << 32


def seen_keys(client, prefix: str) -> dict[str, str]:
    """Type of every `seen*` key under the prefix."""
    return {
        key.decode()[len(prefix) :]: client.type(key).decode()
        for key in client.scan_iter(match=f"{prefix}seen*", count=10_000)
    }


def test_event_ids_go_to_their_crc32_bucket(redis_client, redis_prefix):
    store = RedisFeatureStore(redis_client, redis_prefix, seen_buckets=16)
    store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    for line_ in LINES:
        bucket = zlib.crc32(line_.event_id.encode()) % 16
        score = redis_client.zscore(f"{redis_prefix}seen:{bucket}", line_.event_id)
        assert score is not None
        assert divmod(int(score), P32) == (line_.invoice_ts // DAY, fingerprint(line_))
    kinds = seen_keys(redis_client, redis_prefix)
    assert kinds.pop("seen_buckets") == "hash"
    assert "seen" not in kinds and set(kinds.values()) == {"zset"}
    assert sum(redis_client.zcard(f"{redis_prefix}{k}") for k in kinds) == len(LINES)
    assert layout(redis_client, redis_prefix) == {"n": 16, "split": 0, "held": len(LINES)}


def test_the_first_writers_bucket_count_stays(redis_client, redis_prefix):
    RedisFeatureStore(redis_client, redis_prefix, seen_buckets=16).apply(
        "t", 0, list(enumerate(LINES)), len(LINES) - 1
    )
    # A later consumer configured differently still finds every id: the prefix keeps 16.
    later = RedisFeatureStore(redis_client, redis_prefix, seen_buckets=4096)
    result = later.apply("u", 0, list(enumerate(LINES)), len(LINES) - 1)
    assert (result.applied, result.duplicates) == (0, len(LINES))
    assert layout(redis_client, redis_prefix)["n"] == 16


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


# Retention: applied ids and invoice numbers past it are forgotten, a bounded amount a call.


def bucket_sizes(client, prefix: str) -> dict[str, int]:
    return {
        key.decode(): client.zcard(key)
        for key in client.scan_iter(match=f"{prefix}seen:*", count=10_000)
    }


def memory_of(client, prefix: str, pattern: str) -> int:
    return sum(
        client.memory_usage(key, samples=0) or 0
        for key in client.scan_iter(match=f"{prefix}{pattern}", count=10_000)
    )


def days_of(d0: int, days: range, customers: int = 20) -> list:
    """One purchase line per customer per day, each in an invoice of its own."""
    return [
        line(f"{d}-{k}:0", f"{d}-{k}", f"k{k}", 1, 1_000_000, d0 + d * DAY + k)
        for d in days
        for k in range(customers)
    ]


def test_ids_are_forgotten_once_the_watermark_moves_past_the_retention(redis_client, redis_prefix):
    store = RedisFeatureStore(
        redis_client, redis_prefix, seen_buckets=16, retention=Retention(dedupe_days=30)
    )
    d0 = 15_000 * DAY
    first = days_of(d0, range(10))
    store.apply("t", 0, list(enumerate(first)), len(first) - 1)
    assert sum(bucket_sizes(redis_client, redis_prefix).values()) == 200
    seen_before = memory_of(redis_client, redis_prefix, "seen:*")
    invoices_before = memory_of(redis_client, redis_prefix, "ci:*")
    assert sum(redis_client.zcard(f"{redis_prefix}ci:k{k}") for k in range(20)) == 200
    # Each id is scored with its day: day * 2^32 + fingerprint.
    score = redis_client.zscore(f"{redis_prefix}seen:{zlib.crc32(b'3-4:0') % 16}", "3-4:0")
    assert score is not None and int(score) // P32 == 15_003

    # 45 days on, the cutoff (day 15) is past the first 10 days: a pass over 16 buckets and
    # 20 customers fits one call's budget, so they are all forgotten now.
    later = days_of(d0, range(45, 46))
    store.apply("t", 0, [(200 + i, ln) for i, ln in enumerate(later)], 219)
    assert sum(bucket_sizes(redis_client, redis_prefix).values()) == 20
    assert memory_of(redis_client, redis_prefix, "seen:*") < seen_before / 2
    assert sum(redis_client.zcard(f"{redis_prefix}ci:k{k}") for k in range(20)) == 20
    assert memory_of(redis_client, redis_prefix, "ci:*") < invoices_before * 0.6
    state = redis_client.hgetall(f"{redis_prefix}retention")
    assert state == {b"cutoff": b"15015", b"oldest": b"15045"}  # no pass under way
    # The features are untouched: each customer still counts 11 invoices.
    assert {c.state.invoices for c in store.load([f"k{k}" for k in range(20)])} == {11}


def test_each_call_forgets_a_bounded_amount(redis_client, redis_prefix):
    store = RedisFeatureStore(
        redis_client, redis_prefix, seen_buckets=8192, retention=Retention(dedupe_days=20)
    )
    d0 = 15_000 * DAY
    old = days_of(d0, range(10), customers=1000)  # 10,000 ids in 8,192 buckets
    for start in range(0, len(old), 5000):
        block = old[start : start + 5000]
        store.apply("t", 0, [(start + i, ln) for i, ln in enumerate(block)], start + 4999)
    total = sum(bucket_sizes(redis_client, redis_prefix).values())
    new = line("n:0", "n", "n", 1, 1, d0 + 100 * DAY)
    store.apply("t", 0, [(10_000, new)], 10_000)  # all 10,000 are past the cutoff now
    after_one = sum(bucket_sizes(redis_client, redis_prefix).values())
    # A call with one line visits 129 of the 8,192 buckets: it forgets about 160 ids.
    assert total == 10_000 and 10_000 - 300 < after_one < 10_000 - 100
    for _ in range(80):
        store.apply("t", 0, [], 10_000)
    assert sum(bucket_sizes(redis_client, redis_prefix).values()) == 1


def make_legacy(client, prefix: str) -> None:
    """Turn a prefix into what the release before retention wrote: buckets as hashes of bare
    fingerprints, invoice numbers in plain sets, no retention state."""
    for key in client.scan_iter(match=f"{prefix}seen:*", count=10_000):
        ids = client.zrange(key, 0, -1, withscores=True)
        client.delete(key)
        client.hset(key, mapping={event_id: int(score) % P32 for event_id, score in ids})
    for key in client.scan_iter(match=f"{prefix}ci:*", count=10_000):
        invoices = client.zrange(key, 0, -1)
        client.delete(key)
        client.sadd(key, *invoices)
    client.delete(f"{prefix}retention")


def test_a_prefix_written_before_retention_is_read_and_then_stamped(redis_client, redis_prefix):
    d0 = 15_000 * DAY
    first = days_of(d0, range(5), customers=4)
    RedisFeatureStore(redis_client, redis_prefix, seen_buckets=16).apply(
        "t", 0, list(enumerate(first)), len(first) - 1
    )
    make_legacy(redis_client, redis_prefix)
    store = RedisFeatureStore(redis_client, redis_prefix, retention=Retention(dedupe_days=30))
    # Read as before: repeats are duplicates, other content conflicts, invoices count once.
    again = [(100 + i, ln) for i, ln in enumerate(first)]
    assert store.apply("t", 0, again, 119).duplicates == 20
    other = line("0-0:0", "0-0", "k0", 7, 1_000_000, d0)
    assert [r.reason for r in store.apply("t", 0, [(120, other)], 120).refused] == [
        "conflicting_duplicate"
    ]
    same_invoice = line("0-0:9", "0-0", "k0", 1, 1_000_000, d0 + 4 * DAY)
    store.apply("t", 0, [(121, same_invoice)], 121)
    assert store.load(["k0"])[0].state.invoices == 5
    # The first pass stamped every old id and invoice with the watermark's day (15,004).
    ids = {
        event_id.decode(): int(score)
        for key in redis_client.scan_iter(match=f"{redis_prefix}seen:*", count=10_000)
        for event_id, score in redis_client.zrange(key, 0, -1, withscores=True)
    }
    assert ids["0-0:0"] // P32 == 15_004 and ids["0-0:0"] % P32 > 0
    assert redis_client.type(f"{redis_prefix}ci:k1") == b"zset"
    assert redis_client.zscore(f"{redis_prefix}ci:k1", "0-1") == 15_004
    # So they expire 30 days after that day, not before.
    store.apply("t", 0, [(122, line("w:0", "w", "k9", 1, 1, d0 + 33 * DAY))], 122)
    assert "0-0:0" in {
        event_id.decode()
        for key in redis_client.scan_iter(match=f"{redis_prefix}seen:*", count=10_000)
        for event_id in redis_client.zrange(key, 0, -1)
    }
    store.apply("t", 0, [(123, line("w:1", "w", "k9", 1, 1, d0 + 35 * DAY))], 123)
    assert sum(bucket_sizes(redis_client, redis_prefix).values()) == 2  # w:0 and w:1
    assert not redis_client.exists(f"{redis_prefix}ci:k1")


def test_a_report_key_of_another_type_is_read_as_unusable_and_overwritten(
    redis_client, redis_prefix
):
    store = RedisFeatureStore(redis_client, redis_prefix)
    redis_client.rpush(redis_prefix + "report", "not", "a", "hash")
    assert store.saved_report() == (b"", -1)  # an empty document: its readers refuse it
    at = store.save_report(b"{}")
    assert store.saved_report() == (b"{}", at)


def purchases(count: int, first: int = 0, customers: int = 97) -> list:
    """``count`` purchase lines with ids of their own, over ``customers`` customers and a
    month of days."""
    return [
        line(f"i{n}:{n % 3}", f"i{n}", f"k{n % customers}", 1 + n % 5, 1_250_000, (n % 30) * DAY)
        for n in range(first, first + count)
    ]


def layout(client, prefix: str) -> dict[str, int]:
    """The applied ids' bucket layout: n, split and the ids held."""
    return {k.decode(): int(v) for k, v in client.hgetall(f"{prefix}seen_buckets").items()}


def buckets_of(client, prefix: str) -> dict[str, list[bytes]]:
    return {
        key.decode()[len(prefix) :]: client.zrange(key, 0, -1)
        for key in client.scan_iter(match=f"{prefix}seen:*", count=10_000)
    }


def test_buckets_split_as_ids_come_and_every_id_is_still_found(redis_client, redis_prefix):
    store = RedisFeatureStore(redis_client, redis_prefix, seen_buckets=1)
    lines = purchases(6_000)
    for start in range(0, len(lines), 500):
        block = [(start + i, ln) for i, ln in enumerate(lines[start : start + 500])]
        assert store.apply("t", 0, block, start + 499).applied == 500

    buckets = buckets_of(redis_client, redis_prefix)
    # From one bucket to at least 6,000 / 40: each split moved about half a bucket.
    assert len(buckets) >= 6_000 / 40
    held = sorted(event_id.decode() for ids in buckets.values() for event_id in ids)
    assert held == sorted(ln.event_id for ln in lines)  # each id once, none lost in a move
    assert layout(redis_client, redis_prefix)["held"] == 6000
    assert max(len(ids) for ids in buckets.values()) <= 128
    assert {redis_client.object("encoding", f"{redis_prefix}{k}") for k in buckets} == {b"listpack"}
    # Every id is looked up where it now lives: all repeats, in another topic's offsets.
    again = store.apply("u", 0, list(enumerate(lines)), len(lines) - 1)
    assert (again.applied, again.duplicates) == (0, 6_000)
    other = line("i4321:1", "i4321", "k0", 9, 1_250_000, 0)  # an applied id, new content
    refused = store.apply("u", 0, [(6_000, other)], 6_000).refused
    assert [r.reason for r in refused] == ["conflicting_duplicate"]
    # The features are those of the lines, counted once (worked out from the lines).
    spent = {f"k{k}": 0 for k in range(97)}
    for ln in lines:
        spent[ln.customer_id] += ln.quantity * 1_250_000
    loaded = store.load(list(spent))
    assert {c.customer_id: c.state.revenue_micros for c in loaded} == spent


def test_an_overfull_prefix_from_before_the_splits_catches_up_and_is_compact_again(
    redis_client, redis_prefix
):
    # What the release before splits left: one bucket of 3,000 ids (a skiplist), a plain
    # bucket count and no count of ids.
    lines = purchases(3_000)
    for start in range(0, 3_000, 500):
        redis_client.zadd(
            f"{redis_prefix}seen:0",
            {
                ln.event_id: (ln.invoice_ts // DAY) * P32 + fingerprint(ln)
                for ln in lines[start : start + 500]
            },
        )
    redis_client.set(f"{redis_prefix}seen_buckets", 1)
    assert redis_client.object("encoding", f"{redis_prefix}seen:0") == b"skiplist"
    store = RedisFeatureStore(redis_client, redis_prefix)
    assert bucket_warning(store) is not None  # 3,000 in one bucket

    fresh = purchases(1, first=3_000)
    assert store.apply("t", 0, [(0, fresh[0])], 0).applied == 1
    # Counted once (3,001), then at most 33 splits a call: 34 buckets, still about 88 each.
    assert layout(redis_client, redis_prefix)["held"] == 3_001
    assert len(buckets_of(redis_client, redis_prefix)) > 1
    for k in range(1, 20):  # later calls go on splitting, a bounded amount each
        store.apply("t", 0, [], k)
    buckets = buckets_of(redis_client, redis_prefix)
    assert 3_001 / 40 <= len(buckets) < 3_001 / 40 * 2
    assert {redis_client.object("encoding", f"{redis_prefix}{k}") for k in buckets} == {b"listpack"}
    assert bucket_warning(store) is None
    again = store.apply("u", 0, list(enumerate(lines + fresh)), 3_000)
    assert (again.applied, again.duplicates) == (0, 3_001)


def test_the_count_of_ids_follows_what_retention_forgets(redis_client, redis_prefix):
    store = RedisFeatureStore(
        redis_client, redis_prefix, seen_buckets=2, retention=Retention(dedupe_days=10)
    )
    d0 = 15_000 * DAY
    offset = 0
    for day in range(0, 60, 3):
        block = days_of(d0, range(day, day + 3), customers=40)
        store.apply("t", 0, [(offset + i, ln) for i, ln in enumerate(block)], offset + 119)
        offset += 120
        held = sum(bucket_sizes(redis_client, redis_prefix).values())
        assert layout(redis_client, redis_prefix)["held"] == held
    # Ten days and the last block's three at most, forty ids a day, went on being forgotten.
    assert held <= 40 * 14
    assert len(bucket_sizes(redis_client, redis_prefix)) > 2  # they split meanwhile


def test_buckets_fuller_than_redis_keeps_compact_are_reported(redis_client, redis_prefix):
    ids = [line(f"i{n}:0", f"i{n}", "1", 1, 1_000_000, 10 * DAY) for n in range(600)]
    roomy = RedisFeatureStore(redis_client, redis_prefix, seen_buckets=2)
    roomy.apply("t", 0, list(enumerate(ids)), len(ids) - 1)
    assert roomy.compact_entries() == 128  # the services' Redis runs with the default
    per_bucket, buckets = roomy.seen_per_bucket()
    assert buckets >= 600 / 40 and per_bucket <= 40  # split from 2 as the ids came
    assert bucket_warning(roomy) is None


def test_ids_of_any_characters_are_split_where_the_consumer_looks_for_them(
    redis_client, redis_prefix
):
    # Lookups pick the bucket by Python's CRC-32 of the id's UTF-8; splits by the script's.
    # The ids reach the script inside one MessagePack argument: they must arrive byte for byte.
    names = ["Ünïcödé", "日本語", "🛒", "a b\tc", "x" * 200, "quote\"'", "\\0", "nul\x00", "\xff"]
    lines = [
        line(f"{names[n % len(names)]}:{n}", f"v{n}", names[n % 5], 1, 1_000_000, DAY)
        for n in range(700)
    ]
    store = RedisFeatureStore(redis_client, redis_prefix, seen_buckets=1)
    assert store.apply("t", 0, list(enumerate(lines)), 699).applied == 700
    held = buckets_of(redis_client, redis_prefix)
    assert len(held) >= 700 / 40
    assert sorted(m for members in held.values() for m in members) == sorted(
        ln.event_id.encode() for ln in lines
    )
    for name in names[:5]:
        assert redis_client.hget(f"{redis_prefix}c:{name}", "lines") == b"140"
    again = store.apply("u", 0, list(enumerate(lines)), 699)
    assert (again.applied, again.duplicates) == (0, 700)


def test_a_prefix_emptied_under_an_unfenced_store_is_refused_not_written_bucketless(
    redis_client, redis_prefix
):
    store = RedisFeatureStore(redis_client, redis_prefix, seen_buckets=4)
    store.apply("t", 0, list(enumerate(LINES[:2])), 1)
    for key in redis_client.scan_iter(match=redis_prefix + "*"):
        redis_client.delete(key)  # what a Redis restarted without its data holds
    with pytest.raises(StoreDiverged, match="holds no state"):
        store.apply("t", 0, [(2, LINES[2])], 2)
    assert list(redis_client.scan_iter(match=redis_prefix + "*")) == []


def test_a_call_splits_a_bounded_number_of_ids(redis_client, redis_prefix):
    # Four buckets of 20,000 ids (the release before, far past its size): a call reads at
    # most twice its new ids plus 16,384 to split, and at least one bucket, so one split.
    lines = purchases(80_000)
    for start in range(0, 80_000, 5_000):
        pipe = redis_client.pipeline(transaction=False)
        for ln in lines[start : start + 5_000]:
            bucket = zlib.crc32(ln.event_id.encode()) % 4
            score = (ln.invoice_ts // DAY) * P32 + fingerprint(ln)
            pipe.zadd(f"{redis_prefix}seen:{bucket}", {ln.event_id: score})
        pipe.execute()
    redis_client.set(f"{redis_prefix}seen_buckets", 4)
    store = RedisFeatureStore(redis_client, redis_prefix)
    store.apply("t", 0, [(0, purchases(1, first=80_000)[0])], 0)
    assert layout(redis_client, redis_prefix) == {"n": 4, "split": 1, "held": 80_001}
    again = store.apply("u", 0, list(enumerate(lines[:5_000])), 4_999)
    assert (again.applied, again.duplicates) == (0, 5_000)


def test_the_release_before_cannot_read_the_layout_and_stops(redis_client, redis_prefix):
    # It read the bucket count with GET and computed crc32 % count, which a split prefix
    # would answer with the wrong buckets; the hash makes that GET fail instead.
    store = RedisFeatureStore(redis_client, redis_prefix, seen_buckets=1)
    store.apply("t", 0, list(enumerate(purchases(100))), 99)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        redis_client.get(f"{redis_prefix}seen_buckets")


@pytest.mark.parametrize(
    ("garbage", "shown"),
    [
        ({"n": "-3"}, "n=-3"),
        ({"n": "2.5"}, "n=2.5"),
        ({"n": "4", "split": "9"}, "n=4 split=9"),
        ({"n": "4", "split": "-1"}, "n=4 split=-1"),
        ({"n": "abc"}, "n=abc"),
        ({"split": "2"}, "n=(none) split=2"),
    ],
    ids=["negative", "fraction", "split-past-n", "negative-split", "not-a-number", "no-count"],
)
def test_a_bucket_layout_that_is_garbage_is_refused_naming_it(
    redis_client, redis_prefix, garbage, shown
):
    redis_client.hset(f"{redis_prefix}seen_buckets", mapping=garbage)
    store = RedisFeatureStore(redis_client, redis_prefix)
    named = (
        f"^{re.escape(redis_prefix)}seen_buckets is not a bucket layout \\({re.escape(shown)}\\)$"
    )
    with pytest.raises(CheckpointError, match=named):
        store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    assert redis_client.hget(f"{redis_prefix}offsets", "t:0") is None  # nothing applied
    assert not list(redis_client.scan_iter(match=f"{redis_prefix}seen:*"))


def test_a_bucket_layout_of_another_type_is_refused(redis_client, redis_prefix):
    redis_client.rpush(f"{redis_prefix}seen_buckets", "1024")
    store = RedisFeatureStore(redis_client, redis_prefix)
    with pytest.raises(CheckpointError, match=r"is not a bucket layout \(a list\)"):
        store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
