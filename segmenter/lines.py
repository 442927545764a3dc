"""Invoice lines and how feature spec v1 classifies them.

A validated line is either a *purchase*, a *return*, or *ignored* with a reason
(no customer, not a product, zero price). Ignored lines are valid input: they are
counted, never sent to the dead-letter topic.

A line with no stock code (``None``) is a whole order without product lines, as
retailers that send purchases rather than invoice lines have them: it counts like a
product line of that value.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from enum import StrEnum

# Feature spec v1: a product stock code is five digits and up to two letters.
# POST, DOT, M, C2, BANK CHARGES, gift_0001_20, DCGS... are not products.
PRODUCT_CODE = re.compile(r"\d{5}[A-Za-z]{0,2}")  # matched in full: fullmatch, not match

MICROS_PER_POUND = 1_000_000


class LineKind(StrEnum):
    PURCHASE = "purchase"
    RETURN = "return"
    IGNORED = "ignored"


class IgnoreReason(StrEnum):
    NO_CUSTOMER = "no_customer"
    NOT_A_PRODUCT = "not_a_product"
    ZERO_PRICE = "zero_price"


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One validated invoice line.

    Money is kept as integer micro-pounds and time as integer epoch seconds
    (event time, the retailer's local clock, no zone) so that sums are exact and
    every store (memory, Redis/Lua) computes bit-identical features.
    """

    event_id: str
    invoice_no: str
    stock_code: str | None  # None: a whole order, no product lines
    quantity: int
    invoice_ts: int
    unit_price_micros: int
    customer_id: str | None
    country: str = ""
    description: str = ""


_product_cache: dict[str, bool] = {}


def is_product(stock_code: str) -> bool:
    """Whether ``stock_code`` names a product under spec v1.

    >>> is_product("85123A"), is_product("POST"), is_product("gift_0001_20")
    (True, False, False)
    """
    known = _product_cache.get(stock_code)
    if known is None:
        # A few thousand distinct codes: caching the regex verdict is a hot-path win.
        known = _product_cache[stock_code] = PRODUCT_CODE.fullmatch(stock_code) is not None
    return known


def classify(line: InvoiceLine) -> tuple[LineKind, IgnoreReason | None]:
    """Spec v1: which kind of line this is, and why it is ignored if it is.

    >>> line = InvoiceLine("1:0", "1", "85123A", 6, 0, 2_550_000, "17850")
    >>> classify(line)
    (<LineKind.PURCHASE: 'purchase'>, None)
    >>> classify(InvoiceLine("1:1", "1", "POST", 1, 0, 18_000_000, "17850"))[1].value
    'not_a_product'

    A whole order (no stock code) is a purchase, or a return, of its value; at price 0
    it is ignored as any line is:

    >>> classify(InvoiceLine("L2:0", "L2", None, 1, 0, 11_770_000, "00001"))[0].value
    'purchase'
    >>> classify(InvoiceLine("L3:0", "L3", None, 1, 0, 0, "00001"))[1].value
    'zero_price'
    """
    if line.customer_id is None:
        return LineKind.IGNORED, IgnoreReason.NO_CUSTOMER
    if line.stock_code is not None and not is_product(line.stock_code):
        return LineKind.IGNORED, IgnoreReason.NOT_A_PRODUCT
    if line.unit_price_micros <= 0:
        return LineKind.IGNORED, IgnoreReason.ZERO_PRICE
    return (LineKind.PURCHASE if line.quantity > 0 else LineKind.RETURN), None


def fingerprint(line: InvoiceLine) -> int:
    """A short digest of what a line says, to tell a repeat of an event id from a conflict.

    Two deliveries of one event id with the same fingerprint are the same line; with
    another, the second is a ``conflicting_duplicate`` (the first content stands).

    >>> a = InvoiceLine("536365:0", "536365", "85123A", 6, 1291191960, 2_550_000, "17850")
    >>> fingerprint(a) == fingerprint(a), fingerprint(a) == fingerprint(
    ...     InvoiceLine("536365:0", "536365", "85123A", 7, 1291191960, 2_550_000, "17850"))
    (True, False)
    >>> order = InvoiceLine("L2:0", "L2", None, 1, 852076800, 11_770_000, "00001")
    >>> fingerprint(order) == fingerprint(order), fingerprint(order) == fingerprint(
    ...     InvoiceLine("L2:0", "L2", "None", 1, 852076800, 11_770_000, "00001"))
    (True, False)
    """
    # No stock code digests as a NUL, which no real code is; a line with a code digests as
    # it always did, so state saved before whole orders existed still tells repeats apart.
    stock = "\x00" if line.stock_code is None else line.stock_code
    text = (
        f"{line.invoice_no}\x1f{stock}\x1f{line.quantity}\x1f"
        f"{line.unit_price_micros}\x1f{line.invoice_ts}\x1f{line.customer_id or ''}"
    )
    return zlib.crc32(text.encode())
