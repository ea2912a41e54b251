"""Ctrl+C and SIGTERM (what the Slicer panel sends to cancel) for the command line.

Loops that can stop cleanly (sampling, training steps) poll the request inside `STOP.polled()` and
stop at their next safe point: training first writes a checkpoint. Anywhere else (reading input,
loading a model, writing outputs, downloads, a read blocked on a FIFO) the signal raises
KeyboardInterrupt at once, and the staging folders and temporary files are removed on the way out.
A second signal never waits for a safe point.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class StopRequest:
    """Set by SIGINT/SIGTERM once `install()` ran; calling it says whether a stop was requested."""

    def __init__(self) -> None:
        self.requested = False
        self._polling = 0

    def install(self) -> None:
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._handle)

    def _handle(self, _number, _frame) -> None:
        already = self.requested
        self.requested = True
        if already or not self._polling:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def polled(self) -> Iterator[StopRequest]:
        """Inside, the caller checks the request itself between units of work."""
        self._polling += 1
        try:
            yield self
        finally:
            self._polling -= 1

    def __call__(self) -> bool:
        return self.requested


STOP = StopRequest()  # one per process; without install() nothing changes (Slicer, tests)
