"""The Python heap of a process that trains: what its garbage collector passes over."""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def startup_left_out() -> Iterator[None]:
    """Leave the objects alive now (modules, torch, Hydra's and OmegaConf's configs: ~250k) out of the garbage
    collector's passes until the block ends. A full pass over them takes 0.1-0.2 s, and a sweep's bookkeeping,
    which makes and drops many small objects, set off one every second or so; the objects made in the block are
    collected as before, and the ones left out are handed back at its end (collected then, if they became garbage)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
