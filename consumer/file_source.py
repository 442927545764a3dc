"""The file source: invoice lines from a file ``publish`` reads, as if read from a topic.

Each data row becomes the same JSON bytes ``insiders publish`` would produce, at
partition 0 and offset = row index, so the pipeline sees exactly what it would
see from a freshly published single-partition topic.

Lines come in time order (:func:`consumer.files.in_time_order`): a file that is not
sorted by date (CDNOW is sorted by customer) is replayed sorted, and its offsets are
then positions in that order. A cut (``until``) ends the replay at the first line past it.

A file none of whose rows the consumer would accept is an :class:`InputFileError`
(a wrong date format, say): before its first record, the source validates rows until
one passes, and if none does, it raises, naming how many rows failed for each reason
and the first of each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import orjson

from consumer.files import in_time_order, read_records
from consumer.ports import SourceRecord
from consumer.records import DateParser, parse_record
from segmenter.errors import InputFileError, InvalidRecord


class AcceptanceCheck:
    """Validates records until one passes; says why none did if none does.

    >>> check = AcceptanceCheck("a.csv")
    >>> check.see(b'{"quantity": 1}')
    False
    >>> check.confirm()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segmenter.errors.InputFileError: no line of a.csv was accepted: 1 missing_field (record: ...)
    """

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self.accepted = False
        self.reasons: Counter[str] = Counter()
        self.first: dict[str, str] = {}
        self._dates = DateParser()

    def see(self, value: bytes) -> bool:
        """Whether the record is valid, or one before it was (then it is not checked)."""
        if self.accepted:
            return True
        try:
            parse_record(value, self._dates)
        except InvalidRecord as error:
            self.reasons[error.reason] += 1
            self.first.setdefault(error.reason, error.detail)
            return False
        self.accepted = True
        return True

    def confirm(self) -> None:
        """Raise :class:`InputFileError` unless a record passed (a file's rows are all read)."""
        if self.accepted:
            return
        if not self.reasons:
            raise InputFileError(f"no line of {self.path} was accepted: it has no data rows")
        reasons = "; ".join(
            f"{count:,} {reason} ({self.first[reason]})"
            for reason, count in self.reasons.most_common()
        )
        raise InputFileError(f"no line of {self.path} was accepted: {reasons}")


def check_accepted(path: Path | str) -> None:
    """Raise :class:`InputFileError` unless a row of ``path`` is valid; reads to the first one."""
    check = AcceptanceCheck(path)
    for record in read_records(path):
        if check.see(orjson.dumps(record)):
            return
    check.confirm()


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
        # Up to the first valid row, read twice: a file with none fails before the pipeline
        # has dead-lettered (and logged) every row of it.
        check_accepted(self.path)
        for offset, record in enumerate(in_time_order(self.path)):
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
