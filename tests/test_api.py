"""Results in Python: ``layerscope.run``, ``load_run`` and ``load_sweep``, as rows and as pandas tables."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

import layerscope
from layerscope import api
from layerscope.errors import ConfigError
from layerscope.runs.results import RunResult

TINY = ["data=spirals", "model.depth=2", "model.width=8", "trainer.max_steps=20", "probe.every=10",
        "probe.figures=false", "trainer.progress=false"]


@pytest.fixture
def rows(monkeypatch):
    """Tables as plain rows, whether or not pandas is installed."""
    monkeypatch.setattr(api, "_pandas", lambda: None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = layerscope.run([*TINY, "activation=relu"], output_dir=tmp_path_factory.mktemp("api") / "run")
    return run.path


def test_import_leaves_torch_and_matplotlib_unloaded():
    code = "import sys, layerscope; assert not {'torch', 'matplotlib'} & set(sys.modules), sorted(sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_run_writes_a_cli_run_folder_and_reads_it_back_as_rows(trained, rows):
    run = layerscope.load_run(trained)
    assert run.status == "completed" and run.summary["steps"] == 20 and run.path == trained
    assert {"config.yaml", "summary.json", "metrics.jsonl", "probes.jsonl"} <= {p.name for p in trained.iterdir()}
    assert (trained / ".hydra" / "overrides.yaml").read_text().split() == [w for o in TINY + ["activation=relu"]
                                                                           for w in ("-", o)]
    assert run.config["activation"]["name"] == "relu" and run.config["model"]["width"] == 8
    assert [m["step"] for m in run.metrics] == [5, 10, 15, 20]  # spirals: 720 training points, batch 128
    assert run.metrics[-1]["test_loss"] == run.summary["final"]["test_loss"] and "step_losses" not in run.metrics[0]
    assert [r["step"] for r in run.losses] == list(range(20))
    assert run.losses[0]["train_loss"] == RunResult.load(trained).metrics[0]["step_losses"][0]


def test_probes_are_one_row_per_step_layer_and_statistic(trained, rows):
    run = layerscope.load_run(trained)
    measured = [p for p in run.probes if p["source"] == "measured"]
    assert {p["step"] for p in measured} == {0, 10, 19} and {p["layer"] for p in measured} == {1, 2}
    std = {(p["step"], p["layer"]): p["value"] for p in measured if p["statistic"] == "activation_std"}
    assert std[(19, 2)] == RunResult.load(trained).stat("activation_std", -1)[1]
    assert all(math.isnan(p["value"]) for p in measured if p["statistic"] == "saturated_fraction")  # relu
    theory = [p for p in run.probes if p["source"] == "theory"]
    assert {p["step"] for p in theory} == {0} and {"activation_std", "chi"} <= {p["statistic"] for p in theory}
    bins = [h for h in run.histograms if h["step"] == 0 and h["quantity"] == "activation" and h["layer"] == 1]
    assert sum(h["count"] for h in bins) == pytest.approx(RunResult.load(trained).probes[0].histograms["activation"][0].num)


def test_tables_are_dataframes_with_pandas(trained):
    pandas = pytest.importorskip("pandas")
    run = layerscope.load_run(trained)
    assert isinstance(run.metrics, pandas.DataFrame) and list(run.losses.columns) == ["step", "train_loss"]
    std = run.probes.query("statistic == 'activation_std' and step == 0").pivot(
        index="layer", columns="source", values="value")
    assert list(std.columns) == ["measured", "theory"] and len(std) == 2


def test_load_sweep_has_a_row_per_job_and_a_column_per_swept_key(tmp_path, rows):
    for number, seed in enumerate((0, 1)):
        layerscope.run([*TINY, "trainer.max_steps=5", f"trainer.seed={seed}"], output_dir=tmp_path / str(number))
    sweep = layerscope.load_sweep(tmp_path)
    assert [(j["job"], j["trainer.seed"], j["status"]) for j in sweep.jobs] == [("0", 0, "completed"), ("1", 1, "completed")]
    assert sweep.jobs[1]["test_loss"] == sweep.runs["1"].summary["final"]["test_loss"]
    assert sweep.runs[0] is sweep.runs["0"] and sweep.runs[-1].path == tmp_path / "1"  # an int is a position
    assert list(sweep.runs) == ["0", "1"]
    assert {(m["job"], m["trainer.seed"], m["step"]) for m in sweep.metrics} == {("0", 0, 5), ("1", 1, 5)}
    (seeds,) = sweep.seeds
    assert seeds["completed"] == 2 and seeds["test_loss_mean"] == pytest.approx(
        sum(j["test_loss"] for j in sweep.jobs) / 2)


def test_mistakes_raise_one_clear_error_and_leave_no_folder(tmp_path, trained):
    with pytest.raises(ConfigError, match="model.depth"):
        layerscope.run([*TINY, "model.depth=0"], output_dir=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match="already holds a run"):
        layerscope.run(TINY, output_dir=trained)
    with pytest.raises(FileNotFoundError):
        layerscope.load_run(tmp_path / "missing")
    with pytest.raises(ValueError, match="load_sweep"):
        layerscope.load_run(trained.parent)


def test_the_test_curve_starts_at_step_0_with_the_initial_weights(tmp_path):
    from layerscope.runs.results import RunResult

    frozen = layerscope.run([*TINY, "optimizer.lr=1e-12"], output_dir=tmp_path / "frozen")  # weights do not move
    steps, losses = RunResult.load(frozen.path).test_curve("test_loss")
    assert steps[0] == 0 and steps[1] > 0
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)  # the same weights: the same test loss
    moving = RunResult.load(layerscope.run([*TINY, "optimizer.lr=0.5"], output_dir=tmp_path / "moving").path)
    assert moving.test_curve("test_loss")[1][0] != pytest.approx(moving.test_curve("test_loss")[1][1], rel=1e-3)
