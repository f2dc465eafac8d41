"""A mistake in a sweep's syntax ends with one line, exit status 2, and no sweep folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException

from layerscope.cli.errors import check_command_line, one_line
from layerscope.errors import ConfigError

CLI = str(Path(sys.executable).with_name("layerscope"))


@pytest.mark.parametrize("argv, words", [
    (["-m", "activation=interval(0,1)"], "activation is a choice of config files, not a number; list the choices"),
    (["-m", "+init=tag(log,interval(0,1))"], "init is a choice of config files"),
    (["-m", "trainer.seed=range(3,1)"], "trainer.seed=range(3,1) gives no value to sweep over; write range"),
    (["-m", "activation=glob(relux*)"], "activation=glob(relux*) gives no value to sweep over"),
    (["-m", "optimizer.lr=range(1,2,0)"], "optimizer.lr=range(1,2,0): range() arg 3 must not be zero; quote it"),
    (["-m", "experiment=choice(he_relu,xavier_rleu)"], "experiment=xavier_rleu is not an experiment; did you mean"),
    (["-m", "--cfg", "job", "model.width=8,16"], "-m and --cfg cannot be given together; give one"),
])
def test_a_sweep_mistake_is_refused_before_hydra_starts(argv, words):
    with pytest.raises(ConfigError) as info:
        check_command_line(argv)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("argv", [
    ["-m", "activation=relu,tanh", "init=glob(he_*)", "trainer.seed=range(0,3)", "optimizer.lr=interval(0.01,0.1)"],
    ["experiment=he_relu", "~experiment", "model.dropout=0.1"],
])
def test_a_valid_command_line_passes(argv):
    check_command_line(argv)


@pytest.mark.parametrize("override, words", [
    ("optimizer.lr=range(1,)", "cannot read the override 'optimizer.lr=range(1,)': no viable alternative"),
    ("trainer.seed=range(a,3)", "'trainer.seed=range(a,3)': mismatch type argument start"),
    ("optimizer.lr=tag(", "cannot read the override 'optimizer.lr=tag('"),
    ("activation=choice()", "'activation=choice()': empty choice is not legal"),
])
def test_an_override_hydra_cannot_read_is_one_line(override, words):
    with pytest.raises(OverrideParseException) as info:
        OverridesParser.create().parse_overrides([override])
    line = one_line(info.value)
    assert words in line and "key=range(start,stop,step)" in line and "\n" not in line


def test_an_interval_for_the_basic_sweeper_is_one_line(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["layerscope", "-m", "optimizer.lr=interval(0.01,0.1)"])
    overrides = OverridesParser.create().parse_overrides(sys.argv[2:])
    with pytest.raises(HydraException) as info:
        BasicSweeper.split_arguments(overrides, None)
    line = one_line(info.value)
    assert line.startswith("optimizer.lr=interval(0.01,0.1): the basic sweeper runs listed values, not an interval")
    assert "hydra/sweeper=optuna" in line


@pytest.mark.parametrize("override, words", [
    ("optimizer.lr=interval(0.01,0.1)", "the basic sweeper runs listed values"),  # Hydra's sweeper raises it
    ("trainer.seed=range(3,1)", "gives no value to sweep over"),                  # refused before Hydra starts
])
def test_the_console_script_prints_one_line_and_writes_nothing(tmp_path, override, words):
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp_path / "outputs")}
    proc = subprocess.run([CLI, "-m", override], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"layerscope: error: {override}") and words in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []
