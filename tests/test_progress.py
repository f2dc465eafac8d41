"""Progress lines: durations, and the estimate of what is left from the last run's timings."""

from __future__ import annotations

import json

import pytest

from layerscope.sweep.progress import Estimate, duration


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


def test_sweep_size_counts_the_discrete_sweeps_and_gives_up_on_intervals():
    from layerscope.sweep.progress import sweep_size

    assert sweep_size(["activation=tanh,relu", "trainer.seed=range(0,3)", "model.width=8"]) == 6
    assert sweep_size(["model.width=8"]) == 1
    assert sweep_size(["optimizer.lr=interval(0.001,0.1)"]) is None


def test_sweep_line_reads_how_far_the_sweep_is_from_its_folder(tmp_path):
    from omegaconf import OmegaConf

    from layerscope.files import write_json_atomic
    from layerscope.sweep.progress import sweep_line

    OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": ["activation=tanh,relu", "trainer.seed=0,1"]}}}),
                   tmp_path / "multirun.yaml")
    for job, status in (("0", "completed"), ("1", "diverged")):
        (tmp_path / job).mkdir()
        write_json_atomic(tmp_path / job / "summary.json", {"status": status})
    (tmp_path / "2").mkdir()  # made, not begun: not done
    line = sweep_line(tmp_path, "1", 3.0)
    assert line.startswith("sweep: job 1 diverged in 3 s; 2 of 4 jobs done, about ") and line.endswith(" s left")


@pytest.mark.parametrize("mode, printed", [("MULTIRUN", True), ("RUN", False)])
def test_only_a_sweep_job_prints_a_sweep_line(tmp_path, capsys, mode, printed):
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from layerscope.runs.folder import write_summary
    from layerscope.sweep.callbacks import SweepProgress

    (tmp_path / "0").mkdir()
    write_summary(tmp_path / "0", {"status": "completed"})
    launcher = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
    config = OmegaConf.create({"hydra": {"mode": RunMode[mode], "launcher": launcher,
                                         "runtime": {"output_dir": str(tmp_path / "0")}}})
    progress = SweepProgress()
    progress.on_job_start(config)
    progress.on_job_end(config, None)
    assert ("sweep: job 0 completed in " in capsys.readouterr().err) is printed
