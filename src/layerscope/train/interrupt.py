"""SIGINT (Ctrl-C) and SIGTERM end a run cleanly: the current step finishes, a checkpoint is written
from a healthy state, summary.json says ``interrupted`` with the step, and the process exits 130 or
143 (128 + the signal), the shell's convention. ``trainer.resume=true`` then continues the run. A
second signal while the run winds down is not held back. Outside the training loop (loading data,
drawing figures) a signal raises ``Stopped``, and the run's folder says ``interrupted`` all the same.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_status(stopped_by: int | str) -> int:
    """The exit status of a process a signal stopped (number or name): 128 + its number, 130 SIGINT, 143 SIGTERM."""
    return 128 + (signal.Signals[stopped_by].value if isinstance(stopped_by, str) else int(stopped_by))


class Stopped(BaseException):
    """A SIGINT or SIGTERM that arrived outside the training loop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.during: list[str] = []  # what it stopped (experiments), where the catcher says

    @property
    def name(self) -> str:
        """SIGINT or SIGTERM."""
        return signal.Signals(self.signum).name


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def stopping() -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM raise ``Stopped`` (the training loop records them instead)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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
