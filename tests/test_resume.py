"""Checkpoints: a run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from layerscope.runs.results import run_status

CLI = str(Path(sys.executable).with_name("layerscope"))
ARGS = ["model.depth=3", "model.width=64", "model.dropout=0.1", "trainer.batch_size=32", "trainer.max_steps=1500",
        "trainer.checkpoint_every=25", "probe.every=20", "probe.figures=false", "trainer.progress=false"]


def layerscope(outputs: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(outputs)}
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.mark.slow  # ~50 s: the SIGTERM tests beside it check the same resume in the fast suite
def test_sigkill_then_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    assert layerscope(tmp_path / "reference", *ARGS).returncode == 0
    reference = next((tmp_path / "reference" / "runs").glob("*/*"))

    outputs = tmp_path / "killed"
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(outputs)}
    proc = subprocess.Popen([CLI, *ARGS], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(outputs.glob("runs/*/*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # part-way past the first checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = next((outputs / "runs").glob("*/*"))
    assert json.loads((run / "summary.json").read_text())["status"] == "running", "it finished before the kill"
    assert run_status(run) == "incomplete"  # its lock is stale: the process is gone
    killed_at = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < killed_at < 1500

    resumed = layerscope(outputs, *ARGS, "trainer.resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from the checkpoint at step {killed_at}" in resumed.stderr
    assert "(the run was left incomplete" in resumed.stderr and "took over the stale lock of process" in resumed.stderr
    assert not (run / "run.lock").exists()
    assert [p.name for p in (outputs / "runs").glob("*/*")] == [run.name]  # continued in place
    assert (run / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    assert json.loads((run / "summary.json").read_text())["final"] == json.loads(
        (reference / "summary.json").read_text())["final"]
    mine = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    theirs = torch.load(reference / "checkpoint.pt", weights_only=True)["model"]
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    for tag in ("loss/train", "activation_std/layer_01"):
        steps = [e.step for e in acc.Scalars(tag)]
        assert steps == sorted(set(steps)), f"duplicated steps in {tag}"
    assert [e.step for e in acc.Histograms("activation/layer_02")] == list(range(0, 1500, 20)) + [1499]


def test_resume_without_an_earlier_run_starts_fresh(tmp_path):
    proc = layerscope(tmp_path, "model.depth=2", "model.width=16", "trainer.max_steps=5", "probe.figures=false",
                      "trainer.resume=true")
    assert proc.returncode == 0, proc.stderr
    assert "no checkpoint in" in proc.stderr


@pytest.mark.parametrize("damage", [pytest.param("truncate", marks=pytest.mark.slow), "garbage"])
def test_a_damaged_checkpoint_starts_the_run_over_and_says_so_in_one_line(tmp_path, damage):
    args = ["model.depth=2", "model.width=16", "trainer.max_steps=30", "trainer.checkpoint_every=10",
            "probe.figures=false", "trainer.progress=false"]
    assert layerscope(tmp_path, *args).returncode == 0
    run = next((tmp_path / "runs").glob("*/*"))
    reference = (run / "metrics.jsonl").read_text()
    (run / "summary.json").unlink()  # as if killed
    path = run / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:200] if damage == "truncate" else b"not a checkpoint")
    proc = layerscope(tmp_path, *args, "trainer.resume=true")
    said = [line for line in proc.stderr.splitlines() if "checkpoint.pt is damaged" in line]
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(said) == 1 and said[0].endswith("starting over at step 0")
    assert (run / "metrics.jsonl").read_text() == reference  # trained again from step 0, to the same numbers
    assert torch.load(path, weights_only=True)["step"] == 30


def test_fail_on_divergence_turns_the_result_into_an_error(tmp_path):
    args = ["model.depth=3", "model.width=32", "activation=relu", "init=normal_1", "optimizer.lr=1000",
            "trainer.max_steps=30", "probe.every=5", "probe.figures=false"]
    assert layerscope(tmp_path, *args).returncode == 0
    proc = layerscope(tmp_path, *args, "trainer.fail_on_divergence=true")
    assert proc.returncode == 3 and "diverged at step" in proc.stderr.splitlines()[-1]


def test_a_diverged_run_keeps_its_last_good_checkpoint(tmp_path):
    args = ["model.depth=3", "model.width=32", "activation=relu", "init=normal_1", "optimizer.lr=1000",
            "trainer.max_steps=40", "trainer.checkpoint_every=1", "probe.every=20", "probe.figures=false"]
    assert layerscope(tmp_path, *args).returncode == 0
    run = next((tmp_path / "runs").glob("*/*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged"
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] <= summary["diverged_at_step"]
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_checkpoints_load_onto_the_cpu_whatever_the_run_device(tmp_path, monkeypatch):
    """A generator state must stay a CPU byte tensor: resuming a CUDA run once mapped it to the GPU."""
    from layerscope.runs import checkpoint

    args = ["model.depth=2", "model.width=16", "trainer.max_steps=30", "trainer.checkpoint_every=10",
            "probe.figures=false", "trainer.progress=false"]
    assert layerscope(tmp_path, *args).returncode == 0
    path = next((tmp_path / "runs").glob("*/*")) / "checkpoint.pt"
    asked = []
    original = torch.load
    monkeypatch.setattr(checkpoint.torch, "load", lambda *a, map_location=None, **kw: asked.append(map_location)
                        or original(*a, map_location="cpu", **kw))
    state = checkpoint.load_checkpoint(path)
    assert asked == ["cpu"]  # never the run's device
    for rng in (state["epoch_generator"], state["dropout"]):
        assert rng.device.type == "cpu" and rng.dtype == torch.uint8
    torch.Generator().set_state(state["epoch_generator"])


SIGNAL_ARGS = ["model.depth=3", "model.width=64", "model.dropout=0.1", "trainer.batch_size=32", "trainer.max_steps=1500",
               "trainer.checkpoint_every=null", "probe.every=100", "probe.figures=false", "trainer.progress=false"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The run the interrupted-and-resumed ones must equal."""
    outputs = tmp_path_factory.mktemp("uninterrupted")
    assert layerscope(outputs, *SIGNAL_ARGS).returncode == 0
    return next((outputs / "runs").glob("*/*"))


@pytest.mark.parametrize("sig, status", [pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow),  # same path
                                         (signal.SIGTERM, 143)])
def test_a_signal_stops_cleanly_and_resume_is_bit_identical(tmp_path, uninterrupted, sig, status):
    outputs = tmp_path / "stopped"
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(outputs)}
    proc = subprocess.Popen([CLI, *SIGNAL_ARGS], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(p.stat().st_size for p in outputs.glob("runs/*/*/metrics.jsonl")):
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before the signal could reach its loop"
    proc.send_signal(sig)  # one epoch of 44 steps is done, about 1450 are left
    _, stderr = proc.communicate(timeout=120)
    run = next((outputs / "runs").glob("*/*"))
    summary = json.loads((run / "summary.json").read_text())
    assert proc.returncode == status and "trainer.resume=true" in stderr.strip().splitlines()[-1], stderr
    assert stderr.count("trainer.resume=true") == 1  # the hint once, in the last line
    assert summary["status"] == "interrupted" and summary["signal"] == signal.Signals(sig).name
    stopped_at = summary["interrupted_at_step"]
    assert 0 < stopped_at < 1500 and torch.load(run / "checkpoint.pt", weights_only=True)["step"] == stopped_at
    resumed = layerscope(outputs, *SIGNAL_ARGS, "trainer.resume=true")
    assert resumed.returncode == 0 and f"resuming from the checkpoint at step {stopped_at}" in resumed.stderr
    assert (run / "metrics.jsonl").read_text() == (uninterrupted / "metrics.jsonl").read_text()
    assert (run / "probes.jsonl").read_text() == (uninterrupted / "probes.jsonl").read_text()


def test_non_finite_numbers_are_written_as_null(tmp_path):
    """summary.json, metrics.jsonl and probes.jsonl stay strict JSON when the loss overflows."""
    args = ["model.depth=3", "model.width=32", "activation=relu", "init=normal_1", "optimizer.lr=1e38",
            "trainer.max_steps=30", "probe.every=1", "probe.figures=false"]
    assert layerscope(tmp_path, *args).returncode == 0
    run = next((tmp_path / "runs").glob("*/*"))

    def strict(text: str):
        return json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} is not JSON"))

    summary = strict((run / "summary.json").read_text())
    assert summary["status"] == "diverged"
    for name in ("metrics.jsonl", "probes.jsonl"):
        for line in (run / name).read_text().splitlines():
            strict(line)
    assert any(v is None for line in (run / "probes.jsonl").read_text().splitlines()
               for values in strict(line)["stats"].values() for v in values)


def test_write_json_atomic_turns_non_finite_numbers_into_null(tmp_path):
    from layerscope.files import write_json_atomic
    from layerscope.runs.results import RunResult

    write_json_atomic(tmp_path / "summary.json", {"status": "diverged", "final": {"train_loss": float("inf")},
                                                  "rates": [float("nan"), torch.tensor(float("-inf")), 1.5]})
    text = (tmp_path / "summary.json").read_text()
    data = json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} is not JSON"))
    assert data["final"]["train_loss"] is None and data["rates"] == [None, None, 1.5]
    assert np.isnan(RunResult.load(tmp_path).final("train_loss"))  # null reads back as NaN


FIGURE_ARGS = ["model.depth=2", "model.width=16", "trainer.epochs=6", "probe.every=2", "probe.figures=every",
               "trainer.progress=false"]


def test_a_signal_while_the_figures_are_drawn_loses_no_epoch(tmp_path):
    """SIGINT after training, while the figures of its 34 probes are drawn: summary.json records the step, and the
    resumed run keeps all 6 epochs and the training time of both processes."""
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp_path)}
    proc = subprocess.Popen([CLI, *FIGURE_ARGS], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob("runs/*/*/figures/*.png")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # the first of 34 figures is drawn: the others are being drawn
    _, stderr = proc.communicate(timeout=120)
    run = next((tmp_path / "runs").glob("*/*"))
    stopped = json.loads((run / "summary.json").read_text())
    assert proc.returncode == 130 and len(list((run / "figures").glob("*.png"))) < 34, stderr
    assert (stopped["status"], stopped["signal"], stopped["interrupted_at_step"]) == ("interrupted", "SIGINT", 66)
    metrics = (run / "metrics.jsonl").read_text()
    assert [json.loads(line)["epoch"] for line in metrics.splitlines()] == [1, 2, 3, 4, 5, 6]

    resumed = layerscope(tmp_path, *FIGURE_ARGS, "trainer.resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from the checkpoint at step 66 (the run was interrupted by SIGINT after step 66)" in resumed.stderr
    assert (run / "metrics.jsonl").read_text() == metrics  # no epoch lost, none written twice
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["train_seconds"] >= stopped["train_seconds"] > 0
    assert summary["samples_per_second"] == pytest.approx(66 * 128 / summary["train_seconds"])
    accumulator = EventAccumulator(str(run))
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("loss/test")][-1] == 66
    assert len(list((run / "figures").glob("*.png"))) == 34


def _file_size_limit(limit: int):
    """A subprocess whose files may not grow past ``limit`` bytes: a write beyond it fails (EFBIG), as on a full
    disk, instead of killing the process (SIGXFSZ ignored)."""
    def limited() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limited


def test_a_full_disk_while_a_checkpoint_is_written_is_one_line_and_keeps_the_last_one(tmp_path):
    run = tmp_path / "run"
    args = ["model.depth=2", "model.width=256", "probe.every=50", "probe.figures=false", "trainer.progress=false",
            "trainer.max_steps=20", "trainer.checkpoint_every=null", f"hydra.run.dir={run}"]
    assert layerscope(tmp_path, *args).returncode == 0
    before = (run / "checkpoint.pt").read_bytes()
    assert len(before) > 300_000  # the next one cannot be written under the limit; every other file can

    full = layerscope(tmp_path, *args, "trainer.resume=true",  # writes its final checkpoint again
                      preexec_fn=_file_size_limit(250_000))
    lines = full.stderr.strip().splitlines()
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    assert lines[-1].startswith(f"layerscope: error: cannot write {run / 'checkpoint.pt'}: File too large; make room")
    assert (run / "checkpoint.pt").read_bytes() == before  # the last good checkpoint, whole
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
