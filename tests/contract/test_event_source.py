"""The event-source contract, run against the file source and the real Kafka source."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumer.file_source import FileInvoiceSource
from consumer.files import read_records
from consumer.kafka_io import KafkaInvoiceSource, KafkaPublisher, ensure_topics
from consumer.ports import SourceRecord
from tests.conftest import unique

HEADER = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]

# (invoice, stock, description, quantity, date, price, customer, country), as parsed values.
ROWS: list[tuple[str, str, str, int, str, float, str | None, str]] = [
    *[
        ("536365", f"8512{i}A", f"ITEM {i}", 6 + i, "2010-12-01 08:26:00", 2.55, "17850", "UK")
        for i in range(7)
    ],
    ("536366", "22633", "HAND WARMER, UNION JACK", 6, "2010-12-01 08:28:00", 1.85, "17850", "UK"),
    ("536366", "22632", "HAND WARMER RED POLKA DOT", 6, "2010-12-01 08:28:00", 1.85, "17850", "UK"),
    *[
        ("536367", f"8487{i}", 'BOX "SMALL"', 2, "2010-12-01 08:34:00", 4.25, "13047", "UK")
        for i in range(6)
    ],
    *[
        ("536368", f"2296{i}", "JAM JAR", 3, "2010-12-01 08:34:00", 4.95, "13047", "UK")
        for i in range(4)
    ],
    ("C536379", "D", "Discount", -1, "2010-12-01 09:41:00", 27.5, "14527", "UK"),
    ("536370", "22728", "ALARM CLOCK PINK", 24, "2010-12-01 08:45:00", 3.75, "12583", "France"),
    ("536370", "POST", "POSTAGE", 3, "2010-12-01 08:45:00", 18.0, "12583", "France"),
    ("536371", "22086", "PAPER CHAIN KIT", 80, "2010-12-01 09:00:00", 2.55, None, "UK"),
]
N = len(ROWS)  # 23


def expected_records() -> list[dict[str, Any]]:
    """The input records the rows should become, built by hand from ROWS."""
    positions: dict[str, int] = {}
    out = []
    for invoice, stock, description, qty, date, price, customer, country in ROWS:
        position = positions.get(invoice, 0)
        positions[invoice] = position + 1
        out.append(
            {
                "event_id": f"{invoice}:{position}",
                "invoice_no": invoice,
                "stock_code": stock,
                "description": description,
                "quantity": qty,
                "invoice_date": date.replace(" ", "T"),
                "unit_price": price,
                "customer_id": customer,
                "country": country,
            }
        )
    return out


@pytest.fixture
def invoices(tmp_path: Path) -> Path:
    path = tmp_path / "invoices.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for invoice, stock, description, qty, date, price, customer, country in ROWS:
            writer.writerow(
                [invoice, stock, description, qty, date, price, customer or "", country]
            )
    return path


def publish(bootstrap: str, path: Path) -> str:
    """Publish ``path`` to a fresh single-partition topic and return its name."""
    topic = unique("src")
    ensure_topics(bootstrap, [topic], partitions=1)
    publisher = KafkaPublisher(bootstrap, topic)
    try:
        for record in read_records(path):
            publisher.send(record)
        publisher.flush()
    finally:
        publisher.close()
    return topic


@pytest.fixture(params=["file", "kafka"])
def make_source(
    request: pytest.FixtureRequest, invoices: Path
) -> Iterator[Callable[[int], FileInvoiceSource | KafkaInvoiceSource]]:
    """Each contract test runs against both sources, fed the same rows."""
    opened: list[FileInvoiceSource | KafkaInvoiceSource] = []

    def make(block_size: int) -> FileInvoiceSource | KafkaInvoiceSource:
        source: FileInvoiceSource | KafkaInvoiceSource
        if request.param == "file":
            source = FileInvoiceSource(invoices, block_size=block_size)
        else:
            bootstrap: str = request.getfixturevalue("kafka_bootstrap")
            topic = publish(bootstrap, invoices)
            source = KafkaInvoiceSource(
                bootstrap, topic, group=unique("g"), block_size=block_size, exit_at_end=True
            )
        opened.append(source)
        return source

    yield make
    for source in opened:
        source.close()


def flatten(blocks: list[list[SourceRecord]]) -> list[SourceRecord]:
    return [r for block in blocks for r in block]


def test_every_line_once_in_order_with_its_key_and_record(make_source, invoices):
    """Blocks hold each line once, offsets 0..n-1 on partition 0, values and keys as published."""
    records = flatten(list(make_source(5).blocks()))
    want = expected_records()
    assert list(read_records(invoices)) == want  # the hand-built expectation is the file's reading
    assert [r.offset for r in records] == list(range(N))
    assert {r.partition for r in records} == {0}
    assert [orjson.loads(r.value) for r in records] == want
    assert [r.key for r in records] == [c.encode() if c else None for *_, c, _ in ROWS]
    assert records[-1].key is None


@pytest.mark.parametrize(
    ("block_size", "sizes"),
    [(5, [5, 5, 5, 5, 3]), (7, [7, 7, 7, 2]), (1, [1] * 23), (23, [23]), (100, [23])],
)
def test_blocks_end_at_multiples_of_the_block_size(make_source, block_size, sizes):
    """Blocks are cut at offsets that are multiples of block_size, so replay and Kafka agree."""
    blocks = list(make_source(block_size).blocks())
    assert [len(b) for b in blocks] == sizes
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    assert [b[0].offset for b in blocks] == starts
    assert [[r.offset for r in b] for b in blocks] == [
        list(range(s, s + n)) for s, n in zip(starts, sizes, strict=True)
    ]


def test_stopping_after_a_block_yields_no_further_block(make_source):
    """Setting stopping between blocks ends the iteration without another block."""
    source = make_source(5)
    blocks = source.blocks()
    first = next(blocks)
    assert [r.offset for r in first] == [0, 1, 2, 3, 4]
    source.stopping = True
    assert next(blocks, None) is None


def test_kafka_resumes_after_committed_blocks(kafka_bootstrap, invoices):
    """A new consumer in the same group starts after the last committed block."""
    topic, group = publish(kafka_bootstrap, invoices), unique("g")
    first = KafkaInvoiceSource(kafka_bootstrap, topic, group=group, block_size=5, exit_at_end=True)
    try:
        blocks = first.blocks()
        for _ in range(2):
            first.commit(next(blocks))
        next(blocks)  # read but not committed: must come again
    finally:
        first.close()
    second = KafkaInvoiceSource(kafka_bootstrap, topic, group=group, block_size=5, exit_at_end=True)
    try:
        blocks = list(second.blocks())
    finally:
        second.close()
    assert [len(b) for b in blocks] == [5, 5, 3]
    records = flatten(blocks)
    assert [r.offset for r in records] == list(range(10, N))
    assert [orjson.loads(r.value) for r in records] == expected_records()[10:]


def test_kafka_stopping_after_a_resumed_partial_block(kafka_bootstrap, invoices):
    """Stopping holds when the group resumes mid-block (offset 18, block size 5)."""
    topic, group = publish(kafka_bootstrap, invoices), unique("g")
    first = KafkaInvoiceSource(kafka_bootstrap, topic, group=group, block_size=9, exit_at_end=True)
    try:
        blocks = first.blocks()
        for _ in range(2):
            first.commit(next(blocks))  # committed up to offset 17
    finally:
        first.close()
    source = KafkaInvoiceSource(kafka_bootstrap, topic, group=group, block_size=5, exit_at_end=True)
    try:
        blocks = source.blocks()
        assert [r.offset for r in next(blocks)] == [18, 19]
        source.stopping = True
        assert next(blocks, None) is None
    finally:
        source.close()
