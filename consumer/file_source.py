"""The file source: invoice lines from a ``.csv``/``.csv.gz`` as if read from a topic.

Each data row becomes the same JSON bytes ``insiders publish`` would produce, at
partition 0 and offset = row index, so the pipeline sees exactly what it would
see from a freshly published single-partition topic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import orjson

from consumer.files import read_records
from consumer.ports import SourceRecord


class FileInvoiceSource:
    def __init__(
        self, path: Path | str, block_size: int = 5000, until: datetime | None = None
    ) -> None:
        self.path = Path(path)
        self.topic = f"file:{self.path.name}"
        self.block_size = block_size
        self.until = until.isoformat() if until is not None else None
        self.stopping = False

    def records(self) -> Iterator[SourceRecord]:
        topic = self.topic
        for offset, record in enumerate(read_records(self.path)):
            # ISO strings of one layout compare in time order; a bad date is left to the validator.
            if self.until is not None and str(record["invoice_date"]) > self.until:
                return
            customer = record["customer_id"]
            key = customer.encode() if isinstance(customer, str) else None
            yield SourceRecord(topic, 0, offset, key, orjson.dumps(record))

    def blocks(self) -> Iterator[list[SourceRecord]]:
        size = self.block_size
        block: list[SourceRecord] = []
        for record in self.records():
            if self.stopping:
                return
            block.append(record)
            if (record.offset + 1) % size == 0:
                yield block
                block = []
        if block and not self.stopping:
            yield block

    def commit(self, block: Sequence[SourceRecord]) -> None:
        """Nothing to acknowledge: the store's offsets are the file's bookmark."""

    def close(self) -> None:
        pass
