"""Stopping on SIGINT and SIGTERM: finish the work in hand, and never take more than a few seconds.

:class:`Stopper` is installed on the first line of ``main``, before anything can take a
lock. A command that can stop cleanly registers what to do (``on_stop``: a source stops
after its current block); one that cannot is interrupted at once. Either way a watchdog
ends the process ``grace`` seconds after the signal, after running the ``on_force``
actions (the consumer releases its writer lock there). Nothing is lost by that: a block
is applied atomically, and the next start resumes from what the store holds.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("insiders")

GRACE_SECONDS = 4.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopper:
    """The process's answer to SIGINT and SIGTERM.

    Examples
    --------
    >>> stopper = Stopper(grace=1.0)
    >>> seen = []
    >>> stopper.on_stop(lambda: seen.append("stop"))
    >>> stopper.requested.is_set()
    False
    """

    def __init__(self, grace: float = GRACE_SECONDS) -> None:
        self.grace = grace
        self.requested = threading.Event()  # a signal came: stop after the work in hand
        self.finished = threading.Event()  # main is done: the watchdog stands down
        self._on_stop: list[Callable[[], None]] = []
        self._on_force: list[Callable[[], None]] = []

    def install(self) -> None:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}

    def uninstall(self) -> None:
        """Put back the handlers found at install (main() may run inside another program)."""
        for sig, handler in getattr(self, "_previous", {}).items():
            signal.signal(sig, handler)

    def on_stop(self, action: Callable[[], None]) -> None:
        """Run ``action`` when a stop is requested (now, if one already was)."""
        self._on_stop.append(action)
        if self.requested.is_set():
            action()

    def on_force(self, action: Callable[[], None]) -> None:
        """Run ``action`` before the process is ended without finishing its work."""
        self._on_force.append(action)

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():  # a second signal: the user insists
            self._force(signum, f"{name} again")
            return
        self.requested.set()
        threading.Thread(target=self._watchdog, args=(signum,), daemon=True).start()
        if not self._on_stop:
            raise KeyboardInterrupt  # nothing to finish cleanly: stop right here
        log.info("%s: finishing the work in hand, then stopping", name)
        for action in self._on_stop:
            action()

    def _watchdog(self, signum: int) -> None:
        if not self.finished.wait(self.grace):
            self._force(signum, f"still busy {self.grace:g}s after the signal")

    def _force(self, signum: int, why: str) -> None:
        log.warning("%s: stopping now; the next start resumes from what the store holds", why)
        for action in self._on_force:
            try:
                action()
            except Exception as exc:  # best effort: the process ends either way
                log.warning("while stopping: %s", exc)
        logging.shutdown()
        os._exit(128 + signum)
