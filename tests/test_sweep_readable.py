"""What a sweep shows its user: figures that a diverged job does not flatten, SWEEP.md's columns, the failed
jobs' lines on the console."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_sweep import SMALL, sweep

from layerscope.runs.tables import cell
from layerscope.sweep.report import collect, layers_figure, loss_figure

HEALTHY, DIVERGED, FAILED = "init.std=0.3", "init.std=10000.0", "init.std=-1"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[str, Path]:
    """A relu sweep (stderr, folder): std 0.3 trains, std 1e4 starts at a test loss near 1e14 and diverges, std -1
    is refused."""
    proc, sweep_dir = sweep(tmp_path_factory.mktemp("sweep"), *SMALL, "activation=relu", "init=normal",
                            "init.std=0.3,1e4,-1")
    assert proc.returncode == 1, proc.stderr
    return proc.stderr, sweep_dir


def _jobs(sweep_dir: Path) -> dict:
    return {job.label: job for job in collect(sweep_dir)}


def _legend(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


def _drawn_top(ax) -> float:
    """The largest finite value of every line drawn on ``ax``."""
    values = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()])
    return np.nanmax(np.where(np.isfinite(values), values, np.nan))


def test_loss_figure_ranges_over_the_healthy_job_and_names_the_diverged_one(finished, tmp_path):
    _, sweep_dir = finished
    jobs = _jobs(sweep_dir)
    healthy, diverged = jobs[HEALTHY].result, jobs[DIVERGED].result
    step = diverged.summary["diverged_at_step"]
    assert diverged.status == "diverged" and diverged.summary["initial"]["test_loss"] > 1e9  # the case
    train, test = loss_figure(list(jobs.values()), tmp_path / "loss.png").axes
    for ax, (_, values) in ((train, healthy.batch_losses()), (test, healthy.test_curve("test_loss"))):
        low, high = ax.get_ylim()
        assert low <= values.min() and values.max() <= high < 2 * values.max()  # the diverged job sets nothing
        assert _drawn_top(ax) <= high  # its curve is clipped at the top
        marks = [line for line in ax.get_lines() if line.get_marker() == "^"]
        assert len(marks) == 1 and marks[0].get_ydata()[0] <= high
    assert f"{DIVERGED} (diverged at step {step})" in _legend(train)
    assert [line.get_xdata()[0] for line in test.get_lines() if line.get_marker() == "^"] == [0]  # it left at step 0


def test_layers_figure_ranges_over_the_healthy_job_and_names_the_diverged_one(finished, tmp_path):
    _, sweep_dir = finished
    jobs = _jobs(sweep_dir)
    diverged = jobs[DIVERGED].result
    alone = layers_figure([jobs[HEALTHY]], tmp_path / "healthy.png").axes
    fig = layers_figure(list(jobs.values()), tmp_path / "layers.png")
    for ax, healthy in zip(fig.axes, alone):
        (low, high), (healthy_low, healthy_high) = ax.get_ylim(), healthy.get_ylim()
        assert low == healthy_low and healthy_high <= high < 1.5 * healthy_high, ax.get_title()
        assert _drawn_top(ax) <= high, ax.get_title()
    assert np.nanmax(diverged.stat("activation_std", 0)) > 1e3 * fig.axes[0].get_ylim()[1]  # it would flatten the rest
    assert f"{DIVERGED} (diverged at step {diverged.summary['diverged_at_step']})" in _legend(fig.axes[0])


def _write_job(folder: Path, summary: dict, losses: list[float | None]) -> None:
    """A job folder with one epoch row per 4 steps (``losses`` holds each step's batch loss; None: NaN)."""
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(summary))
    rows = [{"step": end, "test_loss": losses[end - 1], "step_losses": losses[end - 4:end]}
            for end in range(4, len(losses) + 1, 4)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_a_curve_that_leaves_the_plot_later_is_clipped_and_marked_where_it_left(tmp_path):
    _write_job(tmp_path / "0", {"status": "completed"}, [2.3, 2.1, 2.0, 1.8, 1.7, 1.5, 1.4, 1.3])
    _write_job(tmp_path / "1", {"status": "diverged", "diverged_at_step": 8}, [2.3, 2.2, 1e3, 1e8, 1e20, 1e30, 1e38, None])
    train, _ = loss_figure(collect(tmp_path), tmp_path / "loss.png").axes
    low, high = train.get_ylim()
    assert 1.3 >= low and 2.3 <= high < 3 and _drawn_top(train) <= high
    marks = [line for line in train.get_lines() if line.get_marker() == "^"]
    assert [(x, y <= high) for line in marks for x, y in line.get_xydata()] == [(2, True)]  # its 1e3 at step 2
    assert "job 1 (diverged at step 8)" in _legend(train)


def test_sweep_md_has_each_jobs_final_train_accuracy(finished):
    _, sweep_dir = finished
    lines = (sweep_dir / "SWEEP.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| job |"))
    column = [c.strip() for c in header.split("|")].index("train acc")
    cells = {row.split("|")[2].strip(" `"): row.split("|")[column].strip() for row in lines
             if row.startswith("| ") and row is not header}
    final = json.loads((sweep_dir / HEALTHY / "summary.json").read_text())["final"]
    assert cells == {HEALTHY: cell(final["train_accuracy"]), DIVERGED: "–", FAILED: "–"}


def test_a_failed_job_gets_a_console_line_with_its_overrides_and_error(finished):
    stderr, sweep_dir = finished
    error = json.loads((sweep_dir / FAILED / "summary.json").read_text())["error"].splitlines()[0]
    lines = stderr.splitlines()
    assert lines[-2:] == [f"job 2 ({FAILED}) failed: {error}",
                          f"3 jobs: 1 completed, 1 diverged, 1 failed; see {sweep_dir / 'SWEEP.md'}"]
    assert "init.std=-1 must be" in error
