"""SIGINT (Ctrl-C) and SIGTERM end a run cleanly: the current step finishes, a checkpoint is written
from a healthy state, summary.json says ``interrupted`` with the step, and the process exits 130 or
143 (128 + the signal), the shell's convention. ``trainer.resume=true`` then continues the run. A
second signal while the run winds down is not caught: it ends the process at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupt:
    """A context in which SIGINT and SIGTERM are recorded in ``received`` instead of ending the process."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "Interrupt":
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            self._previous = {s: signal.signal(s, self._record) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))  # a second one is not held back

    @property
    def name(self) -> str:
        """SIGINT or SIGTERM."""
        return signal.Signals(self.received).name if self.received else ""

    @property
    def exit_status(self) -> int:
        """128 + the signal's number: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + int(self.received or 0)
