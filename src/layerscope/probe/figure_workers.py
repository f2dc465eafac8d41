"""Lecture figures drawn by worker processes, beside the process that trains and writes.

A run's figures (``RunFigures``) are drawn on one worker per CPU: a stacked group's members' figures, and those of
a process's later runs (a sweep's jobs under Hydra's basic launcher, runs from the Python API). Each worker is a
fresh Python (spawned, so the trainer's threads and device state are not copied) that loads matplotlib, not torch,
keeps its figures for every run it draws (``figures.drawings``) and runs at the lowest priority (niceness 19): it
draws on the CPUs the training leaves idle and yields them to it. A figure is begun as soon as the trainer asks
(``train.loop``: as its probe is recorded where the training leaves a CPU idle, else as the loop ends); the
worker writes its PNG into the run's folder and hands back its TensorBoard image as PNG bytes, which the run's own
process writes into its event file. A process's first run draws its figures itself, as it ends (starting a worker
costs about a second, more than its two figures), unless the command started its workers early (``warm``), while
it loaded torch and trained.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util
import os
import signal
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

from layerscope.probe.record import LECTURE_HISTOGRAMS, ProbeRecord

Image = tuple[int, bytes, tuple[int, int, int]]
"""One probe's TensorBoard image: its step, PNG bytes and (height, width, channels)."""

_pool: ProcessPoolExecutor | None = None
_runs_drawn = 0  # runs of this process whose figures were drawn


class RunFigures:
    """One run's lecture figures: each begun on a worker as soon as it is asked for, or, for a process's first run
    where no worker is up (and not one of ``many`` drawn together, a stack's members), drawn here as the run ends."""

    def __init__(self, title: str, where: Callable[[int], Path], many: bool = False) -> None:
        global _runs_drawn
        _runs_drawn += 1
        self.title, self.where, self.here = title, where, _pool is None and not many and _runs_drawn == 1
        self.begun: dict[int, Future] = {}  # by step
        self.kept: list[tuple[Future, dict, str]] = []  # to draw here, as the run ends

    def begin(self, record: ProbeRecord) -> None:
        """Draw ``record`` as its lecture figure at ``where(step)`` and as its TensorBoard image (once per step)."""
        if record.step in self.begun:
            return
        row, path = record.to_json(LECTURE_HISTOGRAMS), self.where(record.step)
        if self.here:
            self.begun[record.step] = Future()
            self.kept.append((self.begun[record.step], row, str(path)))
        else:
            self.begun[record.step] = _submit(_draw, row, self.title, str(path))

    def futures(self) -> list[Future]:
        """A Future of each figure's image, in step order (those kept to draw here are drawn now)."""
        for future, row, path in self.kept:
            future.set_result(_draw(row, self.title, path))
        self.kept = []
        return [self.begun[step] for step in sorted(self.begun)]

    def cancel(self) -> None:
        """Leave undrawn the figures that no worker has begun (the run was stopped)."""
        self.kept = []
        for future in self.begun.values():
            future.cancel()


def warm(workers: int, depth: int) -> None:
    """Start ``workers`` workers now, each loading matplotlib and building the ``depth``-layer figures, so that a
    command's runs hand their figures to workers that are ready (this process meanwhile loads torch and trains)."""
    _workers(workers)
    for _ in range(workers):  # each submit finds no idle worker and spawns one
        _submit(_ready, depth)


def _submit(fn: Callable, *args: Any) -> Future:
    """``fn(*args)`` on a worker. A worker it starts is spawned without this process's main module, which a spawned
    process imports by default: ``make reproduce``'s or a benchmark's would load torch and more in every worker,
    at full priority, before it lowers its own."""
    main = sys.modules["__main__"]
    spec, path = getattr(main, "__spec__", None), main.__dict__.pop("__file__", None)
    main.__spec__ = None  # what multiprocessing reads to find the main module: by name, else by path
    try:
        return _workers().submit(fn, *args)
    finally:
        main.__spec__ = spec
        if path is not None:
            main.__file__ = path


def _workers(workers: int | None = None) -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1,
                                    mp_context=multiprocessing.get_context("spawn"), initializer=_in_background)
        atexit.register(_pool.shutdown, cancel_futures=True)
        # a process that is itself a multiprocessing worker runs no atexit handlers but joins its children (these
        # workers) as it exits: they are told to stop before that, and before its queues close (priority 10)
        multiprocessing.util.Finalize(None, _pool.shutdown, kwargs={"cancel_futures": True}, exitpriority=20)
    return _pool


def _in_background() -> None:
    """A worker draws at the lowest priority, on CPUs the training leaves idle, and leaves SIGINT and SIGTERM to the
    process that started it, which stops the run and then the workers."""
    if hasattr(os, "nice"):  # not on Windows
        os.nice(19)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _ready(depth: int) -> None:
    from layerscope.probe.figures import drawings

    drawings(depth)


def _draw(row: dict, title: str, path: str) -> Image:
    """A probe's lecture figure as a PNG at ``path``; its compact figure as TensorBoard's image."""
    from layerscope.probe.figures import drawings  # matplotlib: here, or in a worker

    record = ProbeRecord.from_json(row)
    lecture, compact = drawings(len(record.histograms["activation"]))
    lecture.update(record, title).png(Path(path))
    return record.step, *compact.update(record, title).png()
