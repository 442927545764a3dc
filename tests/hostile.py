"""Hostile saved state: a pickle that acts when it is loaded, to prove we never load one."""

from __future__ import annotations

import pickle
from pathlib import Path


class _Plant:
    """Unpickling this calls ``open(marker, "w")``: the file appears if the pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def hostile_pickle(marker: Path) -> bytes:
    """What someone with write access to Redis or the snapshot could plant."""
    return pickle.dumps(_Plant(marker))


def assert_the_payload_is_live(folder: Path) -> None:
    """The payload does what it says when something does unpickle it: the tests that find
    no marker file afterwards therefore show that nothing unpickled it."""
    proof = folder / "proof"
    pickle.loads(hostile_pickle(proof)).close()
    assert proof.exists()
