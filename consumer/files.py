"""Reading retail files into input records: invoice lines, or whole purchases.

Files are ``.csv`` or ``.csv.gz`` (comma-separated), whitespace-separated text (``.txt``,
``.txt.gz``, purchases only) or an Excel workbook ``.xlsx`` (its first sheet, read as a
stream). The header row names the layout. Each data row becomes one JSON-ready record of
the input schema, with a deterministic ``event_id``, so that publishing the same file
twice yields the same ids.

Invoice-line layouts: one product line of an invoice per row, ``event_id`` = invoice
number + the line's position within that invoice.

- ``uci``: ``InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,
  Country`` (UCI Online Retail, as CSV, as its ``Online Retail.xlsx``, or as the Kaggle copy
  with US dates);
- ``uci2``: Online Retail II (``Invoice``, ``Price``, ``Customer ID``);
- ``kaggle``: a re-upload with the UCI names, an extra empty column and dates like
  ``29-Nov-16``.

The ``purchases`` layout: one purchase (an order, a receipt) per row, no product lines.
Its columns, in any order, named as below (case, blanks and dashes do not matter):

- customer: ``customer_id`` (or ``customer``, ``customerid``, ``client_id``), required;
- date: ``date`` (or ``order_date``, ``purchase_date``, ``invoice_date``,
  ``transaction_date``), required;
- amount: ``amount`` (or ``dollar_value``, ``value``, ``total``, ``order_total``,
  ``order_value``, ``revenue``), required: the purchase's value, a plain number;
- optional: an order id (``order_id``, ``order_no``, ``order_number``, ``invoice_no``,
  ``invoice_id``, ``transaction_id``), an item count (``items``, ``number_of_items``,
  ``number_of_cds``, ``quantity``, ``units``) and ``country``.

Any other column makes the header unknown: a column we would drop could change the
amounts. CDNOW (``customer_id date number_of_cds dollar_value``, whitespace-separated)
is read as this layout. A purchase becomes a record with ``stock_code`` null (a whole
order), quantity 1 and unit price = the amount, so money stays exact; a negative amount
is a refund (quantity -1, unit price the amount's absolute value); a zero amount is a
line feature spec v1 ignores (``zero_price``). The item count only goes into the
description (``"3 items"``). The ids: with an order id column, ``invoice_no`` is the
order id and ``event_id`` = order id + position within that order, as for invoice
lines; without one, ``invoice_no`` is ``L<row>``, the row's number in the file (the
header is row 1, blank rows count), and ``event_id`` = ``L<row>:0``. Ids from row
numbers are unique within one file and stable while the file only grows at its end:
send several files of one retailer as one file, or with an order id column.

Dates, in every layout but ``kaggle``, are read in any of these forms (a date alone is
midnight):

- ISO 8601: ``2011-12-09 12:50:00``, ``2011-12-09T12:50``, ``2011-12-09``;
- compact: ``19970101`` (CDNOW);
- US, month first: ``12/1/2010 8:26``, ``12/1/2010 8:26:00``, ``12/1/2010``, as the
  Kaggle copy of UCI writes them. A slashed date is always read month first, never
  guessed per line: ``13/1/2011`` is not 13 January but passes on as written, and the
  consumer rejects it (``bad_date``). Day-first files are not read;
- Excel date cells of an ``.xlsx``.

Anything else passes on unchanged for the consumer to reject with a reason.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import logging
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar
from xml.etree.ElementTree import ParseError

from consumer.records import DateParser
from segmenter.errors import InputFileError

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    name: str
    # As the header names them. Invoice lines: invoice, stock, description, quantity, date,
    # price, customer, country.
    columns: tuple[str, ...]
    date_format: str | None  # None: any of the forms the module docstring lists
    roles: tuple[str, ...] = ()  # purchases: what each column holds (customer, date, ...)


UCI_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
UCI2_COLUMNS = (
    "Invoice",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "Price",
    "Customer ID",
    "Country",
)

LAYOUTS = (
    Layout("uci", UCI_COLUMNS, None),
    Layout("uci2", UCI2_COLUMNS, None),
    # The Kaggle re-upload: UCI names, an extra empty column, dates like 29-Nov-16.
    Layout("kaggle", UCI_COLUMNS, "%d-%b-%y"),
)

# Column names of the purchases layout (after _role_name) -> what the column holds.
PURCHASE_COLUMNS = {
    **dict.fromkeys(("customer_id", "customer", "customerid", "client_id"), "customer"),
    **dict.fromkeys(
        ("date", "order_date", "purchase_date", "invoice_date", "transaction_date"), "date"
    ),
    **dict.fromkeys(
        (
            "amount",
            "dollar_value",
            "value",
            "total",
            "order_total",
            "order_value",
            "revenue",
        ),
        "amount",
    ),
    **dict.fromkeys(
        (
            "order_id",
            "order_no",
            "order_number",
            "invoice_no",
            "invoice_id",
            "transaction_id",
        ),
        "order",
    ),
    **dict.fromkeys(("items", "number_of_items", "number_of_cds", "quantity", "units"), "items"),
    "country": "country",
}
PURCHASE_REQUIRED = ("customer", "date", "amount")


def _role_name(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())


def _purchase_roles(names: list[str]) -> tuple[str, ...] | None:
    """What each column of a purchases header holds; None if it is not one."""
    roles = tuple(PURCHASE_COLUMNS.get(_role_name(n), "") for n in names)
    if "" in roles or len(set(roles)) < len(roles):
        return None
    if not set(PURCHASE_REQUIRED) <= set(roles):
        return None
    return roles


def detect_layout(header: list[str]) -> Layout:
    """Pick the layout from a header row.

    >>> detect_layout(["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate",
    ...                "Price", "Customer ID", "Country"]).name
    'uci2'
    >>> detect_layout(["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
    ...                "UnitPrice", "CustomerID", "Country", ""]).name
    'kaggle'
    >>> layout = detect_layout(["customer_id", "date", "number_of_cds", "dollar_value"])
    >>> layout.name, layout.roles
    ('purchases', ('customer', 'date', 'items', 'amount'))
    """
    names = [h.strip().lstrip("\ufeff") for h in header]
    extra = [n for n in names[8:] if n]
    for layout in LAYOUTS:
        if tuple(names[:8]) == layout.columns and not extra:
            kaggle_shape = len(names) > 8
            if layout.name == "uci" and kaggle_shape:
                continue
            if layout.name == "kaggle" and not kaggle_shape:
                continue
            return layout
    while names and not names[-1]:  # a spreadsheet's empty columns after the last one
        names.pop()
    roles = _purchase_roles(names)
    if roles is not None:
        return Layout("purchases", tuple(names), None, roles)
    raise InputFileError(
        f"unknown column layout {','.join(names)!r}; expected the UCI Online Retail "
        f"({','.join(LAYOUTS[0].columns)}), Online Retail II ({','.join(LAYOUTS[1].columns)}) "
        "or Kaggle columns, or purchases (customer_id,date,amount; optional order_id, items, "
        "country)"
    )


def _cp1252_fallback(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start : error.end]
    return bytes(bad).decode("cp1252", errors="replace"), error.end


_CP1252_FALLBACK = "insiders-cp1252-fallback"
# What a truncated, corrupt or vanished file raises while it is read.
_READ_ERRORS = (OSError, EOFError, csv.Error, zlib.error)
# ... and what openpyxl raises on a workbook that is not one, or is cut.
_XLSX_ERRORS = (*_READ_ERRORS, zipfile.BadZipFile, KeyError, ValueError, ParseError)
codecs.register_error(_CP1252_FALLBACK, _cp1252_fallback)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputFileError(f"{path}: no such file; pass a .csv or .csv.gz of invoice lines")
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder; pass a .csv or .csv.gz file")


def _open_text(path: Path) -> IO[str]:
    _check_path(path)
    try:
        # Closed by the text wrapper returned below, which the caller closes.
        raw: IO[bytes] = (
            gzip.open(path) if path.suffix == ".gz" else path.open("rb")  # type: ignore[assignment]  # noqa: SIM115
        )
    except OSError as exc:
        raise InputFileError(f"{path}: cannot open it ({exc.strerror or exc})") from None
    # UTF-8, with any byte that is not valid UTF-8 read as cp1252 (copies saved from Excel).
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors=_CP1252_FALLBACK, newline="")


def _customer(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    # Some copies store ids as floats ("17850.0").
    return text[:-2] if text.endswith(".0") else text


def _integer(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return _decimal(text)  # "6.0" stays a float: the validator says it is not an integer


def _decimal(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        # Left for the validator to reject with a reason: the record still goes through.
        return text


def read_records(path: Path | str) -> Iterator[dict[str, Any]]:
    """Yield one input record per data row of ``path``, in file order.

    Values are passed on as found (numbers parsed where they parse); deciding
    what is valid is the consumer's job, so a bad row reaches the dead-letter
    topic instead of stopping a publish.
    """
    yield from _read(path, _records)


def read_dates(path: Path | str) -> Iterator[str]:
    """Yield each data row's invoice date, normalised as :func:`read_records` would (an
    unreadable one as found), and nothing else: what checking a file's time order needs.

    >>> sample = Path(__file__).parent / "data" / "online_retail_sample.csv.gz"
    >>> dates = list(read_dates(sample))
    >>> dates == [record["invoice_date"] for record in read_records(sample)], dates[0]
    (True, '2010-12-01T09:37:00')
    """
    yield from _read(path, _dates)


def _read(
    path: Path | str, parse: Callable[[Path, Iterator[list[str]]], Iterator[T]]
) -> Iterator[T]:
    """``parse`` of the rows of ``path``, a CSV, a whitespace-separated file or a workbook."""
    path = Path(path)
    if path.suffix.lower() == ".xlsx":
        yield from parse(path, _sheet_rows(path))
        return
    with _open_text(path) as text:
        try:
            first = text.readline()
        except _READ_ERRORS as exc:
            raise InputFileError(f"{path}: cannot read it ({exc})") from None
        if not first.strip():
            raise InputFileError(f"{path}: the file is empty")
        # Whitespace-separated (CDNOW): only purchases, whose fields hold no blanks.
        if "," not in first and _purchase_roles(first.split()) is not None:
            rows = _split_rows(path, text, first)
        else:
            rows = _csv_rows(path, text, first)
        yield from parse(path, rows)


def _csv_rows(path: Path, text: IO[str], first: str) -> Iterator[list[str]]:
    yield next(csv.reader([first]))
    reader = csv.reader(text)
    try:
        yield from reader
    except _READ_ERRORS as exc:
        raise InputFileError(
            f"{path}: cannot read it past line {reader.line_num + 1} ({exc})"
        ) from None


def _split_rows(path: Path, text: IO[str], first: str) -> Iterator[list[str]]:
    yield first.split()
    line = 1
    try:
        for row in text:
            line += 1
            yield row.split()
    except _READ_ERRORS as exc:
        raise InputFileError(f"{path}: cannot read it past line {line} ({exc})") from None


def _sheet_rows(path: Path) -> Iterator[list[str]]:
    """The first sheet's rows as the text a CSV export would hold (dates in ISO 8601)."""
    from openpyxl import load_workbook

    _check_path(path)
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except _XLSX_ERRORS as exc:
        raise InputFileError(f"{path}: cannot read it as an .xlsx workbook ({exc})") from None
    row = 0
    try:
        for values in book.worksheets[0].iter_rows(values_only=True):
            row += 1
            yield [_cell_text(value) for value in values]
    except _XLSX_ERRORS as exc:
        raise InputFileError(f"{path}: cannot read it past row {row} ({exc})") from None
    finally:
        book.close()


def _cell_text(value: object) -> str:
    """A cell as a CSV export writes it.

    >>> [_cell_text(v) for v in (None, 536365, 17850.0, 2.55, "85123A")]
    ['', '536365', '17850', '2.55', '85123A']
    >>> _cell_text(datetime(2010, 12, 1, 8, 25, 59, 999_500)), _cell_text(date(1997, 1, 1))
    ('2010-12-01T08:26:00', '1997-01-01T00:00:00')
    """
    if value is None:
        return ""
    if isinstance(value, float):
        # Excel keeps every number as a float: 17850.0 is the integer a CSV writes as 17850.
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, datetime):
        # A date cell is a fraction of a day: to the nearest second, as it was typed.
        if value.microsecond:
            value = value.replace(microsecond=0) + timedelta(seconds=value.microsecond >= 500_000)
        return value.isoformat()
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00"
    return str(value)


def _layout(path: Path, rows: Iterator[list[str]]) -> Layout:
    """The layout of the header row, the first of ``rows`` (taken from them)."""
    header = next(rows, None)
    if header is None:
        raise InputFileError(f"{path}: the file is empty")
    return detect_layout(header)


def _records(path: Path, rows: Iterator[list[str]]) -> Iterator[dict[str, Any]]:
    layout = _layout(path, rows)
    if layout.name == "purchases":
        return _purchases(rows, layout.roles)
    return _invoice_lines(rows, layout.date_format)


def _dates(path: Path, rows: Iterator[list[str]]) -> Iterator[str]:
    """The dates :func:`_records` would give the rows, without the rest of each record."""
    layout = _layout(path, rows)
    at = layout.roles.index("date") if layout.name == "purchases" else 4  # as they read it
    last_date, last_iso = "", ""
    for row in rows:
        when = row[at] if len(row) > at else ""
        if not when and not any(row):  # a blank line, or a spreadsheet's empty row: no record
            continue
        if when != last_date:
            last_date, last_iso = when, _iso(when, layout.date_format)
        yield last_iso


def _invoice_lines(rows: Iterator[list[str]], date_format: str | None) -> Iterator[dict[str, Any]]:
    positions: dict[str, int] = {}
    last_date, last_iso = "", ""
    for row in rows:
        if len(row) < 8 or not row[0]:
            if not any(row):  # a blank line, or a spreadsheet's empty row
                continue
            row = row + [""] * (8 - len(row))
        invoice, stock, description, qty, when, price, customer, country = row[:8]
        position = positions.get(invoice, 0)
        positions[invoice] = position + 1
        if when != last_date:
            last_date, last_iso = when, _iso(when, date_format)
        yield {
            "event_id": f"{invoice}:{position}",
            "invoice_no": invoice,
            "stock_code": stock,
            "description": description,
            "quantity": _integer(qty),
            "invoice_date": last_iso,
            "unit_price": _decimal(price),
            "customer_id": _customer(customer),
            "country": country,
        }


def _purchases(rows: Iterator[list[str]], roles: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    at = {role: k for k, role in enumerate(roles)}
    customer_at, date_at, amount_at = at["customer"], at["date"], at["amount"]
    order_at, items_at, country_at = at.get("order"), at.get("items"), at.get("country")
    width = len(roles)
    positions: dict[str, int] = {}
    last_date, last_iso = "", ""
    for row_number, row in enumerate(rows, start=2):
        if not any(row):  # a blank line, or a spreadsheet's empty row
            continue
        if len(row) < width:
            row = row + [""] * (width - len(row))
        order = row[order_at].strip() if order_at is not None else ""
        if order:
            position = positions.get(order, 0)
            positions[order] = position + 1
            invoice, event_id = order, f"{order}:{position}"
        else:
            invoice = f"L{row_number}"
            event_id = f"{invoice}:0"
        when = row[date_at]
        if when != last_date:
            last_date, last_iso = when, _iso(when, None)
        amount = _decimal(row[amount_at].strip())
        refund = isinstance(amount, float) and amount < 0
        items = row[items_at].strip() if items_at is not None else ""
        yield {
            "event_id": event_id,
            "invoice_no": invoice,
            "stock_code": None,
            "description": f"{items} item{'' if items == '1' else 's'}" if items else "",
            "quantity": -1 if refund else 1,
            "invoice_date": last_iso,
            "unit_price": -amount if refund else amount,
            "customer_id": _customer(row[customer_at]),
            "country": row[country_at].strip() if country_at is not None else "",
        }


_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?")
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")


def _iso(text: str, date_format: str | None) -> str:
    """Normalise a file's date to ISO 8601; an unreadable one passes through unchanged.

    >>> _iso("2010-12-01 08:26:00", None), _iso("12/1/2010 8:26", None)
    ('2010-12-01T08:26:00', '2010-12-01T08:26:00')
    >>> _iso("12/13/2010 18:26:05", None), _iso("19970101", None), _iso("29-Nov-16", "%d-%b-%y")
    ('2010-12-13T18:26:05', '1997-01-01T00:00:00', '2016-11-29T00:00:00')
    >>> _iso("13/12/2010 18:26", None)  # month first, always: no 13th month
    '13/12/2010 18:26'
    """
    text = text.strip()
    if date_format is not None:
        try:
            return datetime.strptime(text, date_format).isoformat()
        except ValueError:
            return text
    if len(text) >= 16 and text[10] == " " and text[4] == "-":  # ISO with a blank: the common case
        return text.replace(" ", "T", 1)
    us = _US_DATE.fullmatch(text)
    parts: tuple[str, ...]
    if us is not None:
        month, day, year, hour, minute, second = us.groups()
        parts = (year, month, day, hour or "0", minute or "0", second or "0")
    else:
        compact = _COMPACT_DATE.fullmatch(text)
        if compact is None:
            return text
        parts = (*compact.groups(), "0", "0", "0")
    year, month, day, hour, minute, second = (int(part) for part in parts)
    try:
        return datetime(year, month, day, hour, minute, second).isoformat()
    except ValueError:
        return text


def in_time_order(path: Path | str) -> Iterator[dict[str, Any]]:
    """:func:`read_records` in time order: as the file is, or sorted by date if it is not.

    A history is replayed and published as it happened. Most files are written in time
    order and stream straight through (after one pass that checks the order). A line a
    little late (less than :data:`LATE_TOLERANCE` behind the latest before it) stays where
    it is, as a stream would deliver it: the features do not depend on the order. A file
    that goes back further (CDNOW is sorted by customer) is read whole and sorted by date,
    stably, and the log says so. Dates are compared as the ISO text they were normalised
    to; a date that is not ISO text sorts first, and the consumer rejects it. A date the
    consumer rejects as implausible (before 1990, or past tomorrow: a typo of 9999) neither
    moves the latest date nor counts as late: one such line does not make a file be sorted.
    """
    accepted = DateParser()  # the consumer's own check, asked only when a date would count

    def plausible(when: str) -> bool:
        try:
            accepted(when)
        except ValueError:
            return False
        return True

    last = ""
    ordered = True
    for when in read_dates(path):  # the dates alone: a big file is read twice
        if when[:4].isdigit():
            if when > last:
                if plausible(when):
                    last = when
            elif when < last and _behind(when, last) > LATE_TOLERANCE and plausible(when):
                ordered = False
                break
    if ordered:
        yield from read_records(path)
        return
    records = list(read_records(path))
    log.info("%s is not in time order: replaying its %d lines sorted by date", path, len(records))

    def moment(record: dict[str, Any]) -> str:
        when = record["invoice_date"]
        return when if isinstance(when, str) and when[:4].isdigit() else ""

    records.sort(key=moment)
    yield from records


# A line this far behind the latest before it makes a file "not in time order" (a day: the
# period of the daily ranking, which a replay in file order would run on the wrong days).
LATE_TOLERANCE = timedelta(days=1)


def _behind(when: str, latest: str) -> timedelta:
    """How far ``when`` is behind ``latest`` (ISO texts); zero if either does not parse."""
    try:
        return datetime.fromisoformat(latest) - datetime.fromisoformat(when)
    except (ValueError, TypeError):  # unreadable, or one with a zone and one without
        return timedelta(0)
