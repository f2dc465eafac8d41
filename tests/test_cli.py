"""End-to-end: the real ``layerscope`` console script, read back with TensorBoard's own reader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from layerscope.api import load_run
from layerscope.probe.record import HISTOGRAMS, STATS

CLI = str(Path(sys.executable).with_name("layerscope"))
SMALL = ["model.depth=3", "model.width=32", "trainer.batch_size=64", "probe.every=5", "trainer.progress=false"]


def layerscope(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, Path | None]:
    """Run the CLI from ``tmp_path`` with outputs under it; return the process and its run folder."""
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp_path / "outputs")}
    before = set((tmp_path / "outputs").glob("runs/*/*"))
    proc = subprocess.run([CLI, *overrides], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    new = sorted(set((tmp_path / "outputs").glob("runs/*/*")) - before)
    return proc, (new[-1] if new else None)


def read_events(run_dir: Path) -> EventAccumulator:
    """All events of a run, keeping every step (size guidance 0)."""
    acc = EventAccumulator(str(run_dir), size_guidance={"histograms": 0, "scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("trained")
    proc, run_dir = layerscope(tmp, *SMALL, "trainer.max_steps=12")
    assert proc.returncode == 0, proc.stderr
    return run_dir


def test_run_folder_holds_config_metrics_figures_and_summary(trained):
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["steps"] == 12
    assert summary["final"]["test_accuracy"] > 0.1
    assert (trained / "config.yaml").read_text().count("depth: 3") == 1
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["step"] == 12  # 12 steps of 64 fit in digits' first epoch
    assert {"train_loss", "test_loss", "train_accuracy", "test_accuracy", "lr"} <= set(rows[0])
    assert sorted(p.name for p in (trained / "figures").glob("*.png")) == [
        "probe_000000.png", "probe_000011.png"]  # by default the first and the last probe's figure


def test_event_file_has_every_histogram_for_every_layer_and_probe(trained):
    acc = read_events(trained)
    tags = acc.Tags()
    for quantity in HISTOGRAMS:
        for layer in ("01", "02", "03"):
            tag = f"{quantity}/layer_{layer}"
            assert tag in tags["histograms"], tag
            events = acc.Histograms(tag)
            assert [e.step for e in events] == [0, 5, 10, 11]
            first = events[0].histogram_value
            assert first.num > 0 and sum(first.bucket) == first.num
    for stat in ("activation_std", "backward_norm", "weight_grad_norm", "update_ratio", "saturated_fraction"):
        assert [e.step for e in acc.Scalars(f"{stat}/layer_01")] == [0, 5, 10, 11]
    assert "inactive_fraction/layer_01" not in tags["scalars"]  # tanh is no rectifier
    assert {"loss/train", "loss/test", "accuracy/train", "accuracy/test", "lr"} <= set(tags["scalars"])
    assert [e.step for e in acc.Images("lecture/probe")] == [0, 11]


def test_any_probes_figure_is_drawn_later_from_its_records(trained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    report = str(Path(sys.executable).with_name("layerscope-report"))
    out = subprocess.run([report, str(run_dir), "--step", "5", "--step", "10"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(run_dir / "figures" / f"probe_{s:06d}.png") for s in (5, 10)]
    assert Image.open(run_dir / "figures" / "probe_000005.png").size == Image.open(
        trained / "figures" / "probe_000000.png").size
    bad = subprocess.run([report, str(run_dir), "--step", "6"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"layerscope-report: error: {run_dir} has no probe at step 6; its probes are at steps 0, 5, 10, 11"]
    assert load_run(run_dir).figure(11) == run_dir / "figures" / "probe_000011.png"
    with pytest.raises(ValueError, match="no probe at step 3"):
        load_run(run_dir).figure(3)


def test_every_probe_has_its_figure_on_request(tmp_path):
    proc, run_dir = layerscope(tmp_path, *SMALL, "trainer.max_steps=12", "probe.figures=every")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (run_dir / "figures").glob("*.png")) == [
        "probe_000000.png", "probe_000005.png", "probe_000010.png", "probe_000011.png"]
    assert [e.step for e in read_events(run_dir).Images("lecture/probe")] == [0, 5, 10, 11]


def test_probe_file_matches_event_file(trained):
    rows = [json.loads(line) for line in (trained / "probes.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 5, 10, 11]
    assert set(rows[0]["stats"]) == set(STATS)
    acc = read_events(trained)
    std = acc.Scalars("activation_std/layer_02")[0].value
    assert std == pytest.approx(rows[0]["stats"]["activation_std"][1], rel=1e-6)


def test_probe_only_mode_measures_step_zero_without_training(tmp_path):
    proc, run_dir = layerscope(tmp_path, "data=gaussian", "activation=tanh", "init=normal", "init.std=0.01",
                               "trainer.max_steps=0", "model.depth=4", "model.width=64", "trainer.progress=false")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 0 and summary["probes"] == 1
    stds = json.loads((run_dir / "probes.jsonl").read_text())["stats"]["activation_std"]
    assert all(later < earlier / 5 for earlier, later in zip(stds, stds[1:])), stds  # the lecture's collapse
    assert [e.step for e in read_events(run_dir).Histograms("activation/layer_04")] == [0]


def test_divergence_is_a_result_with_its_step(tmp_path):
    proc, run_dir = layerscope(tmp_path, *SMALL, "activation=relu", "init=normal", "init.std=1",
                               "optimizer.lr=1000", "trainer.max_steps=40", "probe.figures=false")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert 0 <= summary["diverged_at_step"] < 40 and summary["steps"] < 40


@pytest.mark.parametrize("override, words", [
    ("model.depth=0", "model.depth=0"),
    ("model.width=abc", "model.width='abc'"),
    ("optimizer.lr=-0.1", "optimizer.lr=-0.1"),
    ("trainer.batch_size=100000", "trainer.batch_size=100000"),
    ("model.dropout=1.0", "model.dropout=1.0"),
    ("trainer.device=tpu", "trainer.device='tpu'"),
    ("probe.every=0", "probe.every=0"),
])
def test_bad_value_gives_one_line_and_no_traceback(tmp_path, override, words):
    proc, run_dir = layerscope(tmp_path, "trainer.max_steps=1", override)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("layerscope: error:")]
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"


def test_unknown_choice_lists_the_valid_ones(tmp_path):
    proc, _ = layerscope(tmp_path, "activation=swishh")
    assert proc.returncode != 0
    assert "activation=swishh is not a choice; choose one of:" in proc.stderr
    assert "gelu" in proc.stderr and "tanh" in proc.stderr and "Traceback" not in proc.stderr


def test_help_lists_every_config_group(tmp_path):
    proc = subprocess.run([CLI, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    for group in ("activation:", "init:", "optimizer:", "bn:", "scheduler:", "data:", "loss:"):
        assert group in proc.stdout


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    args = [*SMALL, "trainer.max_steps=30", "probe.figures=false"]
    metrics = []
    for seed in (1, 1, 2):
        proc, run_dir = layerscope(tmp_path, *args, f"trainer.seed={seed}")
        assert proc.returncode == 0, proc.stderr
        metrics.append((run_dir / "metrics.jsonl").read_text())
    assert metrics[0] == metrics[1]
    assert metrics[0] != metrics[2]
