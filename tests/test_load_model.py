"""A model back from a run: ``layerscope.load_model`` and the ``layerscope-eval`` console script."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import layerscope
from layerscope.data.datasets import load_data
from layerscope.nets.losses import build_loss

# digits; batch norm and dropout behave differently in eval mode, so the run's test metrics check that too
TINY = ["model.depth=2", "model.width=16", "bn=before", "model.dropout=0.1", "trainer.max_steps=40", "probe.every=20",
        "probe.figures=false", "trainer.progress=false"]
EVAL = Path(sys.executable).parent / "layerscope-eval"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny trained run's folder."""
    return layerscope.run(TINY, output_dir=tmp_path_factory.mktemp("model") / "run").path


def evaluate(*args: object) -> subprocess.CompletedProcess:
    """``layerscope-eval`` with ``args``, run as the installed console script."""
    return subprocess.run([str(EVAL), *map(str, args)], capture_output=True, text=True, timeout=300)


def files(*folders: Path) -> dict[Path, int]:
    """Every file under ``folders`` with its modification time: what a command wrote shows up as a change."""
    return {p: p.stat().st_mtime_ns for folder in folders for p in folder.rglob("*")}


def test_load_model_gives_the_runs_final_test_loss_and_accuracy(trained):
    model = layerscope.load_model(trained)
    assert isinstance(model, torch.nn.Module) and not model.training
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    run = layerscope.load_run(trained)
    data = load_data(run.config["data"], run.config["trainer"]["seed"])
    with torch.no_grad():
        logits = model(data.x_test)
    final = run.summary["final"]
    assert build_loss(run.config["loss"])(logits, data.y_test).item() == pytest.approx(final["test_loss"], rel=1e-5)
    assert (logits.argmax(1) == data.y_test).double().mean().item() == pytest.approx(final["test_accuracy"], abs=1e-6)


def test_load_model_names_the_missing_file(tmp_path, trained):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        layerscope.load_model(tmp_path / "missing")
    shutil.copy(trained / "config.yaml", tmp_path / "config.yaml")
    with pytest.raises(FileNotFoundError, match="has no checkpoint.pt; pass the folder of a run that trained"):
        layerscope.load_model(tmp_path)


def test_eval_prints_the_runs_test_loss_and_accuracy(trained):
    before = files(trained)
    out = evaluate(trained)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    found = re.fullmatch(rf"{re.escape(str(trained))}: test loss (\S+), accuracy (\S+)% on digits \(359 samples\)\n",
                         out.stdout)
    assert found, out.stdout
    final = layerscope.load_run(trained).summary["final"]
    assert float(found[1]) == pytest.approx(final["test_loss"], abs=1e-4)
    assert float(found[2]) == pytest.approx(100 * final["test_accuracy"], abs=0.05)
    assert files(trained) == before


@pytest.mark.parametrize("args, says", [
    (["missing"], "missing is not a folder; pass a run folder"),
    (["no_checkpoint"], "has no checkpoint.pt; pass the folder of a run that trained"),
    (["run", "--data", "digitz"], "argument --data: invalid choice: 'digitz' (choose from 'cifar10', 'digits'"),
    (["run", "--data", "spirals"], "data=spirals has 2 input features and 3 classes, but the model of"),
])
def test_a_mistake_is_one_line_and_exit_status_2(tmp_path, trained, args, says):
    (tmp_path / "no_checkpoint").mkdir()
    shutil.copy(trained / "config.yaml", tmp_path / "no_checkpoint" / "config.yaml")
    folder = {"run": trained, "missing": tmp_path / "missing", "no_checkpoint": tmp_path / "no_checkpoint"}[args[0]]
    before = files(tmp_path, trained)
    out = evaluate(folder, *args[1:])
    assert out.returncode == 2 and out.stdout == ""
    (line,) = out.stderr.splitlines()
    assert line.startswith("layerscope-eval: error: ") and says in line, line
    assert files(tmp_path, trained) == before
