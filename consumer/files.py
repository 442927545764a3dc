"""Reading invoice files (``.csv`` / ``.csv.gz``) in the three layouts the design names.

Each data row becomes one JSON-ready record of the input schema, with a
deterministic ``event_id`` = invoice number + the line's position within that
invoice, so that publishing the same file twice yields the same ids.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from segmenter.errors import InputFileError


@dataclass(frozen=True)
class Layout:
    name: str
    columns: tuple[
        str, ...
    ]  # invoice, stock, description, quantity, date, price, customer, country
    date_format: str | None  # None: ISO 8601 as written


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


def detect_layout(header: list[str]) -> Layout:
    """Pick the layout from a header row.

    >>> detect_layout(["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate",
    ...                "Price", "Customer ID", "Country"]).name
    'uci2'
    >>> detect_layout(["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
    ...                "UnitPrice", "CustomerID", "Country", ""]).name
    'kaggle'
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
    raise InputFileError(
        f"unknown column layout {','.join(names)!r}; expected the UCI Online Retail "
        f"({','.join(LAYOUTS[0].columns)}), Online Retail II ({','.join(LAYOUTS[1].columns)}) "
        "or Kaggle columns"
    )


def _cp1252_fallback(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start : error.end]
    return bytes(bad).decode("cp1252", errors="replace"), error.end


_CP1252_FALLBACK = "insiders-cp1252-fallback"
# What a truncated, corrupt or vanished file raises while it is read.
_READ_ERRORS = (OSError, EOFError, csv.Error, zlib.error)
codecs.register_error(_CP1252_FALLBACK, _cp1252_fallback)


def _open_text(path: Path) -> IO[str]:
    if not path.exists():
        raise InputFileError(f"{path}: no such file; pass a .csv or .csv.gz of invoice lines")
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder; pass a .csv or .csv.gz file")
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
    path = Path(path)
    with _open_text(path) as text:
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            raise InputFileError(f"{path}: the file is empty") from None
        except _READ_ERRORS as exc:
            raise InputFileError(f"{path}: cannot read it ({exc})") from None
        layout = detect_layout(header)
        date_format = layout.date_format
        positions: dict[str, int] = {}
        last_date, last_iso = "", ""
        try:
            for row in reader:
                if len(row) < 8:
                    if not any(row):
                        continue
                    row = row + [""] * (8 - len(row))
                invoice, stock, description, qty, date, price, customer, country = row[:8]
                position = positions.get(invoice, 0)
                positions[invoice] = position + 1
                if date != last_date:
                    last_date, last_iso = date, _iso(date, date_format)
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
        except _READ_ERRORS as exc:
            raise InputFileError(
                f"{path}: cannot read it past line {reader.line_num} ({exc})"
            ) from None


def _iso(text: str, date_format: str | None) -> str:
    """Normalise a file's date to ISO 8601; an unparseable one passes through unchanged."""
    text = text.strip()
    if date_format is None:
        return text.replace(" ", "T", 1) if len(text) >= 16 and text[10] == " " else text
    try:
        return datetime.strptime(text, date_format).isoformat()
    except ValueError:
        return text
