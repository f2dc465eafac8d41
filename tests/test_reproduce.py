"""`make reproduce`: the table, REPORT.md and the exit status."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from layerscope.lecture import experiments, report, reproduce
from layerscope.lecture.claims import FAIL, INCONCLUSIVE, PASS, Part
from layerscope.lecture.claims.seeds import Spread
from layerscope.runs.results import RunResult

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

    def wrong_setting(only=None, size="cpu"):
        return [reproduce.Experiment(e.name, e.number, e.title, e.claim, e.check, {"run": ["init=xavier_normal"]})
                for e in real(only, size)]

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
    code = reproduce.main(["--only", "small_gaussian_init", "xavier_tanh", "--processes", "1", "--out", str(tmp_path)])
    assert code == 143 and started == ["small_gaussian_init"]
    assert "SIGTERM: stopped during small_gaussian_init" in capsys.readouterr().err
    assert not (tmp_path / "REPORT.md").exists()


def test_a_variant_label_the_check_reads_but_the_experiment_lacks_is_refused_before_training(tmp_path, monkeypatch,
                                                                                              capsys):
    folder = tmp_path / "experiment"
    folder.mkdir()
    text = (ROOT / "experiments" / "exploding_gradient.yaml").read_text()
    (folder / "renamed.yaml").write_text(text.replace("clip_norm:", "clipped:"))
    monkeypatch.setattr(experiments, "experiments_dir", lambda: folder)
    assert reproduce.main(["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clip_norm" in err[0] and "renamed.yaml" in err[0]
    assert not (tmp_path / "out").exists()


def _experiment(name: str = "first", number: int = 1) -> reproduce.Experiment:
    return reproduce.Experiment(name, number, name.title(), f"the claim of {name}", "fake", {"run": []})


def _verdict(passed: bool = True, parts: tuple = ()) -> reproduce.Verdict:
    return reproduce.Verdict(passed, "measured text", "explanation text", parts=list(parts))


def _run(tmp_path: Path, depth: int = 3, width: int = 64) -> dict:
    (tmp_path / "run").mkdir(parents=True, exist_ok=True)
    (tmp_path / "run" / "config.yaml").write_text(f"model:\n  depth: {depth}\n  width: {width}\n"
                                                  "trainer:\n  max_steps: 5\nbn:\n  placement: none\n")
    return {"run": RunResult("run", tmp_path / "run", {"status": "completed"})}


def _saved(tmp_path: Path, experiment, verdict, finished="2000-01-02T03:04:05Z", base_seed=7) -> dict:
    saved = report.record(experiment, verdict, _run(tmp_path / experiment.name), tmp_path, base_seed, finished)
    report.save(saved, tmp_path)
    return saved


def test_a_saved_verdict_round_trips_into_its_table_rows_and_section(tmp_path):
    cited = Part("it shrinks", PASS, "×0.5", Spread(0.25, 0.05, 5, 5), cite="002:250, 003:88")
    undecided = Part("it trains", INCONCLUSIVE, "loss nan", Spread(float("nan"), float("nan"), 5, 0))
    verdict = _verdict(True, (cited, undecided))
    verdict.figures = [tmp_path / "first" / "fig.png"]
    _saved(tmp_path, _experiment(), verdict)
    assert report.load("first", tmp_path)["size"] == "3×64"
    text = report.write_report(report.sections([_experiment()], tmp_path), tmp_path, "run {name}").read_text()
    assert ("| 1 | First | it shrinks | 002:250, 003:88 | ×0.5 | +0.25 ± 0.05 over 5 seeds, 5 of 5 agree | "
            "**PASS** |") in text
    assert "| 1 | First | it trains | – | loss nan | +nan ± nan over 5 seeds, 0 of 5 agree | **INCONCLUSIVE** |" in text
    assert "| # | experiment | statement | notes | measured (base seed) | over seeds: effect | verdict |" in text
    assert "- **PASS**: it shrinks (×0.5; effect over seeds +0.25 ± 0.05 over 5 seeds, 5 of 5 agree); " \
           "notes: 002:250, 003:88" in text
    assert "- **INCONCLUSIVE**: it trains (loss nan; effect over seeds" in text and "agree); notes: –" in text
    assert "Last run 2000-01-02 03:04:05 UTC, base seed 7." in text
    assert "on a 3×64 net (depth × width): `run`: completed." in text
    assert "![First](first/fig.png)" in text
    assert "10×500" in text.split("| # |")[0]  # the header says which sizes the experiments use


def test_a_claim_not_split_is_one_row_and_its_section_lists_no_statements(tmp_path):
    _saved(tmp_path, _experiment(), _verdict(False))
    text = report.write_report(report.sections([_experiment()], tmp_path), tmp_path, "run {name}").read_text()
    assert "| 1 | First | the claim of first | – | measured text | – | **FAIL** |" in text
    assert "## 1. First — FAIL" in text and "- **FAIL**" not in text


def test_the_report_counts_every_section_and_says_how_to_run_one_never_run(tmp_path):
    first, second, third = _experiment("first", 1), _experiment("second", 2), _experiment("third", 3)
    _saved(tmp_path, third, _verdict(False, (Part("a", FAIL, "1"), Part("b", PASS, "2"))))
    _saved(tmp_path, first, _verdict(True, (Part("c", PASS, "3"),)))
    shown = report.sections([third, second, first], tmp_path)
    assert [e.name for e, _ in shown] == ["first", "second", "third"]  # lecture order
    text = report.write_report(shown, tmp_path, "make reproduce ONLY={name}").read_text()
    assert "3 claims: 1 pass, 1 fail, 1 not run; their 3 statements: 2 PASS, 0 CONTRADICTS THE LECTURE, " \
           "0 INCONCLUSIVE, 1 FAIL." in text
    assert "| 2 | Second | not run yet | – | – | – | **NOT RUN** |" in text
    section = text.split("## 2. Second — NOT RUN")[1].split("## 3.")[0].strip()
    assert section == "Not run yet: `make reproduce ONLY=second` runs it and fills this section."
    assert text.index("## 1. First") < text.index("## 2. Second") < text.index("## 3. Third")


def test_a_verdict_whose_experiment_is_gone_or_unreadable_is_not_shown(tmp_path):
    _saved(tmp_path, _experiment("gone", 9), _verdict(False))
    (tmp_path / "first").mkdir()
    (tmp_path / "first" / report.VERDICT).write_text('{"name": "first"}')  # from an older report: incomplete
    text = report.write_report(report.sections([_experiment()], tmp_path), tmp_path, "run {name}").read_text()
    assert "Gone" not in text and "gone" not in text
    assert "## 1. First — NOT RUN" in text and "1 claims: 0 pass, 0 fail, 1 not run" in text


def test_the_rerun_command_is_make_in_the_default_folder_else_the_module(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERSCOPE_OUTPUTS", str(tmp_path))
    assert reproduce.rerun_command(tmp_path / "reproduce", 0) == "make reproduce ONLY={name}"
    assert reproduce.rerun_command(tmp_path / "reproduce-seed3", 3) == "make reproduce ONLY={name} SEED=3"
    assert reproduce.rerun_command(tmp_path / "elsewhere", 3) == (
        f"python -m layerscope.lecture.reproduce --only {{name}} --seed 3 --out {tmp_path / 'elsewhere'}")


class _Checks:
    """A stand-in for the check registry: every check returns the verdict ``passed`` says (by experiment folder)."""

    def __init__(self, passed: dict[str, bool]) -> None:
        self.passed = passed

    def get(self, name):
        def check(results, out):
            return _verdict(self.passed[out.name], (Part(f"{out.name} holds", PASS if self.passed[out.name] else FAIL,
                                                         "n", cite="001:1"),))
        check.reads = ()
        return check


def test_only_keeps_the_other_sections_and_the_exit_status_is_about_what_ran(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "experiment"
    folder.mkdir()
    for number, name in enumerate(["alpha", "beta", "gamma"], 1):
        (folder / f"{name}.yaml").write_text(f"reproduce:\n  number: {number}\n  title: {name.title()}\n"
                                             f"  claim: {name} holds\n  check: fake\n")
    monkeypatch.setattr(experiments, "experiments_dir", lambda: folder)
    monkeypatch.setattr(reproduce, "run_experiment", lambda e, out, seed=0: _run(out / e.name))
    checks = _Checks({"alpha": False, "beta": True, "gamma": True})
    monkeypatch.setattr(reproduce, "CHECKS", checks)
    monkeypatch.setattr(experiments, "CHECKS", checks)  # which checks exist is read when the experiments load
    out = tmp_path / "out"
    assert reproduce.main(["--only", "alpha", "beta", "--processes", "1", "--out", str(out)]) == 1
    capsys.readouterr()
    monkeypatch.setattr(report, "utc_now", lambda: "2999-01-01T00:00:00Z")
    assert reproduce.main(["--only", "beta", "--seed", "4", "--out", str(out)]) == 0  # alpha's old FAIL is not now's
    captured = capsys.readouterr()
    assert "1 of 1 claims pass" in captured.out and "earlier run of: alpha (" in captured.err
    text = (out / "REPORT.md").read_text()
    assert "## 1. Alpha — FAIL" in text and "| 1 | Alpha | alpha holds | 001:1 | n | – | **FAIL** |" in text
    assert "## 2. Beta — PASS\n\nLast run 2999-01-01 00:00:00 UTC, base seed 4." in text
    assert "## 1. Alpha — FAIL\n\nLast run 2999" not in text and "## 3. Gamma — NOT RUN" in text
    assert "3 claims: 1 pass, 1 fail, 1 not run" in text


def _small_probe_experiments(folder: Path, monkeypatch) -> None:
    """Experiments small_gaussian_init and xavier_tanh alone in ``folder`` (the experiment folder now), each variant
    on a 10×64 net and 256 inputs of 64 dimensions, without the probe figure."""
    folder.mkdir()
    small = ["model.width=64", "data.dim=64", "data.n_train=256", "trainer.batch_size=256", "probe.figures=false"]
    for name in ("small_gaussian_init", "xavier_tanh"):
        spec = yaml.safe_load((ROOT / "experiments" / f"{name}.yaml").read_text())
        variants = spec["reproduce"].get("variants") or {"run": []}
        spec["reproduce"]["variants"] = {label: [*overrides, *small] for label, overrides in variants.items()}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
    monkeypatch.setattr(experiments, "experiments_dir", lambda: folder)


def test_rerunning_one_experiment_keeps_the_others_section_and_moves_its_time(tmp_path, monkeypatch):
    """Two probe-only experiments run and checked for real, alone in the experiment folder, on a 10×64 net and 256
    inputs of 64 dimensions, without the probe figure (a variant's overrides), to keep the test short."""
    out = tmp_path / "rep"
    _small_probe_experiments(tmp_path / "experiment", monkeypatch)
    monkeypatch.setattr(report, "utc_now", lambda: "2000-01-01T00:00:00Z")
    assert reproduce.main(["--only", "small_gaussian_init", "xavier_tanh", "--processes", "1", "--out", str(out)]) == 0
    monkeypatch.setattr(report, "utc_now", lambda: "2001-01-01T00:00:00Z")
    before = (out / "REPORT.md").read_text()
    assert reproduce.main(["--only", "xavier_tanh", "--out", str(out)]) == 0
    after = (out / "REPORT.md").read_text()
    first = re.compile(r"## 1\. Small Gaussian init — PASS\n\nLast run (.*) UTC, base seed 0\.")
    third = re.compile(r"## 3\. Xavier \+ tanh — PASS\n\nLast run (.*) UTC, base seed 0\.")
    assert first.search(after)[1] == first.search(before)[1] == "2000-01-01 00:00:00"
    assert third.search(before)[1] == "2000-01-01 00:00:00" and third.search(after)[1] == "2001-01-01 00:00:00"
    assert after.split("## 1. Small")[1].split("## 3.")[0] == before.split("## 1. Small")[1].split("## 3.")[0]
    assert "2 claims: 2 pass, 0 fail, 0 not run" in after and "on a 10×64 net (depth × width)" in after
    assert "![Xavier + tanh](xavier_tanh/phase.png)" in after and (out / "xavier_tanh" / "phase.png").is_file()


def test_experiments_run_at_once_in_worker_processes_give_the_report_one_process_gives(tmp_path, monkeypatch, capsys):
    """``--processes 2``: the two small probe-only experiments of the test above, each in a worker process; the same
    verdicts and measurements as one after another in this process, a line each, the table in their order."""
    _small_probe_experiments(tmp_path / "experiment", monkeypatch)
    tables = []
    for processes in ("2", "1"):
        out = tmp_path / f"out{processes}"
        assert reproduce.main(["--only", "xavier_tanh", "small_gaussian_init", "--processes", processes,
                               "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert printed.count("[ 1] Small Gaussian init ... PASS") == printed.count("[ 3] Xavier + tanh ... PASS") == 1
        tables.append(printed[printed.index("\n #  experiment"):printed.index("\nreport: ")])
        assert (out / "small_gaussian_init" / "run").is_dir() and (out / "xavier_tanh").is_dir()
    assert tables[0] == tables[1]
    assert tables[0].index(" 1  Small Gaussian init") < tables[0].index(" 3  Xavier + tanh")


AFTER_OPENMP = """
import os, sys, torch
torch.set_num_threads(2)
(torch.randn(1000, 1000) @ torch.randn(1000, 1000)).tanh().sum()  # this process has run OpenMP on two threads
os.cpu_count = lambda: 4  # two workers of two threads each
from layerscope.lecture import reproduce
sys.exit(reproduce.main(["--only", "xavier_tanh", "small_gaussian_init", "--processes", "2", "--out", sys.argv[1]]))
"""


def test_workers_of_two_threads_start_in_a_process_that_has_run_openmp(tmp_path):
    """A worker forked from a process that has run an OpenMP region hangs in its first region of two threads: such
    workers are spawned, and the experiments end."""
    import os
    import signal

    proc = subprocess.Popen([sys.executable, "-c", AFTER_OPENMP, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the hung workers too
        raise
    assert proc.returncode == 0, output
    assert (tmp_path / "REPORT.md").is_file()


def test_sigterm_stops_experiments_running_at_once_and_leaves_every_run_a_status(tmp_path):
    """SIGTERM to ``layerscope-reproduce`` while two experiments train in worker processes: it is passed on, each
    run records it (interrupted, or completed where it had ended), nothing else starts, REPORT.md is not written,
    the exit status is 143, and no worker is left behind (one would hold the pipes open: ``communicate`` would time
    out)."""
    import json
    import signal
    import time

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "layerscope.lecture.reproduce", "--only", "lr_decay", "dropout",
                             "--processes", "2", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("*/*/metrics.jsonl")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "both experiments ended before the signal: the test needs longer ones"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stdout + stderr
    assert "SIGTERM: stopped during" in stderr and "REPORT.md is not rewritten" in stderr
    assert not (out / "REPORT.md").exists()
    statuses = [json.loads(p.read_text())["status"] for p in out.glob("*/**/summary.json")]
    assert "interrupted" in statuses and set(statuses) <= {"interrupted", "completed"}, statuses
