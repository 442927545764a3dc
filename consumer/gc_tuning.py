"""Python's cyclic garbage collector, set for a process whose state grows with its customers.

The pipeline holds every customer's state in objects that live as long as the process, and
each block of lines makes tens of thousands of objects that live as long as the block. With
Python's defaults, a young collection runs each time 700 more objects have been made than
freed, so most of a block's objects are still alive when one runs: they are promoted to the
old generation, and the old generation fills with them. CPython then walks the whole heap (a
full collection) each time the objects promoted since the last one reach a quarter of the old
ones: about once a second in a replay of 100,000 customers, and each walk is dearer as the
state grows (README, "Scale"). Two changes keep the block's objects young and the walks rare:

- a young collection each time ``young`` more objects have been made than freed, more than
  a block keeps alive at once, so a block's objects die before they are examined;
- the objects made at start (modules, classes, functions: some 140,000) are frozen
  out of every collection: they live as long as the process anyway.

Cyclic garbage is still collected: only the young threshold is raised.

Examples
--------
>>> import gc
>>> saved = gc.get_threshold()
>>> tune_collector(50_000)
>>> gc.get_threshold()[0]
50000
>>> gc.set_threshold(*saved)
>>> gc.unfreeze()
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


_tuned = False


def tune_collector(young: int) -> None:
    """Freeze the objects alive now and collect the young generation every ``young`` new
    objects (``INSIDERS_GC_YOUNG``); 0 leaves Python's collector as it is. Once a process:
    a later call (a consumer that claims its prefix again) changes nothing."""
    global _tuned
    if young <= 0 or _tuned:
        return
    _tuned = True
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
    log.debug(
        "garbage collector: %d objects frozen, thresholds %s",
        gc.get_freeze_count(),
        gc.get_threshold(),
    )
