"""Every mistake a user can make on the command line ends with one line and exit status 2.

Each case runs the real console script; the table also checks that no earlier run folder changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CLI = str(Path(sys.executable).with_name("layerscope"))
FAST = ["trainer.max_steps=1", "model.depth=2", "model.width=8", "probe.figures=false", "trainer.progress=false"]

CASES = [
    (["model.depth=0"], "model.depth=0 must be a whole number >= 1"),
    (["model.depth=-3"], "model.depth=-3"),
    (["model.depth=abc"], "model.depth='abc'"),
    (["model.depth=2.5"], "model.depth=2.5"),
    (["model.width=0"], "model.width=0"),
    (["model.dropout=1.0"], "model.dropout=1.0 must be a number in [0, 1)"),
    (["model.dropout=-0.1"], "model.dropout=-0.1"),
    (["optimizer.lr=0"], "optimizer.lr=0 must be > 0"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1"),
    (["optimizer.lr=fast"], "optimizer.lr='fast' must be a number"),
    (["optimizer=momentum", "optimizer.mu=1.0"], "optimizer.mu=1 must be in [0, 1)"),
    (["optimizer=adam", "optimizer.rho=1.5"], "optimizer.rho=1.5"),
    (["optimizer=adagrad", "optimizer.delta=0"], "optimizer.delta=0 must be > 0"),
    (["trainer.batch_size=0"], "trainer.batch_size=0"),
    (["trainer.batch_size=100000"], "larger than the 1438 training examples"),
    (["trainer.epochs=-1"], "trainer.epochs=-1"),
    (["trainer.max_steps=-5"], "trainer.max_steps=-5"),
    (["trainer.device=tpu"], "trainer.device='tpu' is unknown"),
    pytest.param(["trainer.device=cuda"], "no CUDA GPU",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")),
    (["trainer.seed=abc"], "trainer.seed='abc'"),
    (["trainer.weight_decay=-1"], "trainer.weight_decay=-1"),
    (["trainer.clip_grad_norm=0"], "trainer.clip_grad_norm=0"),
    (["probe.every=0"], "probe.every=0"),
    (["probe.bins=1"], "probe.bins=1"),
    (["init=normal", "init.std=-1"], "init.std=-1"),
    (["init.gain=-2"], "init.gain=-2"),
    (["init.mode=fan_sideways"], "init.mode='fan_sideways' is unknown"),
    (["init.std=0.1"], "init.std is not a config key"),
    (["activation=swishh"], "activation=swishh is not a choice; choose one of: elu, gelu"),
    (["activation.negative_slope=0.1"], "activation.negative_slope is not a config key"),
    (["trainer.epoch=5"], "did you mean trainer.epochs?"),
    (["model.depth=["], "cannot read the override"),
    (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size=0"),
    (["data.test_fraction=1.5"], "data.test_fraction=1.5"),
    (["data=mnist"], "train-images-idx3-ubyte[.gz] not found in"),
    (["data=fashion_mnist"], "data=fashion_mnist"),
    (["data=cifar10"], "data_batch_1[.gz] not found"),
    (["data=mnist", "data.root={broken}"], "is not an unsigned-byte IDX file"),
    (["data.max_train=0"], "data.max_train=0"),
    (["bn=before", "trainer.batch_size=1"], "bn=before needs batches of 2 or more"),
    (["trainer.checkpoint_every=0"], "trainer.checkpoint_every=0"),
    (["trainer.resume=maybe"], "trainer.resume='maybe' must be true or false"),
    (["trainer.dtype=float16"], "trainer.dtype='float16' is unknown; choose one of: float32, float64"),
    (["trainer.cuda_graph=yes"], "trainer.cuda_graph='yes' must be true or false"),
    pytest.param(["trainer.cuda_graph=true"], "trainer.cuda_graph=true needs a CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")),
]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder holding one finished run, whose files must never change, and a broken MNIST folder."""
    tmp = tmp_path_factory.mktemp("bad-input")
    broken = tmp / "broken"
    broken.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (broken / name).write_bytes(b"this is not an IDX file")
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp / "outputs")}
    subprocess.run([CLI, *FAST], cwd=tmp, env=env, check=True, capture_output=True, timeout=300)
    earlier = next((tmp / "outputs" / "runs").glob("*/*"))
    before = snapshot(earlier)
    yield tmp, env, broken
    assert snapshot(earlier) == before, "a bad input changed an earlier run folder"


def check_one_line(proc: subprocess.CompletedProcess, expected: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("layerscope: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr


def _case_id(case) -> str:
    return " ".join((case.values if hasattr(case, "values") else case)[0])


@pytest.mark.parametrize("overrides, expected", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_is_one_line(workspace, overrides, expected):
    tmp, env, broken = workspace
    overrides = [o.format(broken=broken) for o in overrides]
    proc = subprocess.run([CLI, *FAST, *overrides], cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
    check_one_line(proc, expected)


def test_unwritable_output_folder_is_one_line(workspace):
    tmp, env, _ = workspace
    blocker = tmp / "a-file"
    blocker.write_text("")
    proc = subprocess.run([CLI, *FAST], cwd=tmp, env={**env, "LAYERSCOPE_OUTPUTS": str(blocker / "out")},
                          capture_output=True, text=True, timeout=120)
    check_one_line(proc, "cannot write")
