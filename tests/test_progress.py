"""Progress lines: durations, and the estimate of what is left from the last run's timings."""

from __future__ import annotations

import json

import pytest

from layerscope.progress import Estimate, duration


def test_duration_reads_as_seconds_or_minutes():
    assert [duration(s) for s in (0.4, 42, 59.6, 185)] == ["0 s", "42 s", "1 min 00 s", "3 min 05 s"]


def test_first_run_estimates_the_rest_from_its_mean_and_saves_the_timings(tmp_path):
    clock = Estimate(tmp_path / "t.json", ["a", "b", "c"])
    assert clock.done("a", 10.0) == "10 s; about 20 s left"  # nothing timed before: two more of this run's mean
    assert clock.done("b", 20.0) == "20 s; about 15 s left"
    assert clock.done("c", 5.0) == "5 s"  # the last: nothing left to estimate
    assert json.loads((tmp_path / "t.json").read_text()) == {"a": 10.0, "b": 20.0, "c": 5.0}


def test_a_later_run_scales_the_last_timings_by_its_own_pace(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"a": 10.0, "b": 100.0, "c": 30.0}))
    clock = Estimate(tmp_path / "t.json", ["a", "b", "c"])
    assert clock.done("a", 20.0) == "20 s; about 4 min 20 s left"  # twice as slow as last time: 2 × (100 + 30)
    assert json.loads((tmp_path / "t.json").read_text())["b"] == 100.0  # pieces not run yet keep their timing


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"a": "x"}'])
def test_an_unreadable_timings_file_is_ignored(tmp_path, content):
    (tmp_path / "t.json").write_text(content)
    assert Estimate(tmp_path / "t.json", ["a", "b"]).done("a", 3.0) == "3 s; about 3 s left"
