"""Lecture figures drawn by worker processes, beside the process that trains and writes.

A stacked group draws its members' figures, and a process's later runs draw theirs (a sweep's jobs under Hydra's
basic launcher, runs from the Python API), on one worker per CPU: each is a fresh Python (spawned, so the trainer's
threads and device state are not copied) that loads matplotlib, not torch, and keeps its figures for every run it
draws (``figures.drawings``). A worker writes each lecture figure's PNG into the run's folder and hands back its
TensorBoard image as PNG bytes; the run's own process writes those into its event file. A process's first run
draws its figures itself (starting a worker costs about a second, more than its two figures), unless the
command started its workers early (``warm``), while it loaded torch and trained.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from layerscope.probe.record import LECTURE_HISTOGRAMS, ProbeRecord

Image = tuple[int, bytes, tuple[int, int, int]]
"""One probe's TensorBoard image: its step, PNG bytes and (height, width, channels)."""

_pool: ProcessPoolExecutor | None = None
_runs_drawn = 0  # runs of this process whose figures were drawn


def draw(records: list[ProbeRecord], title: str, paths: list[Path], many: bool = False) -> list[Future]:
    """Draw each of ``records`` as its lecture figure at its path in ``paths`` and as its TensorBoard image: here, or
    on the workers when this is one of ``many`` runs drawn together (a stack's members) or not this process's first.
    A Future of each one's image."""
    global _runs_drawn
    _runs_drawn += 1
    local = _pool is None and not many and _runs_drawn == 1
    futures = []
    for record, path in zip(records, paths):
        row = record.to_json(LECTURE_HISTOGRAMS)
        if local:
            futures.append(Future())
            futures[-1].set_result(_draw(row, title, str(path)))
        else:
            futures.append(_workers().submit(_draw, row, title, str(path)))
    return futures


def warm(workers: int, depth: int) -> None:
    """Start ``workers`` workers now, each loading matplotlib and building the ``depth``-layer figures, so that a
    command's runs hand their figures to workers that are ready (this process meanwhile loads torch and trains)."""
    pool = _workers(workers)
    for _ in range(workers):  # each submit finds no idle worker and spawns one
        pool.submit(_ready, depth)


def _workers(workers: int | None = None) -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1,
                                    mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_signals)
        atexit.register(_pool.shutdown, cancel_futures=True)
        # a process that is itself a multiprocessing worker runs no atexit handlers but joins its children (these
        # workers) as it exits: they are told to stop before that, and before its queues close (priority 10)
        multiprocessing.util.Finalize(None, _pool.shutdown, kwargs={"cancel_futures": True}, exitpriority=20)
    return _pool


def _ignore_signals() -> None:
    """A worker leaves SIGINT and SIGTERM to the process that started it, which stops the run and then the workers."""
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
