"""A training process's heap. Its garbage collector: the objects alive when a sweep or run starts are left out of its
passes while it works (a pass over them costs 0.1-0.2 s), those made meanwhile are collected, and all are handed back.
Its malloc: memory a step frees is kept for the next step, not faulted in again."""

from __future__ import annotations

import gc
import platform
import subprocess
import sys
import weakref

import pytest

from layerscope.heap import startup_left_out


class Node:
    """An object that can hold itself: a cycle, which only the collector frees."""


def cycle() -> Node:
    node = Node()
    node.itself = node
    return node


def test_objects_alive_at_the_start_are_left_out_until_the_end_and_new_garbage_is_collected():
    before = cycle()
    kept_before = weakref.ref(before)
    with startup_left_out():
        assert gc.get_freeze_count() > 0
        del before
        gc.collect()
        assert kept_before() is not None  # left out: no pass frees it
        made = cycle()
        kept_made = weakref.ref(made)
        del made
        gc.collect()
        assert kept_made() is None  # made in the block: collected as before
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert kept_before() is None  # handed back: collected


FAULTS = """
import resource, sys, torch
from layerscope.heap import keep_freed_pages
kept = sys.argv[1] == "kept" and keep_freed_pages()
for _ in range(10):  # 64 MB: above the largest size glibc's own threshold ever takes from the heap
    torch.ones(16 << 20).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(16 << 20).sum()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    kept, faults = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True,
                                  check=True).stdout.split()
    return kept, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_a_step_reuses_the_memory_the_last_step_freed():
    kept, faults = _faults("kept")
    default, faults_by_default = _faults("default")
    assert (kept, default) == ("True", "False")
    assert faults * 10 < faults_by_default  # each 64 MB tensor reuses the last one's pages; by default, new ones
