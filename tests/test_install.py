"""The console script finds configs/ from any folder, in an editable and in a wheel install."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_editable_install_uses_the_checkouts_configs(tmp_path):
    code = "from layerscope.paths import config_dir; print(config_dir())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == ROOT / "configs"


def test_wheel_ships_configs_and_its_cli_runs_from_elsewhere(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("layerscope-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "layerscope/configs/train.yaml" in names and "layerscope/configs/init/he_normal.yaml" in names
    assert "hydra_plugins/layerscope_launcher/stacked_launcher.py" in names  # Hydra finds the stacked launcher
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site), "LAYERSCOPE_OUTPUTS": str(tmp_path / "out")}
    code = "import layerscope.paths as p; print(p.config_dir())"
    where = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert Path(where.stdout.strip()) == site / "layerscope" / "configs", where.stderr
    run = subprocess.run([sys.executable, "-m", "layerscope.cli", "trainer.max_steps=0", "model.depth=2",
                          "model.width=16", "probe.figures=false", "trainer.progress=false"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert list((tmp_path / "out" / "runs").glob("*/*/summary.json"))
