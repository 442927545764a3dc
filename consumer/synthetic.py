"""Synthetic retail histories: invoice lines in the UCI Online Retail layout, at any size.

:func:`generate` yields the CSV text of a history of ``customers`` customers, the same
text for the same arguments; :func:`write_history` writes it to a ``.csv`` or ``.csv.gz``.
Its statistics are UCI Online Retail's: the profile in :mod:`consumer.synthetic_profile`
was fitted once from the real file by ``benches/fit_synthetic.py``, and this module never
reads that file.

A history is made in two passes:

1. *Invoices* (:class:`Plan`; one row per invoice, a twentieth of the lines). Each
   customer has a first purchase, spread over the period as UCI's first purchases are,
   then repeat visits at a rate of their own (lognormal across customers; UCI shows no
   dropout beyond what the rates explain, so the fitted dropout rate is nearly 0).
   Time runs on a *business clock* that goes faster in busy months and on busy weekdays
   and stands still on Saturdays and over Christmas, so the seasons, the weekday mix and
   the gaps between a customer's invoices come out together. A visit may hold a few
   invoices minutes apart; an invoice may be returned in part, days later. Shoppers
   without a customer id, stock adjustments, fees and the rest of the file's junk are
   invoices of their own, at the real rates. Every invoice gets its minute, and all are
   sorted by time.
2. *Lines* (:class:`Lines`), written in time order a chunk of invoices at a time, so that
   memory holds the invoices and one chunk whatever the size. What a line holds (its
   product, quantity and price tier) is a hash of the seed, the invoice and the line's
   position: a pure function, so a return re-derives the lines it returns, however far
   back they were bought, without keeping them.

Customers differ as UCI's do: basket size, quantities and the price level of what they
buy are correlated latents (big baskets, small quantities, cheaper products).

>>> text = "".join(generate(40, seed=7))
>>> text.splitlines()[0]
'InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country'
>>> text == "".join(generate(40, seed=7)), text == "".join(generate(40, seed=8))
(True, False)
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from segmenter.errors import InsidersError

log = logging.getLogger(__name__)

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
FIRST_INVOICE = 536365  # UCI's first invoice number; the numbers run on in time order
FIRST_CUSTOMER = 12346  # UCI's lowest customer id
HOME = "United Kingdom"  # where postage is not charged
MAX_CUSTOMERS = 50_000_000
MAX_DAYS = 36_500
FIRST_DAY, PERIOD_DAYS = date(2010, 12, 1), 374  # UCI's period, the profile's default

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

# Kinds of invoice.
PURCHASE, CANCEL, JUNK, MISTAKE, ADJUST, BAD_DEBT = range(6)


class GenerateError(InsidersError):
    """Arguments no history can be generated from (a size, a date, a file name)."""


# --- the profile as arrays ---------------------------------------------------------------------


def _table(pair: Sequence[Sequence[float]]) -> tuple[Floats, Floats]:
    probs, values = (np.asarray(part, dtype=np.float64) for part in pair)
    return probs, values


def _steps(pair: Sequence[Sequence[float]], u: Floats) -> Floats:
    """Inverse of a stepwise distribution: the value whose probability step ``u`` falls in.

    ``pair`` is (cumulative probabilities starting at 0, values): value k holds
    [probs[k], probs[k + 1]).

    >>> _steps([[0, 0.5, 0.9], [1, 2, 12]], np.array([0.1, 0.6, 0.95]))
    array([ 1.,  2., 12.])
    """
    probs, values = _table(pair)
    return values[np.searchsorted(probs, u, side="right") - 1]


def _quantile(pair: Sequence[Sequence[float]], u: Floats, log_scale: bool = False) -> Floats:
    """Inverse of a continuous distribution given by quantiles (probs, values), interpolated.

    >>> _quantile([[0, 1], [1, 100]], np.array([0.5])), _quantile([[0, 1], [1, 100]],
    ...     np.array([0.5]), log_scale=True)
    (array([50.5]), array([10.]))
    """
    probs, values = _table(pair)
    if log_scale:
        return np.exp(np.interp(u, probs, np.log(values)))
    return np.interp(u, probs, values)


def normal_cdf(z: Floats) -> Floats:
    """Φ(z), the standard normal distribution function (Abramowitz & Stegun 7.1.26, ±1.5e-7).

    >>> [round(float(v), 4) for v in normal_cdf(np.array([-1.96, 0.0, 1.0]))]
    [0.025, 0.5, 0.8413]
    """
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-x * x)
    return 0.5 * (1.0 + np.sign(z) * erf)


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: a bijection of 64-bit words that scrambles every bit."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


# What a line's random draws are for: each has its own stream of the hash.
(
    F_PRODUCT,
    F_DUPLICATE,
    F_QTY1,
    F_QTY2,
    F_TIER,
    F_ZERO,
    F_START,
    F_RATIO,
    F_JUNK,
    F_ORDER,
    F_OTHER,
    F_PICK,
) = range(12)
# Multipliers of the shuffle of an invoice's lines: primes above any invoice's line count.
_PRIMES = np.array([2003, 3001, 4001, 5003, 6007, 7001, 8009, 9001, 10007, 11003, 12007, 13001])


class LineDraws:
    """Uniform draws in [0, 1) that are a pure function of (seed, invoice, line, purpose).

    A line's content is re-derived wherever it is needed (a return re-reads the lines it
    returns), without keeping any state.

    >>> draws = LineDraws(1)
    >>> a = draws(np.array([5, 5]), np.array([0, 1]), F_PRODUCT)
    >>> bool((a == draws(np.array([5, 5]), np.array([0, 1]), F_PRODUCT)).all()), bool(a[0] != a[1])
    (True, True)
    """

    def __init__(self, key: int) -> None:
        self.key = _mix(np.array([key], dtype=np.uint64))[0]

    def __call__(self, invoice: npt.ArrayLike, line: npt.ArrayLike, purpose: int) -> Floats:
        word = (
            (np.asarray(invoice, dtype=np.uint64) << np.uint64(24))
            | (np.asarray(line, dtype=np.uint64) << np.uint64(5))
            | np.uint64(purpose)
        )
        bits = _mix(word ^ self.key)
        return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


# --- the calendar ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calendar:
    """The period's days, what weight each has for visits and for other invoices, and hours.

    The business clock of a customer is the running sum of day weights (``clock``): a
    customer's visits are uniform on it, so they follow the months and the weekdays.
    """

    start: date
    days: int
    weekday: Ints  # 0 = Monday
    month: Ints  # 0 = January
    visit_weight: Floats
    guest_weight: Floats
    clock: Floats  # business time at the start of each day, and at the end (days + 1)
    hour_steps: Floats  # (7, 25) cumulative hour probabilities per weekday

    @classmethod
    def of(cls, start: date, days: int, profile: Mapping[str, Any]) -> Calendar:
        dates = [start + timedelta(days=d) for d in range(days)]
        weekday = np.array([d.weekday() for d in dates], dtype=np.int64)
        month = np.array([d.month - 1 for d in dates], dtype=np.int64)
        (m0, d0), (m1, d1) = profile["closed"]
        closed = np.array(
            [(d.month, d.day) >= (m0, d0) or (d.month, d.day) <= (m1, d1) for d in dates]
        )
        months = np.asarray(profile["month_weights"], dtype=np.float64)
        visit = months[month] * np.asarray(profile["weekday_weights"])[weekday] * ~closed
        guest_months = np.asarray(profile["guest_month_weights"], dtype=np.float64)
        guest_days = np.asarray(profile["guest_weekday_weights"])[weekday]
        guest = guest_months[month] * guest_days * ~closed
        clock = np.concatenate([[0.0], np.cumsum(visit)])
        hours = np.asarray(profile["hour_weights"], dtype=np.float64)
        hours = hours / hours.sum(axis=1, keepdims=True)
        steps = np.concatenate([np.zeros((7, 1)), np.cumsum(hours, axis=1)], axis=1)
        steps[:, -1] = 1.0
        return cls(start, days, weekday, month, visit, guest, clock, steps)

    @property
    def length(self) -> float:
        """The period's length in business time."""
        return float(self.clock[-1])

    def day_of(self, business: Floats) -> Ints:
        """The day a moment of business time falls on (never a day of weight 0)."""
        day = np.searchsorted(self.clock, business, side="right") - 1
        return np.clip(day, 0, self.days - 1)

    def guest_days(self, rng: np.random.Generator, count: int) -> Ints:
        """``count`` days drawn in proportion to the weights of invoices without customers."""
        cumulative = np.cumsum(self.guest_weight)
        return np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right")

    def next_open(self, day: Ints) -> Ints:
        """Each day, or the first open day after it (days past the end stay past it)."""
        open_days = np.flatnonzero(self.visit_weight > 0)
        at = np.searchsorted(open_days, day)
        out = np.full(day.shape, self.days, dtype=np.int64)
        inside = at < len(open_days)
        out[inside] = open_days[at[inside]]
        return out

    def minutes(self, rng: np.random.Generator, day: Ints) -> Ints:
        """A minute of the period on each day: the hour as that weekday's hours go."""
        wd = self.weekday[np.clip(day, 0, self.days - 1)]
        flat = (self.hour_steps[:, :-1] + np.arange(7)[:, None]).ravel()
        hour = np.searchsorted(flat, rng.random(len(day)) + wd, side="right") - 1 - wd * 24
        hour = np.clip(hour, 0, 23)
        return day * 1440 + hour * 60 + rng.integers(0, 60, len(day))


# --- pass 1: invoices ----------------------------------------------------------------------------


@dataclass
class Invoices:
    """One row per invoice, in the order made (``key`` is the row): who, when, what kind.

    ``lines`` is the number of product lines (of a purchase, or returned by a
    cancellation), ``junk`` the index of a junk code (in a basket, or the whole
    invoice), ``source`` the row a cancellation returns from.
    """

    minute: Ints
    customer: Ints  # index into the customers; -1: no customer id
    kind: Ints
    lines: Ints
    junk: Ints
    source: Ints
    country: Ints
    bulk: npt.NDArray[np.float32]  # the invoice's part of its lines' quantities (latent)

    FIELDS = ("minute", "customer", "kind", "lines", "junk", "source", "country", "bulk")
    # Stored small: a million customers make six million invoices.
    DTYPES = (np.int32, np.int32, np.int8, np.int16, np.int16, np.int32, np.int16, np.float32)

    @staticmethod
    def concat(parts: Sequence[Invoices]) -> Invoices:
        return Invoices(
            *(
                np.concatenate([getattr(p, f) for p in parts]).astype(dtype)
                for f, dtype in zip(Invoices.FIELDS, Invoices.DTYPES, strict=True)
            )
        )

    def take(self, index: Ints) -> Invoices:
        return Invoices(*(getattr(self, f)[index] for f in Invoices.FIELDS))

    def __len__(self) -> int:
        return len(self.minute)


@dataclass
class Customers:
    ids: Ints  # the customer id written in the file
    country: Ints
    basket: Floats  # latent of their basket size (standard normal)
    bulk: Floats  # latent of their quantities (standard normal)
    price: Floats  # latent of the price level of what they buy (standard normal)
    returns: Floats  # probability that an invoice of theirs is partly returned


def default_profile() -> Mapping[str, Any]:
    """UCI Online Retail's profile (imported when first needed: it is a large literal)."""
    from consumer.synthetic_profile import UCI

    return UCI


def _part(
    minute: Ints,
    customer: int | Ints,
    kind: int | Ints,
    lines: int | Ints = 1,
    junk: int | Ints = -1,
    source: int | Ints = -1,
    country: int | Ints = 0,
    bulk: float | Floats = 0.0,
) -> Invoices:
    n = len(minute)

    def full(value: int | Ints) -> Ints:
        return np.broadcast_to(np.asarray(value, dtype=np.int64), (n,)).copy()

    bulks = np.broadcast_to(np.asarray(bulk, dtype=np.float32), (n,)).copy()
    return Invoices(
        minute.astype(np.int64),
        full(customer),
        full(kind),
        full(lines),
        full(junk),
        full(source),
        full(country),
        bulks,
    )


class Plan:
    """Pass 1: the customers and every invoice of the history, sorted by time.

    >>> plan = Plan(200, seed=1)
    >>> len(plan.customers.ids), bool((np.diff(plan.invoices.minute[plan.order]) >= 0).all())
    (200, True)
    """

    def __init__(
        self,
        customers: int,
        seed: int,
        start: date | None = None,
        days: int | None = None,
        profile: Mapping[str, Any] | None = None,
    ) -> None:
        self.profile: Mapping[str, Any] = profile if profile is not None else default_profile()
        p = self.profile
        self.start = date.fromisoformat(p["period_start"]) if start is None else start
        self.days = int(p["period_days"]) if days is None else days
        self.calendar = cal = Calendar.of(self.start, self.days, p)
        rng = np.random.default_rng(seed)
        self.line_key = int(rng.integers(0, 2**63))
        self.junk_codes = _junk_codes(p)
        self.customers = self._customers(rng, customers)
        parts = self._customer_invoices(rng)
        parts.append(self._guest_invoices(rng, customers))
        invoices = Invoices.concat(parts)
        invoices = Invoices.concat([invoices, self._spawned(rng, invoices)])
        # Invoices made after the period (a return days after the last purchase) are dropped.
        inside = np.flatnonzero(invoices.minute < cal.days * 1440)
        keep = np.full(len(invoices), -1, dtype=np.int64)
        keep[inside] = np.arange(len(inside))
        invoices = invoices.take(inside)
        spawned = invoices.source >= 0
        invoices.source[spawned] = keep[invoices.source[spawned]]
        self.invoices = invoices
        self.order = np.lexsort((np.arange(len(invoices)), invoices.minute))

    # -- customers and their purchases

    def _customers(self, rng: np.random.Generator, count: int) -> Customers:
        p, cal = self.profile, self.calendar
        mean, spread = p["visit_rate"]
        born = cal.length * _quantile(p["first_purchase"], rng.random(count))
        rate = np.exp(mean + spread * rng.standard_normal(count))
        life = rng.exponential(1.0, count) / max(p["dropout"], 1e-300)
        window = np.minimum(life, cal.length - born)
        repeats = rng.poisson(rate * window)
        countries = np.asarray([share for _, share in p["countries"]])
        country = rng.choice(len(countries), count, p=countries / countries.sum())
        cancel = p["cancel"]
        mean, concentration = cancel["rate"], cancel["concentration"]
        returns = rng.beta(mean * concentration, (1 - mean) * concentration, count)
        ids = FIRST_CUSTOMER + rng.permutation(count)
        # Visits: the first purchase, then the repeats, uniform in business time.
        # Repeats are more regular than a Poisson process's: the k-th of n sits near
        # (k + 1/2) / n of the window, jittered over ``visit_jitter`` of those n slots.
        who = np.repeat(np.arange(count), 1 + repeats)
        first_of = np.concatenate([[0], np.cumsum(1 + repeats)[:-1]])
        slot = np.arange(len(who)) - np.repeat(first_of, 1 + repeats) - 1
        n = np.maximum(repeats[who], 1)
        jitter = p["visit_jitter"] * (rng.random(len(who)) - 0.5)
        business = born[who] + window[who] * np.mod((slot + 0.5 + jitter) / n, 1.0)
        business[first_of] = born
        self._visits = (who, business)
        # Customers with big baskets buy few of each product, and cheaper ones: their basket
        # size, quantities and price level are correlated normal latents.
        basket, bulk, price = np.linalg.cholesky(np.asarray(p["customer_latents"])) @ (
            rng.standard_normal((3, count))
        )
        return Customers(
            ids=ids.astype(np.int64),
            country=country.astype(np.int64),
            basket=basket,
            bulk=bulk,
            price=price,
            returns=returns,
        )

    def _customer_invoices(self, rng: np.random.Generator) -> list[Invoices]:
        p, cal, people = self.profile, self.calendar, self.customers
        who, business = self._visits
        del self._visits
        visit_minute = cal.minutes(rng, cal.day_of(business))
        # A visit may hold more invoices, minutes apart.
        extra = _steps(_pmf_steps(p["extra_invoices"]), rng.random(len(who))).astype(np.int64)
        per_visit = 1 + extra
        customer = np.repeat(who, per_visit)
        minute = np.repeat(visit_minute, per_visit)
        first_in_visit = np.concatenate([[0], np.cumsum(per_visit)[:-1]])
        gap = np.maximum(1, _steps(p["session_gap_minutes"], rng.random(len(minute)))).astype(
            np.int64
        )
        gap[first_in_visit] = 0
        running = np.cumsum(gap)
        minute = minute + running - np.repeat(running[first_in_visit], per_visit)
        # Lines: the customer's basket size, the weekday's (Sundays' are bigger), the month's.
        share = p["lines_customer_share"]
        own = rng.standard_normal(len(minute))
        z = math.sqrt(share) * people.basket[customer] + math.sqrt(1 - share) * own
        size = _quantile(p["lines"], normal_cdf(z), log_scale=True)
        rho = p["invoice_bulk_corr"]
        bulk = rho * own + math.sqrt(1 - rho * rho) * rng.standard_normal(len(minute))
        day = np.minimum(minute // 1440, cal.days - 1)
        factor = (
            np.asarray(p["weekday_lines"], dtype=np.float64)[cal.weekday[day]]
            * np.asarray(p["month_lines"], dtype=np.float64)[cal.month[day]]
        )
        lines = np.maximum(1, np.rint(size * factor)).astype(np.int64)
        country = people.country[customer]
        home = [name for name, _ in p["countries"]].index(HOME)
        junk = self._basket_junk(rng, np.where(country == home, "uk", "other"))
        return [_part(minute, customer, PURCHASE, lines, junk, country=country, bulk=bulk)]

    def _basket_junk(self, rng: np.random.Generator, where: npt.NDArray[np.str_]) -> Ints:
        """A junk line (postage, carriage, a manual line...) in some baskets, at UCI's rates."""
        junk = np.full(len(where), -1, dtype=np.int64)
        u = rng.random(len(where))
        for context in ("uk", "other", "guest"):
            at = where == context
            low = np.zeros(int(at.sum()))
            for index, spec in enumerate(self.profile["basket_junk"]):
                rate = spec[context]
                hit = (u[at] >= low) & (u[at] < low + rate)
                picked = junk[at]
                picked[hit] = self.junk_codes.basket_offset + index
                junk[at] = picked
                low = low + rate
        return junk

    # -- shoppers without a customer id, and the file's other junk

    def _guest_invoices(self, rng: np.random.Generator, customers: int) -> Invoices:
        p, cal = self.profile, self.calendar
        parts = []
        count = rng.poisson(customers * p["guest"]["rate"])
        minute = cal.minutes(rng, cal.guest_days(rng, count))
        lines = np.maximum(
            1, np.rint(_quantile(p["guest"]["lines"], rng.random(count), log_scale=True))
        ).astype(np.int64)
        shares = np.asarray([share for _, share in p["guest_countries"]])
        country = rng.choice(len(shares), count, p=shares / shares.sum())
        junk = self._basket_junk(rng, np.full(count, "guest"))
        parts.append(_part(minute, -1, PURCHASE, lines, junk, country=country + self._guest_base))
        for index, spec in enumerate(p["guest_junk"]):
            count = rng.poisson(customers * spec["rate"])
            minute = cal.minutes(rng, cal.guest_days(rng, count))
            code = self.junk_codes.guest_offset + index
            parts.append(_part(minute, -1, JUNK, 1, code, country=self._guest_base))
        count = rng.poisson(customers * p["adjust"]["rate"])
        minute = cal.minutes(rng, cal.guest_days(rng, count))
        parts.append(_part(minute, -1, ADJUST, 1, -1, country=self._guest_base))
        count = rng.poisson(customers * p["bad_debt"]["rate"])
        minute = np.repeat(cal.minutes(rng, cal.guest_days(rng, count)), 3)
        parts.append(
            _part(minute, -1, BAD_DEBT, 1, np.tile([0, 1, 1], count), country=self._guest_base)
        )
        return Invoices.concat(parts)

    @property
    def _guest_base(self) -> int:
        return len(self.profile["countries"])

    # -- what purchases set off: returns, fees, mistakes

    def _spawned(self, rng: np.random.Generator, invoices: Invoices) -> Invoices:
        p, people = self.profile, self.customers
        purchases = np.flatnonzero(invoices.kind == PURCHASE)
        customer = invoices.customer[purchases]
        known = customer >= 0
        chance = np.where(known, people.returns[np.maximum(customer, 0)], p["guest"]["cancel"])
        cancelled = purchases[rng.random(len(purchases)) < chance]
        cancel = p["cancel"]
        count = len(cancelled)
        lines = np.minimum(
            np.maximum(1, _steps(cancel["lines"], rng.random(count))).astype(np.int64),
            invoices.lines[cancelled],
        )
        minute = self._later(rng, invoices.minute[cancelled], cancel)
        parts = [
            _part(
                minute,
                invoices.customer[cancelled],
                CANCEL,
                lines,
                -1,
                cancelled,
                invoices.country[cancelled],
            )
        ]
        # Fees, discounts and manual lines on their own invoice, some time after a purchase.
        mine = purchases[known]
        u = rng.random(len(mine))
        low = 0.0
        for index, spec in enumerate(p["spawned_junk"]):
            hit = mine[(u >= low) & (u < low + spec["rate"])]
            low += spec["rate"]
            minute = self._later(rng, invoices.minute[hit], cancel)
            code = self.junk_codes.spawned_offset + index
            parts.append(
                _part(minute, invoices.customer[hit], JUNK, 1, code, hit, invoices.country[hit])
            )
        # A mistake: one huge line minutes after a purchase, cancelled minutes later.
        mistake = p["mistake"]
        hit = mine[rng.random(len(mine)) < mistake["rate"]]
        at = invoices.minute[hit] + rng.integers(1, mistake["minutes"], len(hit))
        back = at + rng.integers(1, mistake["minutes"], len(hit))
        first = len(invoices) + sum(len(part) for part in parts)
        parts.append(_part(at, invoices.customer[hit], MISTAKE, 1, -1, -1, invoices.country[hit]))
        parts.append(
            _part(
                back,
                invoices.customer[hit],
                CANCEL,
                1,
                -1,
                first + np.arange(len(hit)),
                invoices.country[hit],
            )
        )
        return Invoices.concat(parts)

    def _later(self, rng: np.random.Generator, minute: Ints, cancel: Mapping[str, Any]) -> Ints:
        """When a return (or a fee) comes: minutes later in the same session, or days later."""
        cal = self.calendar
        count = len(minute)
        same = rng.random(count) < cancel["same_session"]
        soon = minute + np.maximum(1, _steps(cancel["session_minutes"], rng.random(count)))
        delay = np.maximum(1, np.rint(_quantile(cancel["delay_days"], rng.random(count))))
        day = cal.next_open(minute // 1440 + delay.astype(np.int64))
        late = np.where(
            day < cal.days, cal.minutes(rng, np.minimum(day, cal.days - 1)), cal.days * 1440
        )
        return np.where(same, soon, late).astype(np.int64)


def _pmf_steps(pmf: Sequence[float]) -> list[list[float]]:
    """A probability mass function over 0, 1, 2... as a step table for :func:`_steps`."""
    weights = np.asarray(pmf, dtype=np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(weights / weights.sum())[:-1]])
    return [cumulative.tolist(), list(range(len(pmf)))]


@dataclass(frozen=True)
class JunkCodes:
    """Every junk code of the profile in one list: baskets', spawned, and guests' ones."""

    specs: list[Mapping[str, Any]]
    basket_offset: int
    spawned_offset: int
    guest_offset: int


def _junk_codes(p: Mapping[str, Any]) -> JunkCodes:
    basket, spawned, guest = p["basket_junk"], p["spawned_junk"], p["guest_junk"]
    bad_debt = [
        {"code": "B", "description": "Adjust bad debt", "cancel": False, "sign": sign}
        for sign in (1, -1)
    ]
    return JunkCodes(
        [*bad_debt, *basket, *spawned, *guest],
        len(bad_debt),
        len(bad_debt) + len(basket),
        len(bad_debt) + len(basket) + len(spawned),
    )


# --- the catalogue -------------------------------------------------------------------------------

# Price tiers of a product: the trade price, a lower and a higher one, the retail price
# shoppers without an account pay, and a free line.
TRADE, LOW, HIGH, RETAIL, FREE = range(5)

_COLOURS = [
    "WHITE",
    "RED",
    "PINK",
    "BLUE",
    "GREEN",
    "IVORY",
    "CREAM",
    "BLACK",
    "SILVER",
    "GOLD",
    "PURPLE",
    "ORANGE",
    "YELLOW",
    "VINTAGE",
    "RETRO",
    "SWEETHEART",
    "REGENCY",
    "SPOTTY",
]
_THEMES = [
    "HEART",
    "STAR",
    "FLORAL",
    "PAISLEY",
    "POLKADOT",
    "CHRISTMAS",
    "BIRD",
    "ROSE",
    "OWL",
    "UNION JACK",
    "SKULL",
    "DOILY",
    "HANGING",
    "GLASS",
    "WOODEN",
    "METAL",
    "ENAMEL",
    "LACE",
]
_ITEMS = [
    "T-LIGHT HOLDER",
    "LANTERN",
    "MUG",
    "BUNTING",
    "CAKE STAND",
    "TEA TOWEL",
    "JUMBO BAG",
    "LUNCH BOX",
    "NAPKINS",
    "CANDLE",
    "PHOTO FRAME",
    "DOOR SIGN",
    "CUSHION COVER",
    "BOWL",
    "HOT WATER BOTTLE",
    "PURSE",
    "NOTEBOOK",
    "PARTY CUPS",
    "GIFT WRAP",
    "COAT HANGER",
    "BAKING SET",
    "CLOCK",
    "DOORSTOP",
    "PEG BAG",
    "PLATE",
    "TRINKET BOX",
    "CHARM",
]


def _csv_field(text: str) -> str:
    """A field as the csv module writes it (quoted only when it must be; empty as nothing).

    >>> _csv_field("A, B"), _csv_field('7" SINGLE'), _csv_field("")
    ('"A, B"', '"7"" SINGLE"', '')
    """
    if not text:
        return ""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([text])
    return out.getvalue()


def price_text(value: float) -> str:
    """A price as UCI writes it: Python's shortest round-trip float.

    >>> price_text(2.55), price_text(18), price_text(0.001)
    ('2.55', '18.0', '0.001')
    """
    return repr(float(value))


class Catalogue:
    """The shop's products: codes, names, prices by tier, and how popular each is.

    Product ``k`` is the ``k``-th most popular; its code is drawn at random.
    """

    def __init__(self, rng: np.random.Generator, profile: Mapping[str, Any]) -> None:
        count = int(profile["products"])
        bases = rng.choice(np.arange(10002, 90000), size=count, replace=False)
        variant = rng.random(count) < profile["variant_share"]
        letters = rng.integers(0, 8, count)
        codes = [
            f"{base}{'ABCDEFGH'[letter]}" if v else str(base)
            for base, v, letter in zip(
                bases.tolist(), variant.tolist(), letters.tolist(), strict=True
            )
        ]
        names = self._names(rng, count, profile)
        self.code_names = np.array(
            [f"{code},{_csv_field(name)}" for code, name in zip(codes, names, strict=True)],
            dtype=object,
        )
        self.codes = np.array(codes, dtype=object)
        ranks, shares = _table(profile["popularity"])
        cumulative = np.interp(np.arange(1, count + 1) / count, ranks, shares)
        self.popularity = cumulative / cumulative[-1]
        # Trade prices by popularity: the best sellers cost what most lines cost.
        rank = np.arange(1, count + 1) / count
        trade = np.zeros(count)
        low = 0.0
        for upper, table in profile["product_prices"]:
            members = (rank > low) & (rank <= upper)
            trade[members] = _quantile(table, rng.random(int(members.sum())), log_scale=True)
            low = upper
        trade = np.maximum(0.01, np.round(trade, 2))
        tiers = profile["tiers"]
        low_, high_ = tiers["retail_factor"]
        prices = np.stack(
            [
                trade,
                np.maximum(0.01, np.round(trade * tiers["low_factor"], 2)),
                np.round(trade * tiers["high_factor"], 2),
                np.round(trade * rng.uniform(low_, high_, count), 2),
                np.zeros(count),
            ],
            axis=1,
        )
        self.prices = prices
        self.price_texts = np.array([price_text(v) for v in prices.ravel()], dtype=object)
        edges = np.asarray(profile["qty_band_edges"], dtype=np.float64)
        self.band = np.searchsorted(edges, trade, side="right")

    @staticmethod
    def _names(rng: np.random.Generator, count: int, profile: Mapping[str, Any]) -> list[str]:
        colour = rng.integers(0, len(_COLOURS), count)
        theme = rng.integers(0, len(_THEMES), count)
        item = rng.integers(0, len(_ITEMS), count)
        trailing = rng.random(count) < profile["trailing_space_share"]
        comma = rng.random(count) < profile["comma_share"]
        names = []
        for c, t, i, space, split in zip(
            colour.tolist(),
            theme.tolist(),
            item.tolist(),
            trailing.tolist(),
            comma.tolist(),
            strict=True,
        ):
            glue = ", " if split else " "
            names.append(f"{_COLOURS[c]} {_THEMES[t]}{glue}{_ITEMS[i]}{' ' if space else ''}")
        return names

    def product(self, u: Floats) -> Ints:
        """The product a uniform draw picks, by popularity."""
        index = np.searchsorted(self.popularity, u, side="right")
        return np.minimum(index, len(self.popularity) - 1).astype(np.int64)


# --- pass 2: lines -------------------------------------------------------------------------------


class Lines:
    """Pass 2: the lines of a chunk of invoices, as CSV text."""

    def __init__(self, plan: Plan, rng: np.random.Generator) -> None:
        self.plan = plan
        self.p = plan.profile
        self.catalogue = Catalogue(rng, plan.profile)
        self.draw = LineDraws(plan.line_key)
        self.specs = plan.junk_codes.specs
        self.cancel_codes = np.array([bool(spec.get("cancel")) for spec in self.specs])
        self.junk_names = np.array(
            [f"{s['code']},{_csv_field(s['description'])}" for s in self.specs], dtype=object
        )
        names = [name for name, _ in self.p["countries"]] + [
            name for name, _ in self.p["guest_countries"]
        ]
        self.countries = np.array([_csv_field(name) for name in names], dtype=object)
        self.ids = np.array([str(i) for i in plan.customers.ids.tolist()] + [""], dtype=object)
        small = 20_000
        self.qty_base = small
        self.qty_texts = np.array([str(q) for q in range(-small, small + 1)], dtype=object)
        notes = self.p["adjust"]["notes"]
        weights = np.asarray([w for _, w in notes], dtype=np.float64)
        self.note_steps = [
            np.concatenate([[0.0], np.cumsum(weights / weights.sum())[:-1]]).tolist(),
            list(range(len(notes))),
        ]
        self.note_names = [_csv_field(text) for text, _ in notes]

    def basket(self, rows: Ints, js: Ints) -> tuple[Ints, Ints, Ints]:
        """Product, quantity and price tier of line ``js`` of purchase ``rows`` (vectorised)."""
        inv, p, draw, cat = self.plan.invoices, self.p, self.draw, self.catalogue
        # A line may repeat the one before it, as UCI's 1% exact duplicate rows do.
        js = js.copy()
        again = (js > 0) & (draw(rows, js, F_DUPLICATE) < p["duplicate"])
        while again.any():
            js[again] -= 1
            again[again] = (js[again] > 0) & (
                draw(rows[again], js[again], F_DUPLICATE) < p["duplicate"]
            )
        # Products are drawn by popularity, stratified over the invoice's lines (line k takes
        # its own 1/n of the demand, in an order shuffled per invoice), so an invoice rarely
        # holds a product twice, as UCI's rarely do.
        size = np.maximum(inv.lines[rows], 1)
        prime = _PRIMES[(draw(rows, 0, F_ORDER) * len(_PRIMES)).astype(np.int64)]
        shift = (draw(rows, 1, F_ORDER) * size).astype(np.int64)
        stratum = (prime * js + shift) % size
        first = cat.product((stratum + draw(rows, js, F_PRODUCT)) / size)
        other = cat.product((stratum + draw(rows, js, F_OTHER)) / size)
        # Of two products drawn from the stratum, a customer who buys dear takes the dearer
        # more often: on average either, so the products keep their popularity.
        customer = inv.customer[rows]
        guest = customer < 0
        level = np.where(guest, 0.0, self.plan.customers.price[np.maximum(customer, 0)])
        cheap = draw(rows, js, F_PICK) < normal_cdf(-p["price_tilt"] * level)
        cheaper = cat.prices[first, TRADE] <= cat.prices[other, TRADE]
        product = np.where(cheap == cheaper, first, other)
        z = np.sqrt(-2.0 * np.log1p(-draw(rows, js, F_QTY1))) * np.cos(
            2 * np.pi * draw(rows, js, F_QTY2)
        )
        own, order, line = (math.sqrt(v) for v in p["qty_levels"])
        bulk = self.plan.customers.bulk[np.maximum(customer, 0)]
        mean, spread = p["qty_shift"]
        z = np.where(guest, z, (own * bulk + order * inv.bulk[rows] + line * z - mean) / spread)
        u = normal_cdf(z)
        grid = np.asarray(p["qty_probs"], dtype=np.float64)
        step = np.searchsorted(grid, u, side="right") - 1
        tables = np.asarray(p["qty_tables"], dtype=np.int64)
        qty = np.where(
            guest,
            np.asarray(p["guest"]["qty"], dtype=np.int64)[step],
            tables[cat.band[product], step],
        )
        mistake = inv.kind[rows] == MISTAKE
        if mistake.any():
            qty[mistake] = np.rint(
                _quantile(p["mistake"]["qty"], draw(rows[mistake], js[mistake], F_QTY1))
            ).astype(np.int64)
        tiers = p["tiers"]
        t = draw(rows, js, F_TIER)
        small = _tier(t, tiers["customer"])
        large = _tier(t, tiers["customer_bulk"])
        tier = np.where(
            guest, _tier(t, tiers["guest"]), np.where(qty >= tiers["bulk_min_qty"], large, small)
        )
        tier[mistake] = TRADE
        free = ~guest & (draw(rows, js, F_ZERO) < p["zero_price"])
        tier[free] = FREE
        return product, qty, tier

    def text(self, positions: Ints, first_number: int) -> tuple[str, int]:
        """The CSV lines of the invoices at ``positions`` of the time order, and their count."""
        plan, inv, p, draw, cat = self.plan, self.plan.invoices, self.p, self.draw, self.catalogue
        rows = plan.order[positions]
        kind = inv.kind[rows]
        n = inv.lines[rows]
        junk = inv.junk[rows]
        count = np.where(kind == PURCHASE, n + (junk >= 0), np.where(kind == CANCEL, n, 1))
        total = int(count.sum())
        local = np.repeat(np.arange(len(rows)), count)
        j = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        row = rows[local]
        k = kind[local]
        code_name = np.empty(total, dtype=object)
        qty = np.zeros(total, dtype=np.int64)
        price = np.empty(total, dtype=object)

        # Product lines of purchases (and of mistakes).
        bought = ((k == PURCHASE) & (j < n[local])) | (k == MISTAKE)
        if bought.any():
            product, q, tier = self.basket(row[bought], j[bought])
            code_name[bought] = cat.code_names[product]
            qty[bought] = q
            price[bought] = cat.price_texts[product * 5 + tier]
        # Returns: lines of the invoice they return, re-derived, with less or all of it.
        back = k == CANCEL
        if back.any():
            rb, jb = row[back], j[back]
            source = inv.source[rb]
            size = inv.lines[source]
            start = np.floor(draw(rb, 0, F_START) * size).astype(np.int64)
            product, q, tier = self.basket(source, (start + jb) % size)
            cancel = p["cancel"]
            ratio = _quantile(cancel["ratio"], draw(rb, jb, F_RATIO))
            part = np.clip(np.ceil(q * ratio), 1, q).astype(np.int64)
            full = (draw(rb, jb, F_TIER) < cancel["full_share"]) | (inv.kind[source] == MISTAKE)
            code_name[back] = cat.code_names[product]
            qty[back] = -np.where(full, q, part)
            price[back] = cat.price_texts[product * 5 + tier]
        # Junk: a code of the profile's, with its own prices and quantities.
        single = (k == PURCHASE) & (j >= n[local]) | (k == JUNK) | (k == BAD_DEBT)
        if single.any():
            at = np.flatnonzero(single)
            code = junk[local[at]]
            for index in np.unique(code).tolist():
                here = at[code == index]
                spec = self.specs[index]
                rh, jh = row[here], j[here]
                code_name[here] = self.junk_names[index]
                if "sign" in spec:  # bad debt: one amount, written off and reversed
                    amount = _quantile(p["bad_debt"]["amounts"], draw(inv.minute[rh], 0, F_JUNK))
                    qty[here] = 1
                    values = np.round(amount * spec["sign"], 2)
                else:
                    q = _steps(spec["qty"], draw(rh, jh, F_QTY1)).astype(np.int64)
                    qty[here] = -q if spec.get("cancel") else q
                    values = np.round(_steps(spec["price"], draw(rh, jh, F_JUNK)), 3)
                price[here] = [price_text(v) for v in values.tolist()]
        # Stock adjustments: a product, no price, a note for a description.
        adjust = k == ADJUST
        if adjust.any():
            ra, ja = row[adjust], j[adjust]
            product = cat.product(draw(ra, ja, F_PRODUCT))
            note = _steps(self.note_steps, draw(ra, ja, F_TIER)).astype(np.int64)
            names = np.array(self.note_names, dtype=object)[note]
            code_name[adjust] = cat.codes[product] + "," + names
            qty[adjust] = _steps(p["adjust"]["qty"], draw(ra, ja, F_QTY1)).astype(np.int64)
            price[adjust] = "0.0"

        # The text: what is the same for an invoice's lines is made once per invoice.
        numbers = np.arange(first_number, first_number + len(rows))
        prefix = np.where(
            (kind == CANCEL) | ((kind == JUNK) & self.cancel_codes[np.maximum(junk, 0)]),
            "C",
            np.where(kind == BAD_DEBT, "A", ""),
        )
        when = np.datetime64(plan.start, "m") + inv.minute[rows].astype("timedelta64[m]")
        stamps = np.datetime_as_string(when, unit="m")
        customer = inv.customer[rows]
        heads = [f"{a}{b}," for a, b in zip(prefix.tolist(), numbers.tolist(), strict=True)]
        mids = [f",{s[:10]} {s[11:]}:00," for s in stamps.tolist()]
        tails = [
            f",{c},{country}\n"
            for c, country in zip(
                self.ids[customer].tolist(),
                self.countries[inv.country[rows]].tolist(),
                strict=True,
            )
        ]
        head = np.array(heads, dtype=object)[local]
        mid = np.array(mids, dtype=object)[local]
        tail = np.array(tails, dtype=object)[local]
        inside = np.abs(qty) <= self.qty_base
        texts = np.empty(total, dtype=object)
        texts[inside] = self.qty_texts[qty[inside] + self.qty_base]
        texts[~inside] = [str(q) for q in qty[~inside].tolist()]
        text = "".join(
            [
                f"{a}{b},{c}{d}{e}{f}"
                for a, b, c, d, e, f in zip(
                    head.tolist(),
                    code_name.tolist(),
                    texts.tolist(),
                    mid.tolist(),
                    price.tolist(),
                    tail.tolist(),
                    strict=True,
                )
            ]
        )
        return text, total


def _tier(u: Floats, shares: Sequence[float]) -> Ints:
    """A price tier from a uniform draw and the shares of (trade, low, high, retail)."""
    cumulative = np.cumsum(np.asarray(shares, dtype=np.float64))
    return np.minimum(np.searchsorted(cumulative / cumulative[-1], u, side="right"), 3)


# --- the public functions ------------------------------------------------------------------------


def generate(
    customers: int,
    seed: int,
    start: date | None = None,
    days: int | None = None,
    chunk_invoices: int = 10_000,
    progress: Callable[[int, int, int], None] | None = None,
    profile: Mapping[str, Any] | None = None,
) -> Iterator[str]:
    """The CSV text of a synthetic history, in chunks: the header, then lines in time order.

    ``customers`` customers buy over ``days`` days from ``start`` (by default UCI's period,
    the 374 days from 2010-12-01 to 2011-12-09). After each chunk,
    ``progress(invoices_done, invoices, lines_done)`` is called. No I/O: :func:`write_history`
    writes the chunks to a file. ``profile`` is :data:`consumer.synthetic_profile.UCI`
    unless given (``benches/fit_synthetic.py`` passes others).

    >>> lines = "".join(generate(30, seed=3)).splitlines()
    >>> lines[1].count(","), {line[:1] for line in lines[1:]} <= {"5", "A", "C"}
    (7, True)
    """
    check(customers, seed, start, days)
    started = time.perf_counter()
    plan = Plan(customers, seed, start, days, profile)
    lines = Lines(plan, np.random.default_rng([seed, 1]))
    total = len(plan.order)
    log.info(
        "planned %s invoices of %s customers in %.1fs; writing their lines",
        f"{total:,}",
        f"{customers:,}",
        time.perf_counter() - started,
    )
    yield HEADER
    done = 0
    for low in range(0, total, chunk_invoices):
        high = min(total, low + chunk_invoices)
        text, count = lines.text(np.arange(low, high), FIRST_INVOICE + low)
        done += count
        yield text
        if progress is not None:
            progress(high, total, done)


def check(customers: int, seed: int, start: date | None, days: int | None) -> None:
    """Raise :class:`GenerateError` for arguments no usable history can have.

    The service rejects invoice dates before 1990 or more than a day ahead of its clock
    (``implausible_date``), so a history must lie between the two.

    >>> check(0, 1, None, None)
    Traceback (most recent call last):
    ...
    consumer.synthetic.GenerateError: --customers 0: want 1 to 50,000,000
    >>> check(10, 1, date(2030, 1, 1), None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    consumer.synthetic.GenerateError: --start 2030-01-01 --days 374: the history would end ...
    """
    if not 1 <= customers <= MAX_CUSTOMERS:
        raise GenerateError(f"--customers {customers}: want 1 to {MAX_CUSTOMERS:,}")
    if seed < 0:
        raise GenerateError(f"--seed {seed}: want 0 or more")
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise GenerateError(f"--days {days}: want 1 to {MAX_DAYS:,}")
    first = start or FIRST_DAY
    last = first + timedelta(days=(days or PERIOD_DAYS) - 1)
    if first.year < 1990 or last > date.today():
        raise GenerateError(
            f"--start {first} --days {days or PERIOD_DAYS}: the history would end on {last}; "
            "it must lie between 1990 and today (the service rejects other dates)"
        )


@dataclass(frozen=True)
class Written:
    """What :func:`write_history` wrote."""

    path: Path
    lines: int
    bytes: int
    seconds: float


def write_history(
    path: Path,
    customers: int,
    seed: int,
    start: date | None = None,
    days: int | None = None,
    level: int = 1,
) -> Written:
    """Write :func:`generate`'s history to ``path`` (``.csv``, or ``.csv.gz`` at gzip ``level``).

    The gzip header holds no file name and no time, so the bytes depend only on the
    arguments (and on zlib's version). Compression runs in a thread of its own (zlib
    releases the GIL) beside the generation. The file appears under its name only when
    complete: it is written as ``<name>.partial`` and renamed.
    """
    name = path.name.lower()
    if not (name.endswith(".csv") or name.endswith(".csv.gz")):
        raise GenerateError(f"{path}: the output must end in .csv or .csv.gz")
    if path.is_dir():
        raise GenerateError(f"{path}: is a folder; pass a file name ending in .csv or .csv.gz")
    check(customers, seed, start, days)
    partial = path.with_name(path.name + ".partial")
    started = time.perf_counter()
    last_log = [started]
    written = [0]

    def progress(done: int, total: int, lines: int) -> None:
        written[0] = lines
        now = time.perf_counter()
        if now - last_log[0] >= 10 or done == total:
            last_log[0] = now
            log.info(
                "%s: %d%% of %s invoices, %s lines (%s lines/s)",
                path.name,
                100 * done // max(total, 1),
                f"{total:,}",
                f"{lines:,}",
                f"{lines / max(now - started, 1e-9):,.0f}",
            )

    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=2)
    failure: list[BaseException] = []

    def compress(out: IO[bytes]) -> None:
        try:
            sink: IO[bytes] | gzip.GzipFile = (
                gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=level, mtime=0)
                if name.endswith(".gz")
                else out
            )
            while (chunk := chunks.get()) is not None:
                sink.write(chunk)
            if sink is not out:
                sink.close()
        except BaseException as exc:  # handed to the main thread, which raises it
            failure.append(exc)
            while chunks.get() is not None:  # let the producer finish
                pass

    try:
        with partial.open("wb") as out:
            thread = threading.Thread(target=compress, args=(out,), name="gzip", daemon=True)
            thread.start()
            try:
                for text in generate(customers, seed, start, days, progress=progress):
                    chunks.put(text.encode("utf-8"))
            finally:
                chunks.put(None)
                thread.join()
        if failure:
            raise failure[0]
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise GenerateError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Written(path, written[0], path.stat().st_size, time.perf_counter() - started)


def parse_start(text: str) -> date:
    """``--start``: an ISO date.

    >>> parse_start("2010-12-01")
    datetime.date(2010, 12, 1)
    >>> parse_start("1/12/2010")
    Traceback (most recent call last):
    ...
    consumer.synthetic.GenerateError: --start '1/12/2010': want a date like 2010-12-01
    """
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise GenerateError(f"--start {text!r}: want a date like 2010-12-01") from None
