"""Messages that lead somewhere (issue 22): every hint an error gives works when followed, errors name the key
as typed and the setting to change, and a run's closing lines say how it ended, where its files are and how to
view them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from layerscope.data.datasets import load_data
from layerscope.errors import ConfigError

CLI = str(Path(sys.executable).with_name("layerscope"))
FAST = ["model.depth=2", "model.width=8", "probe.figures=false", "trainer.progress=false", "trainer.max_steps=1"]


def layerscope(*args: str, outputs: Path) -> subprocess.CompletedProcess:
    """The console script run on ``args``, its runs under ``outputs``."""
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(outputs)}
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=300)


def error(result: subprocess.CompletedProcess) -> str:
    """The one error line of a refused command."""
    assert result.returncode == 2, result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("given, value", [(["optimizer=sgd", "optimizer.mu=0.9"], "0.9"),
                                          (["optimizer=sgd", "+optimizer.mu=0.9"], "0.9"),
                                          (["init.std=0.1"], "0.1"),
                                          (["init.bias=0.1"], "0.1")])
def test_a_key_the_choice_lacks_is_answered_with_a_command_that_works(tmp_path, given, value):
    line = error(layerscope(*given, *FAST, outputs=tmp_path))
    key = given[-1].lstrip("+").split("=")[0]
    assert f"+{key}=... adds a new key" not in line
    suggested = re.search(r"(?:e\.g\. |add it with )(.+)=\.\.\.$", line)
    assert suggested, line
    followed = layerscope(*f"{suggested.group(1)}={value}".split(), *FAST, outputs=tmp_path)
    assert followed.returncode == 0, followed.stderr


def test_the_choices_that_hold_a_key_are_named():
    from layerscope.config.validate import key_hint

    assert key_hint("optimizer.mu").startswith("optimizer.mu is a key of optimizer=adam, momentum, nesterov; "
                                               "choose one of those")


@pytest.mark.parametrize("given", ["output_dir", "+output_dir"])
def test_output_dir_names_the_setting_that_sets_the_run_folder(tmp_path, given):
    line = error(layerscope(f"{given}={tmp_path / 'x'}", *FAST, outputs=tmp_path))
    assert "hydra.run.dir=<folder>" in line and "+output_dir" not in line
    followed = layerscope(f"hydra.run.dir={tmp_path / 'x'}", *FAST, outputs=tmp_path)
    assert followed.returncode == 0, followed.stderr
    assert (tmp_path / "x" / "summary.json").is_file()


def test_an_unknown_nested_key_is_named_as_typed(tmp_path):
    assert error(layerscope("++unknown.key=1", *FAST, outputs=tmp_path)).startswith(
        "layerscope: error: unknown.key is not a key of the config")


def idx(array: np.ndarray) -> bytes:
    """``array`` as an unsigned-byte IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_mnist_files_of_two_shapes_name_data_root(tmp_path):
    for prefix, side in (("train", 28), ("t10k", 20)):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(idx(np.zeros((4, side, side))))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(idx(np.array([0, 1, 2, 3])))
    with pytest.raises(ConfigError, match=r"different datasets; put one dataset's files in .* or set data\.root="):
        load_data({"name": "mnist", "root": str(tmp_path), "download": False}, 0)


def closing(result: subprocess.CompletedProcess) -> list[str]:
    """The log lines of a finished run, without their time stamps."""
    assert result.returncode == 0, result.stderr
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def test_a_probe_only_run_names_its_figure_and_how_to_view_it(tmp_path):
    run = tmp_path / "probe-only"
    lines = closing(layerscope("trainer.max_steps=0", "model.depth=2", "model.width=8", "trainer.progress=false",
                               f"hydra.run.dir={run}", outputs=tmp_path))
    assert lines[-2].endswith("completed after 0 steps: no epoch finished; figures: figures/probe_000000.png")
    assert (run / "figures" / "probe_000000.png").is_file()
    assert lines[-1].endswith(f"files in {run}; view them with: tensorboard --logdir {run}")


def test_a_diverged_run_says_so_once(tmp_path):
    run = tmp_path / "nan-run"
    lines = closing(layerscope("optimizer.lr=1e300", *FAST[:-1], f"hydra.run.dir={run}", outputs=tmp_path))
    assert sum("diverge" in line.replace(str(run), "") for line in lines) == 1, lines
    assert "stopped after" in lines[-2]
    assert lines[-1].endswith(f"tensorboard --logdir {run}")
