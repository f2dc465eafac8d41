"""Sweeps: launchers, one folder and summary per job, the sweep report, local failures, resuming."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

CLI = str(Path(sys.executable).with_name("layerscope"))
REPORT = str(Path(sys.executable).with_name("layerscope-report"))
SMALL = ["model.depth=2", "model.width=16", "trainer.max_steps=12", "probe.every=4", "probe.figures=false",
         "trainer.progress=false", "trainer.batch_size=64"]


def sweep(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Run ``layerscope -m`` from ``tmp_path``; return the process and the sweep folder."""
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp_path / "outputs")}
    proc = subprocess.run([CLI, "-m", *overrides], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    folders = sorted((tmp_path / "outputs" / "sweeps").glob("*/*"))
    return proc, (folders[-1] if folders else tmp_path / "missing")


def table(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "sweep.csv") as stream:
        return list(csv.DictReader(stream))


def test_basic_launcher_keeps_diverged_and_failed_jobs_as_rows(tmp_path):
    # batch 64 trains with lr 0.01 and diverges with lr 1000; batch 5000 is refused (digits has 1437 examples)
    proc, sweep_dir = sweep(tmp_path, *SMALL, "activation=relu", "trainer.batch_size=64,5000", "optimizer.lr=0.01,1000")
    assert proc.returncode == 1, proc.stderr  # a failed job fails the sweep; a diverged one does not
    assert proc.stderr.splitlines()[-1].startswith("4 jobs: 1 completed, 1 diverged, 2 failed; see ")
    assert sweep_dir.parent.parent.name == "sweeps" and not (tmp_path / "multirun").exists()
    rows = table(sweep_dir)
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    assert {r["overrides"]: r["status"] for r in rows} == {
        "trainer.batch_size=64 optimizer.lr=0.01": "completed", "trainer.batch_size=64 optimizer.lr=1000": "diverged",
        "trainer.batch_size=5000 optimizer.lr=0.01": "failed", "trainer.batch_size=5000 optimizer.lr=1000": "failed"}
    failed = rows[2]
    assert "trainer.batch_size=5000 is larger than" in failed["error"] and "\n" not in failed["error"]
    assert float(rows[0]["activation_std_first_layer_01"]) > 0 and rows[0]["backward_norm_last_layer_02"]
    assert int(rows[1]["diverged_at_step"]) < 12
    names = ["optimizer.lr=0.01,trainer.batch_size=64", "optimizer.lr=1000,trainer.batch_size=64",
             "optimizer.lr=0.01,trainer.batch_size=5000", "optimizer.lr=1000,trainer.batch_size=5000"]
    for number, name in enumerate(names):  # job folders are named by their swept overrides
        assert json.loads((sweep_dir / name / "summary.json").read_text())["status"] == rows[number]["status"]
    markdown = (sweep_dir / "SWEEP.md").read_text()
    assert "4 jobs: 1 completed, 1 diverged, 2 failed" in markdown
    assert (sweep_dir / "sweep_layers.png").stat().st_size > 0 and (sweep_dir / "sweep_loss.png").stat().st_size > 0
    assert not (sweep_dir / "sweep_seeds.csv").exists() and "Over seeds" not in markdown  # the seed is not swept


def test_report_gives_each_configuration_its_mean_and_spread_over_seeds(tmp_path):
    import layerscope
    from layerscope.sweep.report import write_sweep_report

    for number, (activation, seed) in enumerate((a, s) for a in ("tanh", "relu") for s in (0, 1)):
        layerscope.run([*SMALL, "data=spirals", "trainer.max_steps=5", f"activation={activation}", f"trainer.seed={seed}"],
                       output_dir=tmp_path / str(number))
    summary = json.loads((tmp_path / "1" / "summary.json").read_text())
    (tmp_path / "1" / "summary.json").write_text(json.dumps({**summary, "status": "diverged"}))  # as if seed 1 had
    markdown = write_sweep_report(tmp_path).read_text()
    jobs = {r["overrides"]: float(r["test_loss"]) for r in table(tmp_path)}
    with open(tmp_path / "sweep_seeds.csv") as stream:
        tanh, relu = csv.DictReader(stream)
    assert (tanh["overrides"], tanh["seeds"], tanh["completed"], tanh["test_loss_std"]) == ("activation=tanh", "2", "1", "")
    assert float(tanh["test_loss_mean"]) == pytest.approx(jobs["activation=tanh trainer.seed=0"])  # diverged left out
    relu_losses = [jobs["activation=relu trainer.seed=0"], jobs["activation=relu trainer.seed=1"]]
    assert float(relu["test_loss_mean"]) == pytest.approx(sum(relu_losses) / 2)
    assert float(relu["test_loss_std"]) == pytest.approx(abs(relu_losses[0] - relu_losses[1]) / 2 ** 0.5)
    assert float(relu["test_loss_min"]) == pytest.approx(min(relu_losses))
    assert "## Over seeds" in markdown and "| `activation=relu` | 2 / 2 | " in markdown
    assert "| `activation=tanh` | 1 / 2 | " in markdown


def test_joblib_launcher_runs_two_jobs_with_one_thread_each(tmp_path):
    proc, sweep_dir = sweep(tmp_path, *SMALL, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "activation=tanh,relu")
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in table(sweep_dir)] == ["completed", "completed"]
    expected = max(1, (os.cpu_count() or 1) // 2)
    for job in ("activation=tanh", "activation=relu"):
        assert f"threads: {expected}" in (sweep_dir / job / "config.yaml").read_text()


@pytest.mark.slow  # the stacked launcher's submitit_local dispatch stays in the fast suite (test_stacked.py)
def test_submitit_local_launcher(tmp_path):
    proc, sweep_dir = sweep(tmp_path, *SMALL, "hydra/launcher=submitit_local", "activation=tanh,relu")
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in table(sweep_dir)] == ["completed", "completed"]


def test_slurm_launcher_config_composes(tmp_path):
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp_path)}
    out = subprocess.run([CLI, "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra",
                          "--package", "hydra.launcher"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for key in ("partition: gpu", "timeout_min: 60", "gpus_per_node: 1", "mem_gb: 16", "SlurmLauncher"):
        assert key in out.stdout


def test_report_regenerates_a_partial_sweep_and_reruns_skip_finished_jobs(tmp_path):
    proc, sweep_dir = sweep(tmp_path, *SMALL, "activation=tanh,relu")
    assert proc.returncode == 0, proc.stderr
    (sweep_dir / "activation=relu" / "summary.json").unlink()  # as if job 1 had been killed
    out = subprocess.run([REPORT, str(sweep_dir)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert [r["status"] for r in table(sweep_dir)] == ["completed", "incomplete"]
    finished = (sweep_dir / "activation=tanh" / "metrics.jsonl").stat().st_mtime_ns
    proc, again = sweep(tmp_path, *SMALL, "activation=tanh,relu", f"hydra.sweep.dir={sweep_dir}", "skip_completed=true")
    assert proc.returncode == 0 and again == sweep_dir, proc.stderr
    assert (sweep_dir / "activation=tanh" / "metrics.jsonl").stat().st_mtime_ns == finished  # not run again
    assert [r["status"] for r in table(sweep_dir)] == ["completed", "completed"]
    rows = [(sweep_dir / f"activation={a}" / "metrics.jsonl").read_text().splitlines() for a in ("tanh", "relu")]
    assert len(rows[1]) == len(rows[0])  # job 1 started over: its first try's lines are gone, not doubled


def test_report_on_a_missing_folder_is_one_line(tmp_path):
    out = subprocess.run([REPORT, str(tmp_path / "nope")], capture_output=True, text=True)
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_each_run_writes_hparams_without_a_sub_run(tmp_path):
    proc, sweep_dir = sweep(tmp_path, *SMALL, "activation=tanh")
    assert proc.returncode == 0, proc.stderr
    job = sweep_dir / "0"
    assert not [p for p in job.rglob("events.out.tfevents.*") if p.parent != job]
    acc = EventAccumulator(str(job), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(content)
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["activation"].string_value == "tanh" and start.hparams["model.depth"].number_value == 2
    assert {"hparam/train_loss", "hparam/test_accuracy"} <= set(acc.Tags()["scalars"])


def test_probe_grid_measures_every_cell_in_one_run(tmp_path):
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp_path / "outputs")}
    proc = subprocess.run([CLI, "experiment=probe_grid", "grid.activation=[tanh,relu]", "grid.init=[xavier_normal,he_normal]",
                           "grid.bn=[none,before]", "model.width=32", "trainer.progress=false"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_dir = next((tmp_path / "outputs" / "runs").glob("*/*"))
    with open(run_dir / "grid.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["activation"], r["init"], r["bn"]) for r in rows][:3] == [
        ("tanh", "xavier_normal", "none"), ("tanh", "xavier_normal", "before"), ("tanh", "he_normal", "none")]
    assert len(rows) == 8 and (run_dir / "grid.png").exists() and (run_dir / "GRID.md").exists()
    relu_he = next(r for r in rows if r["activation"] == "relu" and r["init"] == "he_normal" and r["bn"] == "none")
    assert 0.5 < float(relu_he["std_ratio_last_first"]) < 2
    bad = subprocess.run([CLI, "experiment=probe_grid", "grid.init=[nope]"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "grid.init names 'nope'" in bad.stderr and "Traceback" not in bad.stderr
