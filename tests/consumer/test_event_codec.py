"""Events as Redis keeps them: packed, a fifth of their JSON; the JSON of the release before
still read; anything else refused by name, never trusted."""

from __future__ import annotations

import zlib

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from consumer.event_codec import FORMAT, MAX_EVENT_BYTES, UnreadableEvent, pack, unpack
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink, MemoryFeatureStore
from consumer.pipeline import Pipeline
from consumer.redis_store import RedisFeatureStore
from segmenter.model import SegmentModel
from tests.conftest import SAMPLE
from tests.contract.test_feature_store import line

# Packed by this release from the doc below: what Redis may hold for ever, so format 1's
# dictionary can never change under it.
STORED_V1 = bytes.fromhex(
    "01434d8b46c62616568658d2621e304b614b8c200d288911e80743a01f801e30a569625422e83300"
)
STORED_V1_DOC = {
    "event_id": "12348:1",
    "type": "insider.entered",
    "customer_id": "12348",
    "at": "2011-04-17T13:05:00+00:00",
    "reason": {"code": "top_segment", "text": "margin 0.63 at or above the entry edge 0.59"},
    "segment": 4,
    "model_version": 16,
}


@pytest.fixture(scope="module")
def sample_events() -> list[dict]:
    store = MemoryFeatureStore()
    pipeline = Pipeline(store, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(SAMPLE, block_size=2000).blocks():
        pipeline.process(block)
    assert len(store.outbox) > 20
    return list(store.outbox)


def test_every_event_comes_back_as_it_was_at_a_fraction_of_its_json(sample_events):
    docs = [orjson.dumps(event) for event in sample_events]
    packed = [pack(doc) for doc in docs]
    assert [unpack(p, "k") for p in packed] == sample_events
    assert sum(map(len, packed)) < sum(map(len, docs)) / 3


def test_what_this_release_stored_stays_readable():
    assert unpack(STORED_V1, "h:12348") == STORED_V1_DOC


def test_the_json_of_the_release_before_is_read_as_it_is():
    doc = orjson.dumps(STORED_V1_DOC)
    assert unpack(doc, "h:12348") == STORED_V1_DOC


def bomb() -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    return FORMAT + deflate.compress(b"{" + b" " * (MAX_EVENT_BYTES * 4) + b"}") + deflate.flush()


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "not an event (starts with b'')"),
        (b"\x80\x05\x95pickle", "not an event (starts with b'\\x80\\x05\\x95pickl')"),
        (FORMAT + b"\xff\xfe garbage", "not a packed event (Error -3"),
        (STORED_V1[:-4], "not a packed event (cut short"),
        (bomb(), f"over {MAX_EVENT_BYTES:,} bytes"),
        (b"{oops", "not an event (not JSON"),
        (b"[1, 2]", "not JSON"),  # starts with neither
        (pack(b"[1, 2]"), "not an event (JSON list)"),
    ],
    ids=["empty", "pickle", "garbage", "cut", "bomb", "bad-json", "list", "packed-list"],
)
def test_a_value_that_is_not_an_event_is_refused_naming_its_key(raw, says):
    with pytest.raises(UnreadableEvent) as refused:
        unpack(raw, "insiders:h:17850")
    assert str(refused.value).startswith("insiders:h:17850: ")
    assert says.replace("not JSON", "") in str(refused.value)


def test_redis_keeps_events_packed_and_reads_histories_of_the_release_before(
    redis_client, redis_prefix, sample_events
):
    store = RedisFeatureStore(redis_client, redis_prefix)
    customer = sample_events[0]["customer_id"]
    older = orjson.dumps(STORED_V1_DOC)  # a history entry the release before wrote
    redis_client.rpush(f"{redis_prefix}h:{customer}", older)
    pipeline = Pipeline(store, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(SAMPLE, block_size=2000).blocks():
        pipeline.process(block)

    stored = [fields[b"e"] for _, fields in redis_client.xrange(f"{redis_prefix}events")]
    assert {raw[:1] for raw in stored} == {FORMAT}
    assert sum(map(len, stored)) < sum(len(orjson.dumps(e)) for e in sample_events) / 3
    # The same events as the in-memory store's run, read back whole.
    assert store.events(None, 10_000).events == sample_events
    mine = [e for e in sample_events if e["customer_id"] == customer]
    assert store.history(customer) == [STORED_V1_DOC, *mine]


def test_the_api_answers_a_corrupt_history_with_a_503_naming_it(redis_client, redis_prefix):
    store = RedisFeatureStore(redis_client, redis_prefix)
    store.apply("t", 0, [(0, line("a:0", "a", "12348", 2, 1_000_000, 86_400))], 0)
    redis_client.rpush(f"{redis_prefix}h:12348", b"\x80\x05\x95pickle")
    answer = TestClient(create_app(store)).get("/customers/12348/history")
    assert answer.status_code == 503, answer.text
    assert answer.json()["detail"].startswith("an event in the redis store is unusable: ")
    assert f"{redis_prefix}h:12348" in answer.json()["detail"]
