"""A run folder belongs to one process at a time.

A run holds ``run.lock`` in its folder while it works: a file with its pid, host and start time,
locked with ``flock``. The kernel drops that lock when the process ends however it ends, so a lock
left by a killed run is stale and the next run takes it over (and says so); a live holder makes
any other process that targets the folder (``trainer.resume=true``, ``hydra.run.dir=``) refuse.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from layerscope.config.overrides import quoted
from layerscope.errors import ConfigError
from layerscope.runs.folder import holds_run

LOCK = "run.lock"

log = logging.getLogger("layerscope")
_held: dict[Path, int] = {}  # folder -> the open lock file of this process


class FolderInUse(ConfigError):
    """Another live process holds the folder: refused without writing anything into it."""


def holder(folder: Path) -> dict | None:
    """Who holds ``folder``'s lock: {pid, host, started} of a live process, or None when nobody does."""
    path = folder / LOCK
    if folder.resolve() in _held:
        return _describe(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(path)
    finally:
        os.close(fd)  # closing drops the probe's shared lock
    return None


UNKNOWN = {"pid": "?", "host": "?", "started": "?"}  # a lock file being written, or damaged


def _describe(path: Path) -> dict:
    try:
        return {**UNKNOWN, **json.loads(path.read_text())}
    except (OSError, ValueError, TypeError):  # TypeError: valid JSON that is not an object
        return dict(UNKNOWN)


def _refusal(folder: Path, who: dict) -> FolderInUse:
    return FolderInUse(f"{folder} is in use by process {who.get('pid')} on {who.get('host')} since "
                       f"{who.get('started')}; wait for it to end, or stop it (kill -INT {who.get('pid')}) "
                       f"and run this again")


def _take(folder: Path) -> int:
    """Lock ``folder`` for this process; return the lock file's descriptor."""
    path = folder / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _refusal(folder, _describe(path)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its last holder unlinked while this process waited for it
            break
        os.close(fd)
    earlier = os.read(fd, 4096)
    if earlier:
        stale = _describe(path)
        log.warning("took over the stale lock of process %s on %s (started %s, no longer running) in %s",
                    stale["pid"], stale["host"], stale["started"], folder)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    return fd


@contextlib.contextmanager
def owned(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock while the block runs (re-entrant); a live holder is a one-line ConfigError."""
    key = folder.resolve()
    if key in _held:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    _held[key] = _take(folder)
    try:
        yield
    finally:
        fd = _held.pop(key)
        with contextlib.suppress(OSError):
            (folder / LOCK).unlink()
        os.close(fd)


def check_target(folder: Path, overrides: list[str], earlier: list[str] | None, resume: bool) -> None:
    """``hydra.run.dir=folder`` may only reuse a folder that holds a run to resume that same command."""
    who = holder(folder)
    if who is not None:
        raise _refusal(folder, who)
    if not holds_run(folder):
        return
    if not resume:
        raise ConfigError(f"hydra.run.dir={quoted(folder)} already holds a run; choose a new folder, or continue that run "
                          f"with its own overrides and trainer.resume=true")
    if earlier is not None and sorted(earlier) != sorted(overrides):
        theirs = " ".join(earlier) or "(none)"
        raise ConfigError(f"hydra.run.dir={quoted(folder)} holds a run of other overrides ({theirs}); resume it with "
                          f"exactly those, or choose a new folder")
