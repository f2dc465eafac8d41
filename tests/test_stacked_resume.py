"""A stacked sweep stops and resumes as single runs do: SIGKILL or a signal at any point, then the same command
with ``trainer.resume=true skip_completed=true`` ends every member bit-identical to an uninterrupted sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

CLI = str(Path(sys.executable).with_name("layerscope"))
# four members in two stacks of two (the second stack starts when the first has finished), with dropout
SWEEP = ["-m", "hydra/launcher=stacked", "hydra.launcher.max_members=2", "optimizer=sgd,adam",
         "init=he_normal,xavier_normal", "model.depth=3", "model.width=32", "model.dropout=0.1",
         "trainer.batch_size=32", "trainer.max_steps=700", "trainer.checkpoint_every=25", "probe.every=50",
         "probe.figures=false", "trainer.progress=false"]
RESUME = ["trainer.resume=true", "skip_completed=true"]


def start(outputs: Path, sweep_dir: Path, *extra: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(outputs)}
    return subprocess.Popen([CLI, *SWEEP, f"hydra.sweep.dir={sweep_dir}", *extra], cwd=outputs, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def sweep(outputs: Path, sweep_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    outputs.mkdir(parents=True, exist_ok=True)
    proc = start(outputs, sweep_dir, *extra)
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def members(sweep_dir: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in sweep_dir.glob("*/.hydra")}


def status(folder: Path) -> str | None:
    try:
        return json.loads((folder / "summary.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


def assert_same_members(sweep_dir: Path, reference: Path) -> None:
    """Each member's metrics.jsonl, final metrics and weights equal the uninterrupted sweep's, bit for bit."""
    ours, theirs = members(sweep_dir), members(reference)
    assert sorted(ours) == sorted(theirs) and len(ours) == 4
    for name, folder in ours.items():
        assert (folder / "metrics.jsonl").read_text() == (theirs[name] / "metrics.jsonl").read_text(), name
        summary, expected = (json.loads((f / "summary.json").read_text()) for f in (folder, theirs[name]))
        assert summary["status"] == "completed" and summary["final"] == expected["final"], name
        mine = torch.load(folder / "checkpoint.pt", weights_only=True)["model"]
        other = torch.load(theirs[name] / "checkpoint.pt", weights_only=True)["model"]
        assert mine.keys() == other.keys() and all(torch.equal(mine[k], other[k]) for k in mine), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted sweep."""
    outputs = tmp_path_factory.mktemp("reference")
    proc = sweep(outputs, outputs / "sweep")
    assert proc.returncode == 0, proc.stderr
    return outputs / "sweep"


@pytest.mark.slow  # ~50 s: the SIGTERM tests beside it check the same resume in the fast suite
def test_sigkill_mid_sweep_then_resume_is_bit_identical(tmp_path, reference):
    """Killed while the second stack trains: the first stack's members are skipped, the second's continue."""
    sweep_dir = tmp_path / "sweep"
    proc = start(tmp_path, sweep_dir)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        done = [f for f in members(sweep_dir).values() if status(f) == "completed"]
        if len(done) == 2 and any((f / "checkpoint.pt").exists() and status(f) == "running"
                                  for f in members(sweep_dir).values()):
            break
        time.sleep(0.01)
    time.sleep(0.2)  # part-way past the second stack's first checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    unfinished = {name: f for name, f in members(sweep_dir).items() if status(f) != "completed"}
    assert len(unfinished) == 2, "the kill did not land in the second stack"
    steps = {name: torch.load(f / "checkpoint.pt", weights_only=True)["step"] for name, f in unfinished.items()}
    assert all(0 < s < 700 for s in steps.values()) and all(status(f) == "running" for f in unfinished.values())

    resumed = sweep(tmp_path, sweep_dir, *RESUME)
    assert resumed.returncode == 0, resumed.stderr
    assert "4 jobs, 2 skipped as finished" in resumed.stdout  # Hydra's log
    for name, step in steps.items():
        assert f"resuming from the checkpoint at step {step}" in (unfinished[name] / "train.log").read_text()
    assert_same_members(sweep_dir, reference)


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_signal_interrupts_every_member_and_the_printed_command_resumes_them(tmp_path, reference, sig):
    sweep_dir = tmp_path / "sweep"
    proc = start(tmp_path, sweep_dir)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any(
            (f / "metrics.jsonl").exists() and (f / "metrics.jsonl").stat().st_size for f in members(sweep_dir).values()):
        time.sleep(0.005)
    assert proc.poll() is None, "the sweep ended before the signal could reach its loop"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr
    hint = stderr.strip().splitlines()[-1]
    assert "trainer.resume=true skip_completed=true" in hint and f"hydra.sweep.dir={sweep_dir}" in hint, stderr
    summaries = {name: json.loads((f / "summary.json").read_text()) for name, f in members(sweep_dir).items()}
    assert len(summaries) == 4 and all(s["status"] == "interrupted" for s in summaries.values()), summaries
    for name, summary in summaries.items():  # the first stack stopped mid-way, the second before its first step
        assert summary["signal"] == sig.name and 0 <= summary["interrupted_at_step"] < 700, name

    resumed = sweep(tmp_path, sweep_dir, *RESUME)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_members(sweep_dir, reference)


def test_a_member_without_a_usable_checkpoint_starts_over_in_one_line(tmp_path, reference):
    """Of two killed members one lost its checkpoint and one has a damaged one: both start over and say so."""
    sweep_dir = tmp_path / "sweep"
    proc = start(tmp_path, sweep_dir, "hydra.launcher.max_members=4")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(sweep_dir.glob("*/checkpoint.pt"))) < 4:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    folders = sorted(members(sweep_dir).values())
    (folders[0] / "checkpoint.pt").unlink()
    (folders[1] / "checkpoint.pt").write_bytes(b"not a checkpoint")
    resumed = sweep(tmp_path, sweep_dir, *RESUME, "hydra.launcher.max_members=4")
    assert resumed.returncode == 0, resumed.stderr
    missing, damaged = ((f / "train.log").read_text().splitlines() for f in folders[:2])
    assert sum(line.endswith(f"no checkpoint in {folders[0]}: starting at step 0") for line in missing) == 1
    assert sum(line.endswith("starting over at step 0") for line in damaged) == 1
    assert_same_members(sweep_dir, reference)  # max_members changes no member's numbers
