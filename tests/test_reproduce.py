"""`make reproduce`: the table, REPORT.md and the exit status."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from layerscope.lecture import reproduce

ROOT = Path(__file__).resolve().parents[1]


def test_one_experiment_writes_report_with_its_figure(tmp_path, capsys):
    assert reproduce.main(["--only", "xavier_relu", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^ 4  Xavier \+ ReLU\s+PASS", out, re.M) and "1 of 1 claims pass" in out
    report = (tmp_path / "REPORT.md").read_text()
    assert "| 4 | Xavier + ReLU |" in report and "**PASS**" in report
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert figures and all((tmp_path / f).is_file() for f in figures)
    assert "xavier_relu/phase.png" in figures  # the order-to-chaos diagram with the init's point
    assert "(σ_w², σ_b²) = (1, 0) for relu: q* = 0, χ₁ = 0.5 (ordered)" in report  # ReLU's χ₁ = σ_w²/2


def test_a_run_alone_keeps_its_lines_in_its_log_not_in_the_table(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "layerscope.lecture.reproduce", "--only", "zero_init", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split(" (")[0] == "[ 6] Zero init ... PASS"  # nothing between
    assert proc.stderr == ""
    assert "epoch 1/5" in (tmp_path / "zero_init" / "tanh" / "train.log").read_text()  # each variant trains alone


def test_a_failing_claim_makes_the_exit_status_nonzero(tmp_path, monkeypatch):
    real = reproduce.load_experiments

    def wrong_setting(only=None):
        return [reproduce.Experiment(e.name, e.number, e.title, e.claim, e.check, {"run": ["init=xavier_normal"]})
                for e in real(only)]

    monkeypatch.setattr(reproduce, "load_experiments", wrong_setting)
    assert reproduce.main(["--only", "he_relu", "--out", str(tmp_path)]) == 1
    assert "**FAIL**" in (tmp_path / "REPORT.md").read_text()


def test_unknown_experiment_is_one_line(tmp_path, capsys):
    assert reproduce.main(["--only", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "he_relu" in err[0]


@pytest.mark.slow
def test_make_reproduce_only_one_experiment_end_to_end():
    proc = subprocess.run(["make", "-s", "reproduce", "ONLY=zero_init"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 of 1 claims pass" in proc.stdout
    assert "Zero init" in (ROOT / "outputs" / "reproduce" / "REPORT.md").read_text()


def test_an_interrupted_run_stops_reproduce_before_the_next_experiment(tmp_path, monkeypatch, capsys):
    """A run records SIGTERM as ``interrupted`` and returns; reproduce must stop there, not start the next."""
    from layerscope.runs.results import RunResult

    started = []

    def interrupted(experiment, out, base_seed=0):
        started.append(experiment.name)
        return {"run": RunResult("run", tmp_path, {"status": "interrupted", "signal": "SIGTERM"})}
    monkeypatch.setattr(reproduce, "run_experiment", interrupted)
    code = reproduce.main(["--only", "small_gaussian_init", "xavier_tanh", "--out", str(tmp_path)])
    assert code == 143 and started == ["small_gaussian_init"]
    assert "SIGTERM: stopped during small_gaussian_init" in capsys.readouterr().err
    assert not (tmp_path / "REPORT.md").exists()


def test_a_variant_label_the_check_reads_but_the_experiment_lacks_is_refused_before_training(tmp_path, monkeypatch,
                                                                                              capsys):
    folder = tmp_path / "experiment"
    folder.mkdir()
    text = (ROOT / "experiments" / "exploding_gradient.yaml").read_text()
    (folder / "renamed.yaml").write_text(text.replace("clip_norm:", "clipped:"))
    monkeypatch.setattr(reproduce, "experiments_dir", lambda: folder)
    assert reproduce.main(["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clip_norm" in err[0] and "renamed.yaml" in err[0]
    assert not (tmp_path / "out").exists()
