"""A run's TensorBoard event file, written in the run's own thread: the records TensorBoard's writer makes (the
``brain.Event:2`` header, a purge marker after a resume, one event per summary), without its thread and queue per
file (a stacked group of 64 members had 64 of them). Every event is on disk when ``add`` returns."""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from pathlib import Path

from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary

try:
    from google_crc32c import value as crc32c  # C: TensorBoard's own is a Python loop, ~0.3 µs a byte (an image: ~10 ms)
except ImportError:  # a machine without the wheel writes the same bytes, slower
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c

_FILES = itertools.count()  # numbers the event files of this process, as TensorBoard's writer does


class EventFile:
    """One events.out.tfevents.* file in ``run_dir``; ``purge_step``: TensorBoard drops the folder's earlier events
    at steps >= it (a resumed run's)."""

    def __init__(self, run_dir: Path, purge_step: int | None = None) -> None:
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_FILES)}"
        self._file = open(run_dir / name, "wb")  # noqa: SIM115 - closed by close()
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step is not None:
            self._write(Event(wall_time=time.time(), step=purge_step, file_version="brain.Event:2"))
            self._write(Event(wall_time=time.time(), step=purge_step, session_log=SessionLog(status=SessionLog.START)))
        self._file.flush()

    def add(self, summary: Summary, step: int | None = None) -> None:
        """Write ``summary`` as one event (at ``step``, when given) and flush it."""
        event = Event(wall_time=time.time(), summary=summary)
        if step is not None:
            event.step = int(step)
        self._write(event)
        self._file.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        """A scalar, as ``SummaryWriter.add_scalar`` writes it."""
        self.add(Summary(value=[Summary.Value(tag=tag, simple_value=float(value))]), step)

    def _write(self, event: Event) -> None:
        self._file.write(record(event.SerializeToString()))

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def record(data: bytes) -> bytes:
    """``data`` as one TFRecord, as TensorBoard's RecordWriter frames it: its length, the length's masked CRC-32C,
    the data, the data's masked CRC-32C."""
    length = struct.pack("<Q", len(data))
    return length + _masked(length) + data + _masked(data)


def _masked(data: bytes) -> bytes:
    crc = crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)
