"""Every mistake a user can make on the command line ends with one line and exit status 2.

Each case runs the real console script; the table also checks that no earlier run folder changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

CLI = str(Path(sys.executable).with_name("layerscope"))
FAST = ["trainer.max_steps=1", "model.depth=2", "model.width=8", "probe.figures=false", "trainer.progress=false"]

CASES = [
    # layerscope.config.validate, through the console script (tests/test_validate.py holds the full table)
    (["model.depth=0"], "model.depth=0 must be a whole number >= 1"),
    (["optimizer.lr=nan"], "optimizer.lr=nan must be a finite number > 0"),
    (["probe.figures=maybe"], "probe.figures='maybe' must be true (the first and last probe's figures), every or false"),
    (["++unknown.key=1"], "unknown.key is not a key of the config"),
    (["+optimizer.mu=0.5"], "optimizer.mu is not a key of optimizer=sgd"),
    (["experiment=small_gausian_init"], "experiment=small_gausian_init is not an experiment; did you mean"),
    (["-m", "experiment=he_relu,xavier_rleu"], "experiment=xavier_rleu is not an experiment"),
    (["trainer.batch_size=100000"], "larger than the 1438 training examples"),
    (["model.width=10000000"], "GB with its gradients, optimizer state and activations"),
    (["trainer.device=tpu"], "trainer.device='tpu' is unknown"),
    pytest.param(["trainer.device=cuda"], "no CUDA GPU",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")),
    pytest.param(["trainer.cuda_graph=true"], "trainer.cuda_graph=true needs a CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")),
    # Hydra's own checks: keys, choices, syntax
    (["init.std=0.1"], "init.std is not a config key"),
    (["activation=swishh"], "activation=swishh is not a choice; choose one of: elu, gelu"),
    (["activation.negative_slope=0.1"], "activation.negative_slope is not a config key"),
    (["trainer.epoch=5"], "did you mean trainer.epochs?"),
    (["model.depth=["], "cannot read the override"),
    # data files
    (["data=mnist", "data.download=false"], "train-images-idx3-ubyte[.gz] not found in"),
    (["data=fashion_mnist", "data.download=false"], "data=fashion_mnist"),
    (["data=cifar10", "data.download=false"], "data_batch_1[.gz] not found"),
    (["data=mnist", "data.mirrors=[ftp://example.org/mnist/]"], "must be an http:// or https:// URL"),
    (["data=mnist", "data.root={broken}"], "is not an unsigned-byte IDX file"),
    (["data=mnist", "data.root={labels}"], "holds label 200 at index 1, outside the 10 classes 0..9"),
    # run folders: one that holds a run is not reused, except to resume that same command
    (["hydra.run.dir={earlier}"], "already holds a run; choose a new folder"),
    (["hydra.run.dir={earlier}", "trainer.resume=true", "model.width=9"], "holds a run of other overrides"),
    (["-m", "hydra.sweep.dir={day}", "model.width=8,9"], "run(s); add skip_completed=true to finish that sweep"),
]


def idx(array: np.ndarray) -> bytes:
    """``array`` as an unsigned-byte IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder holding one finished run, whose files must never change, and a broken MNIST folder."""
    tmp = tmp_path_factory.mktemp("bad-input")
    broken, labels = tmp / "broken", tmp / "labels"
    broken.mkdir()
    labels.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (broken / name).write_bytes(b"this is not an IDX file")
    for prefix in ("train", "t10k"):  # MNIST-shaped, but one label names an 11th class
        (labels / f"{prefix}-images-idx3-ubyte").write_bytes(idx(np.zeros((4, 28, 28))))
        (labels / f"{prefix}-labels-idx1-ubyte").write_bytes(idx(np.array([3, 200, 1, 0])))
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp / "outputs")}
    subprocess.run([CLI, *FAST], cwd=tmp, env=env, check=True, capture_output=True, timeout=300)
    earlier = next((tmp / "outputs" / "runs").glob("*/*"))
    before = snapshot(earlier)
    yield tmp, env, {"broken": broken, "labels": labels, "earlier": earlier, "day": earlier.parent}
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
    tmp, env, folders = workspace
    overrides = [o.format(**folders) for o in overrides]
    proc = subprocess.run([CLI, *FAST, *overrides], cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
    check_one_line(proc, expected)


def test_unwritable_output_folder_is_one_line(workspace):
    tmp, env, _ = workspace
    blocker = tmp / "a-file"
    blocker.write_text("")
    proc = subprocess.run([CLI, *FAST], cwd=tmp, env={**env, "LAYERSCOPE_OUTPUTS": str(blocker / "out")},
                          capture_output=True, text=True, timeout=120)
    check_one_line(proc, "cannot write")
