"""trainer.cuda_graph: refused off CUDA before anything runs; on a GPU the replayed graph trains as the eager loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CLI = str(Path(sys.executable).with_name("layerscope"))
TINY = ["model.depth=2", "model.width=16", "trainer.max_steps=12", "trainer.batch_size=32", "probe.every=5",
        "probe.figures=false", "trainer.progress=false"]


def layerscope(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAYERSCOPE_OUTPUTS": str(tmp_path / "outputs")}
    return subprocess.run([CLI, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_cuda_graph_off_cuda_is_refused_in_one_line(tmp_path):
    proc = layerscope(tmp_path, *TINY, "trainer.device=cpu", "trainer.cuda_graph=true")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("use trainer.cuda_graph=false")
    assert not list((tmp_path / "outputs").rglob("metrics.jsonl"))


def test_a_stacked_member_refuses_cuda_graph_off_cuda_as_its_single_run_does(tmp_path):
    """Each member fails with the single run's reason before any step; the sweep exits non-zero."""
    proc = layerscope(tmp_path, "-m", "hydra/launcher=stacked", "optimizer=sgd,adam", *TINY, "trainer.device=cpu",
                      "trainer.cuda_graph=true")
    assert proc.returncode == 1 and "2 failed" in proc.stderr, proc.stderr
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "outputs").rglob("summary.json")]
    assert len(summaries) == 2
    assert all(s["status"] == "failed" and s["error"].endswith("use trainer.cuda_graph=false") for s in summaries)
    assert not list((tmp_path / "outputs").rglob("metrics.jsonl"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the capture needs a CUDA device")
def test_the_replayed_graph_trains_as_the_eager_loop(tmp_path):
    """With dropout and a schedule, a graph run's metrics equal the eager run's up to float rounding."""
    args = [*TINY, "trainer.max_steps=40", "model.dropout=0.2", "scheduler=exponential", "optimizer=adam",
            "trainer.device=cuda"]
    runs = {}
    for graph in ("false", "true"):
        proc = layerscope(tmp_path / graph, *args, f"trainer.cuda_graph={graph}")
        assert proc.returncode == 0, proc.stderr
        runs[graph] = [json.loads(line) for line in next((tmp_path / graph).rglob("metrics.jsonl")).read_text().splitlines()]
    for eager, replayed in zip(runs["false"], runs["true"]):
        assert replayed["step"] == eager["step"]
        assert replayed["test_loss"] == pytest.approx(eager["test_loss"], rel=1e-4)
