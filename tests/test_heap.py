"""A training process's garbage collector: the objects alive when a sweep or run starts are left out of its passes
while it works (a pass over them costs 0.1-0.2 s), those made meanwhile are collected, and all are handed back."""

from __future__ import annotations

import gc
import weakref

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
