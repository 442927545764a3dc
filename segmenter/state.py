"""Saved state as plain data, and the reader that checks it before anything uses it.

Checkpoints and snapshots are JSON documents built by ``to_state()`` methods, never
pickles: reading one runs no code. ``from_state()`` reads them back through
:class:`Fields`, which checks every field's type and shape and raises a one-line
:class:`~segmenter.errors.CheckpointError` that names the field, e.g.
``model.clusterer.counts[2]: want an integer >= 1, got 0``.
"""

from __future__ import annotations

import math
from typing import Any

from segmenter.errors import CheckpointError


def describe(value: object) -> str:
    """A short account of a JSON value for an error message.

    >>> describe(None), describe(True), describe([1, 2]), describe({"a": 1}), describe("x" * 50)
    ('null', 'true', 'a list of 2', 'an object', "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...")
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    text = repr(value)
    return text if len(text) <= 32 else text[:31] + "..."


def join(path: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


def integer(value: object, path: str, minimum: int | None = 0) -> int:
    """``value`` if it is an integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        want = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise CheckpointError(f"{path}: want {want}, got {describe(value)}")
    if minimum is not None and value < minimum:
        raise CheckpointError(f"{path}: want an integer >= {minimum}, got {value}")
    return value


def number(value: object, path: str, minimum: float | None = None) -> float:
    """``value`` if it is a finite number (int or float, not a bool), as it was written.

    Ints stay ints: a setting written as ``30`` reads back as ``30``, not ``30.0``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CheckpointError(f"{path}: want a finite number, got {describe(value)}")
    if minimum is not None and value < minimum:
        raise CheckpointError(f"{path}: want a number >= {minimum}, got {value}")
    return value


def string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise CheckpointError(f"{path}: want a string, got {describe(value)}")
    return value


def array(value: object, path: str, size: int | None = None) -> list[Any]:
    """``value`` if it is a list (of ``size`` items, when given)."""
    if not isinstance(value, list):
        raise CheckpointError(f"{path}: want a list, got {describe(value)}")
    if size is not None and len(value) != size:
        raise CheckpointError(f"{path}: want {size} items, got {len(value)}")
    return value


def vector(value: object, path: str, size: int) -> list[float]:
    """A list of ``size`` finite numbers, as floats."""
    items = array(value, path, size)
    for i, item in enumerate(items):
        if type(item) is not float or not math.isfinite(item):
            number(item, join(path, i))  # an int is fine; anything else raises, naming it
    return [float(item) for item in items]


def names(value: object, path: str) -> list[str]:
    """A list of distinct strings."""
    items = [string(item, join(path, i)) for i, item in enumerate(array(value, path))]
    if len(set(items)) != len(items):
        raise CheckpointError(f"{path}: names repeat in {items}")
    return items


class Fields:
    """One JSON object of a saved state, with exactly the fields ``expected``.

    >>> doc = Fields({"k": 4, "mean": 1.5}, "model", ("k", "mean"))
    >>> doc.integer("k"), doc.number("mean")
    (4, 1.5)
    >>> Fields({"k": -1}, "model", ("k",)).integer("k")
    Traceback (most recent call last):
    ...
    segmenter.errors.CheckpointError: model.k: want an integer >= 0, got -1
    >>> Fields({"k": 1, "x": 2}, "model", ("k", "mean"))
    Traceback (most recent call last):
    ...
    segmenter.errors.CheckpointError: model: missing mean; unexpected x
    """

    def __init__(self, value: object, path: str, expected: tuple[str, ...]) -> None:
        if not isinstance(value, dict):
            raise CheckpointError(f"{path or 'state'}: want an object, got {describe(value)}")
        missing = [name for name in expected if name not in value]
        unexpected = [str(name) for name in value if name not in expected]
        if missing or unexpected:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"unexpected {', '.join(unexpected)}"] if unexpected else []
            )
            raise CheckpointError(f"{path or 'state'}: {'; '.join(parts)}")
        self.value: dict[str, Any] = value
        self.path = path

    def at(self, name: str) -> str:
        return join(self.path, name)

    def raw(self, name: str) -> Any:
        return self.value[name]

    def integer(self, name: str, minimum: int | None = 0) -> int:
        return integer(self.value[name], self.at(name), minimum)

    def optional_integer(self, name: str, minimum: int | None = 0) -> int | None:
        value = self.value[name]
        return None if value is None else integer(value, self.at(name), minimum)

    def number(self, name: str, minimum: float | None = None) -> float:
        return number(self.value[name], self.at(name), minimum)

    def optional_number(self, name: str, minimum: float | None = None) -> float | None:
        value = self.value[name]
        return None if value is None else number(value, self.at(name), minimum)

    def string(self, name: str) -> str:
        return string(self.value[name], self.at(name))

    def boolean(self, name: str) -> bool:
        value = self.value[name]
        if not isinstance(value, bool):
            raise CheckpointError(f"{self.at(name)}: want true or false, got {describe(value)}")
        return value

    def array(self, name: str, size: int | None = None) -> list[Any]:
        return array(self.value[name], self.at(name), size)

    def names(self, name: str) -> list[str]:
        return names(self.value[name], self.at(name))

    def mapping(self, name: str) -> dict[str, Any]:
        """A JSON object with any keys (its values are for the caller to check)."""
        value = self.value[name]
        if not isinstance(value, dict):
            raise CheckpointError(f"{self.at(name)}: want an object, got {describe(value)}")
        return value

    def numbers(self, name: str, minimum: float | None = None) -> dict[str, float]:
        """An object of finite numbers by name, in the order written."""
        path = self.at(name)
        return {
            key: number(value, join(path, key), minimum)
            for key, value in self.mapping(name).items()
        }

    def counts(self, name: str, minimum: int = 0) -> dict[str, int]:
        """An object of integers by name, in the order written."""
        path = self.at(name)
        return {
            key: integer(value, join(path, key), minimum)
            for key, value in self.mapping(name).items()
        }

    def fields(self, name: str, expected: tuple[str, ...]) -> Fields:
        return Fields(self.value[name], self.at(name), expected)
