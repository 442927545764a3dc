"""Progress of long work: tqdm's bar on a terminal, a log line a minute everywhere else.

A replay or a publish of a large history takes an hour or more. On a terminal tqdm draws
its bar. Without one (a container, a service manager, a pipe into a file) tqdm would stay
silent, so there the same counts go to the log every ``INSIDERS_PROGRESS_EVERY`` seconds
(``INTERVAL`` by default): lines so far, the share done when the total is known, the rate
and the time left. Work shorter than that logs nothing; its summary line says it all. The log
gives the lines as exact counts (``104,213,500``, where the bar says ``104M``), so that two
logs can be compared over any minutes: runs side by side on a machine whose speed drifts.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from tqdm import tqdm

log = logging.getLogger("insiders")

INTERVAL = 60.0
_KNOWN = (
    "{desc}{n:,.0f} of {total:,.0f} lines ({percentage:.0f}%) in {elapsed}, {rate_fmt}, "
    "{remaining} left{postfix}"
)
_OPEN = "{desc}{n:,.0f} lines in {elapsed}, {rate_fmt}{postfix}"


class _ToLog:
    """A file for tqdm that logs each of its status lines."""

    def write(self, text: str) -> None:
        text = text.strip("\r\n ")
        if text:
            log.info("progress: %s", text)

    def flush(self) -> None:
        pass


def progress(
    total: int | None = None, desc: str | None = None, interval: float | None = None
) -> tqdm[Any]:
    """A tqdm counter of lines: a bar on a terminal, else a log line every ``interval`` s
    (default ``INTERVAL``)."""
    interval = INTERVAL if interval is None else interval
    common: dict[str, Any] = {"total": total, "unit": " lines", "unit_scale": True}
    if sys.stderr.isatty():
        return tqdm(desc=desc, smoothing=0.1, **common)
    return tqdm(
        desc=f"{desc}: " if desc else None,
        file=_ToLog(),
        mininterval=interval,
        delay=interval,
        smoothing=0,  # the rate over the whole run: a minute apart, a moving one is noise
        bar_format=_KNOWN if total else _OPEN,
        **common,
    )
