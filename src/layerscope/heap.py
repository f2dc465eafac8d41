"""The heap of a process that trains: what its garbage collector passes over, and what malloc hands back."""

from __future__ import annotations

import contextlib
import ctypes
import gc
from typing import Iterator

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 256 << 20  # a CPU tensor this size or smaller comes from the heap, not a mapping of its own
TRIM_THRESHOLD = 1 << 30  # free memory at the heap's top kept for the next step, up to this much


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


def keep_freed_pages() -> bool:
    """Have glibc's malloc keep the memory a training step frees for the next step (False where malloc is not
    glibc's). By default a step's tensors (a 128x500 activation is 256 kB) come from fresh mappings or a heap
    whose top is handed back to the system as they are freed, so every step faults its pages in again (a third of
    ``make reproduce``'s system time). The process then holds up to TRIM_THRESHOLD of freed memory."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the symbols the process has loaded: its libc's
    return mallopt is not None and all(mallopt(param, value) == 1 for param, value in
                                       ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
